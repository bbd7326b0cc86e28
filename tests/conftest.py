"""Shared fixtures: real servers or a clear skip (a failure under CI=true), config and store builders."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("PUBLISHER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
UNDER_CI = os.environ.get("CI", "").lower() == "true"


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(condition: bool, reason: str) -> None:
    """Skip on a user's machine; under CI a missing server is a failure, never a silent skip."""
    if condition:
        return
    if UNDER_CI:
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def official_mjml() -> str | None:
    """The official MJML compiler (npm mjml): $MJML_CLI (scripts/test sets it), else `mjml` beside node."""
    configured = os.environ.get("MJML_CLI")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("mjml") if shutil.which("node") else None


@pytest.fixture(scope="session")
def mjml_cli() -> str:
    """The path of the official mjml CLI; a skip on a user's machine without it, a failure under CI."""
    cli = official_mjml()
    require(cli is not None, "the official mjml CLI is not installed (npm install mjml@5; set MJML_CLI)")
    assert cli is not None
    return cli


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    require(reachable("127.0.0.1", 5432), "PostgreSQL is not listening on 127.0.0.1:5432")
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database per test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"publisher_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[object]:
    from publisher.store import Store

    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


def write_config(
    directory: Path,
    *,
    store_url: str | None = None,
    transport: str = "kind: outbox\n    path: outbox",
    sources: str | None = None,
    extra: str = "",
    connections: int = 1,
) -> Path:
    """A config.yaml in `directory` using the shipped sample articles; returns its path.

    One connection unless asked: most tests count what one sender had in flight."""
    sources = sources or f"  - kind: files\n    name: sample-newsroom\n    path: {REPO / 'samples' / 'articles'}\n"
    text = f"""
site:
  name: Levant Today
  base_url: https://news.example.org
  timezone: Asia/Damascus
  logo_url: https://news.example.org/static/logo.png
  public_url: http://127.0.0.1:8080
  secret: test-secret-0123456789abcdef
  unsubscribe_mailto: unsubscribe@news.example.org
store:
  url: {store_url or 'sqlite:///store.db'}
sources:
{sources}
editions:
  - id: en
    language: en
    subject: "{{site}}: the day's news, {{date}}"
    from: Levant Today <digest@news.example.org>
    reply_to: newsroom@news.example.org
    sections: [politics, economy, culture, sports]
    max_articles: 10
  - id: ar
    language: ar
    subject: "{{site}}: أخبار اليوم، {{date}}"
    from: ليفانت اليوم <digest@news.example.org>
    sections: [politics, economy, culture, sports]
    max_articles: 10
feeds:
  directory: feeds
  base_url: http://127.0.0.1:8080/feeds
mail:
  transport:
    {transport}
  batch_size: 50
  connections: {connections}
  message_id_domain: news.example.org
  retry:
    first_delay: 0
templates: {directory / 'templates'}
{extra}
"""
    path = directory / "config.yaml"
    path.write_text(text, encoding="utf-8")
    (directory / "templates").mkdir(exist_ok=True)  # `publisher check` refuses a templates: folder that is not there
    return path


@pytest.fixture
def config_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    from publisher.config import load_config

    def make(**kwargs):  # type: ignore[no-untyped-def]
        return load_config(write_config(tmp_path, **kwargs))

    return make


_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    return text in _LOOPBACK_NAMES or text.startswith("127.") or text == "" or text.startswith("/")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test talks to any address but this machine's loopback: name lookups and connects elsewhere fail."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def guarded_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not _is_loopback(host):
            raise OSError(f"test tried to resolve {host!r}: tests are loopback only")
        return real_getaddrinfo(host, *args, **kwargs)

    def guarded_connect(self, address):  # type: ignore[no-untyped-def]
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            raise OSError(f"test tried to connect to {address!r}: tests are loopback only")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
