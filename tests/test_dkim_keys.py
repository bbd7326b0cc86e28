"""`publisher dkim keygen` → mail.dkim → `publisher dns` prints the record → a digest signed with the
key verifies (dkimpy) against exactly that record."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import dkim
import pytest

from publisher.config import load_config
from publisher.delivery.mail import InMemoryTransport
from publisher.pipeline import run_day
from publisher.store import Store
from tests.conftest import write_config


def publisher(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "publisher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_a_generated_key_signs_digests_that_verify_against_the_printed_record(tmp_path: Path, kind: str) -> None:
    made = publisher("dkim", "keygen", "dkim.pem", "--type", kind, "--selector", "s2026",
                     "--domain", "news.example.org", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE((tmp_path / "dkim.pem").stat().st_mode) == 0o600
    again = publisher("dkim", "keygen", "dkim.pem", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr  # an existing key is never replaced silently

    path = write_config(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace(
        "  message_id_domain: news.example.org\n",
        "  message_id_domain: news.example.org\n  dkim:\n    domain: news.example.org\n    selector: s2026\n"
        "    private_key_file: dkim.pem\n"), encoding="utf-8")
    printed = publisher("dns", "--config", "config.yaml", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    line = next(line for line in printed.stdout.splitlines() if line.startswith("s2026._domainkey.news.example.org."))
    record = "".join(re.findall(r'"([^"]*)"', line)).encode("ascii")
    assert record.startswith(f"v=DKIM1; k={kind}; p=".encode())
    assert all(len(chunk) <= 255 for chunk in re.findall(r'"([^"]*)"', line))

    config = load_config(path)
    store = Store.open(config.store_url)
    try:
        store.subscribers.upsert("layla@example.org", language="en")
        transport = InMemoryTransport()
        run_day(config, store, date(2024, 12, 2), transport=transport)
        [message] = transport.accepted

        def lookup(name: bytes, timeout: int = 5) -> bytes:
            assert name == b"s2026._domainkey.news.example.org."
            return record

        assert dkim.verify(message.data, dnsfunc=lookup)
    finally:
        store.close()


def test_dns_names_an_unreadable_key_with_the_fix(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace(
        "  message_id_domain: news.example.org\n",
        "  message_id_domain: news.example.org\n  dkim:\n    domain: news.example.org\n    selector: s1\n"
        "    private_key_file: missing.pem\n"), encoding="utf-8")
    result = publisher("dns", "--config", "config.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "mail.dkim.private_key_file" in result.stderr
    assert "dkim keygen" in result.stderr and "Traceback" not in result.stderr
