"""Click counting end to end: a real run with analytics.clicks, the digest's links, /r/ redirects,
the counts in the console. Without the setting nothing is rewritten."""

from __future__ import annotations

import re
import warnings
from datetime import date
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from publisher.config import Config, load_config
from publisher.delivery.mail import InMemoryTransport
from publisher.passwords import hash_password
from publisher.pipeline import run_day
from publisher.render.clicks import ClickLinks, InvalidClick
from publisher.store import Store
from publisher.store.clicks import ClickLedger
from publisher.web import create_app
from tests.conftest import write_config

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

PUBLIC = "http://127.0.0.1:8080"
SECRET = "test-secret-0123456789abcdef"


def _run(tmp_path: Path, store_url: str, extra: str) -> tuple[Store, EmailMessage, TestClient, Config]:
    config = load_config(write_config(tmp_path, store_url=store_url, extra=extra))
    store = Store.open(config.store_url)
    store.subscribers.upsert("layla@example.org", name="Layla", language="en")
    transport = InMemoryTransport()
    run_day(config, store, date(2024, 12, 2), transport=transport)
    message = message_from_bytes(transport.accepted[0].data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    client = TestClient(create_app(lambda: config, store), base_url=PUBLIC, follow_redirects=False)
    return store, message, client, config


def _parts(message: EmailMessage) -> tuple[str, str]:
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    assert html_part is not None and text_part is not None
    return str(html_part.get_content()), str(text_part.get_content())


def test_story_links_go_through_counted_redirects_to_exactly_their_target(tmp_path: Path, store_url: str) -> None:
    admin = f'web:\n  admin_users:\n    editor: "{hash_password("a-password-here", n=2**12)}"\n'
    store, message, client, _config = _run(tmp_path, store_url, "analytics:\n  clicks: true\n" + admin)
    try:
        html, text = _parts(message)
        redirects = sorted(set(re.findall(rf'href="({re.escape(PUBLIC)}/r/[^"]+)"', html)))
        assert len(redirects) == 6, "one counted link per story of the English digest"
        assert not re.search(r'href="https://news\.example\.org/en/[^"]+"', html), "a story link escaped the rewrite"
        assert set(re.findall(rf"{re.escape(PUBLIC)}/r/\S+", text)) == set(redirects)
        # the unsubscribe link is ours and untouched
        assert re.search(rf'href="{re.escape(PUBLIC)}/unsubscribe/[^"]+"', html)

        first = client.get(redirects[0].removeprefix(PUBLIC))
        assert first.status_code == 302
        target = ClickLinks(SECRET, PUBLIC).verify(redirects[0].rsplit("/", 1)[1])
        assert first.headers["location"] == target.url and target.url.startswith("https://news.example.org/")
        client.get(redirects[0].removeprefix(PUBLIC))
        client.head(redirects[1].removeprefix(PUBLIC))  # a HEAD (a preview fetch) is not a click
        assert ClickLedger(store.engine).per_story(target.digest_id) == {target.position: 2}

        # the console shows the figure, and the story it belongs to first
        form = client.get("/admin/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        client.post("/admin/login", data={"user": "editor", "password": "a-password-here", "csrf": csrf.group(1)})
        page = client.get(f"/admin/digests/{target.digest_id}").text
        first_row = re.search(r"<tbody>\s*<tr><td class=\"n\">(\d+)</td><td><bdi>[^<]*</bdi></td><td class=\"n\">(\d+)",
                              page.split("Stories by clicks")[1])
        assert first_row is not None and first_row.groups() == (str(target.position), "2")
        chart = client.get(f"/admin/digests/{target.digest_id}/clicks.svg")
        assert chart.status_code == 200 and "<script" not in chart.text
    finally:
        client.close()
        store.close()


def test_a_tampered_click_link_is_refused_not_redirected(tmp_path: Path) -> None:
    store, message, client, _config = _run(tmp_path, f"sqlite:///{tmp_path / 's.db'}", "analytics:\n  clicks: true\n")
    try:
        html, _text = _parts(message)
        token = re.findall(rf'href="{re.escape(PUBLIC)}/r/([^"]+)"', html)[0]
        links = ClickLinks(SECRET, PUBLIC)
        evil = links.token(1, 1, "https://evil.example.net/")[:-4] + "AAAA"
        for bad in (evil, token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "x", "%C3%A9t%C3%A9"):
            answer = client.get(f"/r/{bad}")
            assert answer.status_code == 400 and "location" not in answer.headers, bad
        with pytest.raises(InvalidClick):
            ClickLinks("another-secret-0123456789", PUBLIC).verify(token)
    finally:
        client.close()
        store.close()


def test_without_the_setting_links_point_straight_at_the_stories(tmp_path: Path) -> None:
    store, message, client, _config = _run(tmp_path, f"sqlite:///{tmp_path / 's.db'}", "")
    try:
        html, text = _parts(message)
        assert "/r/" not in html and "/r/" not in text
        assert re.search(r'href="https://news\.example\.org/[^"]+"', html)
    finally:
        client.close()
        store.close()
