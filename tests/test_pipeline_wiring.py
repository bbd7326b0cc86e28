"""What the pipeline adds around the renderer: DKIM-signed copies from mail.dkim, and section variants
frozen like the digest so a send resumed after a template edit sends what the first readers got."""

from __future__ import annotations

from datetime import date
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import dkim

from publisher.config import load_config
from publisher.delivery.mail import InMemoryTransport
from publisher.pipeline import run_day
from publisher.store import Store
from tests.conftest import write_config
from tests.test_email_dkim import dns, key_pair

DAY = date(2024, 12, 2)


def _html(data: bytes) -> str:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def _impersonal(html: str) -> str:
    return "\n".join(line for line in html.splitlines()
                     if "unsubscribe" not in line and "preferences" not in line and "@example.org" not in line)


def test_a_run_with_mail_dkim_sends_copies_that_verify(tmp_path: Path) -> None:
    pem, record = key_pair("ed25519")
    (tmp_path / "dkim.pem").write_bytes(pem)
    path = write_config(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace(
        "  message_id_domain: news.example.org\n",
        "  message_id_domain: news.example.org\n  dkim:\n    domain: news.example.org\n    selector: s1\n"
        "    private_key_file: dkim.pem\n"), encoding="utf-8")
    config = load_config(path)
    store = Store.open(config.store_url)
    try:
        store.subscribers.upsert("layla@example.org", language="en")
        store.subscribers.upsert("sara@example.org", language="ar")
        transport = InMemoryTransport()
        run_day(config, store, DAY, transport=transport)
        assert sorted(transport.recipients) == ["layla@example.org", "sara@example.org"]
        for message in transport.accepted:
            assert message.data.startswith(b"DKIM-Signature:")
            assert dkim.verify(message.data, dnsfunc=dns(record)), message.recipient
    finally:
        store.close()


def test_a_section_variant_is_frozen_across_a_template_edit(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    store = Store.open(config.store_url)
    try:
        for email in ("first@example.org", "second@example.org"):
            store.subscribers.upsert(email, language="en", sections=["politics"])
        transport = InMemoryTransport()
        transport.crash_after(1)  # the first copy goes out, then the process "dies"
        run_day(config, store, DAY, transport=transport)
        assert transport.recipients == ["first@example.org"]
        first = _html(transport.accepted[0].data)
        assert "Economy" not in first or "economy" not in first.lower().split("politics")[0]

        # the operator edits the wording before the send is resumed
        (tmp_path / "templates" / "email").mkdir(parents=True, exist_ok=True)
        (tmp_path / "templates" / "email" / "strings.yaml").write_text("en:\n  read_more: EDITED WORDING\n",
                                                                       encoding="utf-8")
        resumed = InMemoryTransport()
        run_day(load_config(tmp_path / "config.yaml"), store, DAY, transport=resumed)
        assert resumed.recipients == ["second@example.org"]
        second = _html(resumed.accepted[0].data)
        assert "EDITED WORDING" not in second
        # the same frozen variant, apart from what is personal in each copy
        assert _impersonal(first) == _impersonal(second)
    finally:
        store.close()


def test_an_ar_sy_edition_reaches_readers_who_chose_ar_and_names_the_site_in_arabic(tmp_path: Path) -> None:
    import warnings

    from publisher.web import create_app

    warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
    from starlette.testclient import TestClient

    path = write_config(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace(
        "  - id: ar\n    language: ar\n", "  - id: ar\n    language: ar-SY\n    site_name: ليفانت اليوم\n"),
        encoding="utf-8")
    config = load_config(path)
    store = Store.open(config.store_url)
    try:
        store.subscribers.upsert("sara@example.org", language="ar")
        store.subscribers.upsert("rami@example.org", language="ar-SY")
        transport = InMemoryTransport()
        run_day(config, store, DAY, transport=transport)
        assert sorted(transport.recipients) == ["rami@example.org", "sara@example.org"]
        with TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080") as client:
            page = client.get("/subscribe", params={"lang": "ar-SY"}).text
        assert "ليفانت اليوم" in page
    finally:
        store.close()
