"""Issue 15.1: provider webhooks cannot be replayed, not even after a restart, and an event that names
one of our deliveries is believed only for that delivery's recipient.

Real application (TestClient), real store on SQLite and PostgreSQL; a restart is a new Store and a new
application on the same database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from publisher.config import Config, load_config
from publisher.models import SubscriberStatus
from publisher.pipeline.send import LinkMaker
from publisher.store import Store
from publisher.store.provider_events import ReplayIds
from publisher.store.schema import deliveries
from publisher.web import create_app
from publisher.web.confirmations import THREAD_NAME
from tests.conftest import write_config

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

KEY = "whsec-mailgun-security-test"
MAILGUN = f"kind: mailgun\n    api_key: k\n    domain: mg.example.org\n    webhook_signing_key: {KEY}"


@dataclass
class Site:
    config: Config
    url: str
    store: Store
    client: TestClient

    def restart(self) -> None:
        """A new process: a new engine on the same database and a new application."""
        self.client.close()
        self.store.close()
        self.store = Store.open(self.url)
        self.client = TestClient(create_app(lambda: self.config, self.store), base_url="http://127.0.0.1:8080")

    def status(self, email: str) -> SubscriberStatus:
        subscriber = self.store.subscribers.by_email(email)
        assert subscriber is not None
        return subscriber.status

    def close(self) -> None:
        self.client.close()
        self.store.close()


@pytest.fixture
def site(tmp_path: Path, store_url: str) -> Iterator[Site]:
    config = load_config(write_config(tmp_path, store_url=store_url, transport=MAILGUN))
    store = Store.open(store_url)
    for name in ("reader", "victim"):
        store.subscribers.upsert(f"{name}@example.org", language="en")
    running = Site(config, store_url, store, TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080"))
    yield running
    running.close()


def mailgun_body(event_data: dict[str, Any], *, token: str, timestamp: int | None = None) -> bytes:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(KEY.encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": signature},
                       "event-data": event_data}).encode()


def post(client: TestClient, body: bytes) -> Any:
    return client.post("/webhooks/mailgun", content=body, headers={"Content-Type": "application/json"})


def unsubscribed(email: str, message_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"event": "unsubscribed", "recipient": email}
    if message_id is not None:
        event["message"] = {"headers": {"message-id": message_id}}
    return event


def delivery_message_id(site: Site, email: str) -> str:
    """Send-side truth: a digest, the ledger rows, and the Message-ID the sender gives this recipient."""
    record = site.store.digests.find("en", date(2024, 12, 2)) or site.store.digests.create("en", date(2024, 12, 2), "en", [])
    site.store.deliveries.enqueue(record.id, "en")
    subscriber = site.store.subscribers.by_email(email)
    assert subscriber is not None
    with site.store.engine.connect() as connection:
        delivery_id = connection.execute(
            select(deliveries.c.id).where(deliveries.c.digest_id == record.id, deliveries.c.subscriber_id == subscriber.id)
        ).scalar_one()
    return LinkMaker(site.config.site, "news.example.org").message_id(record.id, int(delivery_id)).strip("<>")


def test_a_captured_mailgun_signature_is_refused_after_a_restart_with_another_recipient(site: Site) -> None:
    token = "captured-token-" + "x" * 35
    genuine = mailgun_body(unsubscribed("reader@example.org"), token=token)
    assert post(site.client, genuine).text == "applied\n"
    assert site.status("reader@example.org") is SubscriberStatus.UNSUBSCRIBED
    site.restart()
    # the attacker re-sends the captured signature with another recipient, then the original
    forged = json.loads(genuine)
    forged["event-data"]["recipient"] = "victim@example.org"
    replay = post(site.client, json.dumps(forged).encode())
    assert replay.status_code == 200 and replay.text == "already received\n"
    assert site.status("victim@example.org") is SubscriberStatus.ACTIVE
    subscriber = site.store.subscribers.by_email("reader@example.org")
    assert subscriber is not None
    site.store.subscribers.set_status(subscriber.id, SubscriberStatus.ACTIVE)  # the reader came back
    assert post(site.client, genuine).text == "already received\n"
    assert site.status("reader@example.org") is SubscriberStatus.ACTIVE


def test_mailgun_signatures_are_accepted_for_minutes_not_hours(site: Site) -> None:
    now = int(time.time())
    for age in (11 * 60, 3600, 12 * 3600 - 60):  # the old window accepted all of these
        answer = post(site.client, mailgun_body(unsubscribed("victim@example.org"), token=f"old-{age}", timestamp=now - age))
        assert answer.status_code == 403, age
    assert post(site.client, mailgun_body(unsubscribed("victim@example.org"), token="future", timestamp=now + 600)).status_code == 403
    assert site.status("victim@example.org") is SubscriberStatus.ACTIVE
    fresh = post(site.client, mailgun_body(unsubscribed("victim@example.org"), token="fresh", timestamp=now - 60))
    assert fresh.text == "applied\n"


def test_an_event_naming_our_delivery_is_believed_only_for_its_recipient(site: Site) -> None:
    message_id = delivery_message_id(site, "reader@example.org")
    wrong = post(site.client, mailgun_body(unsubscribed("victim@example.org", message_id), token="t-wrong"))
    assert wrong.status_code == 406 and "recipient" in wrong.text
    forged_tag = message_id.split("@")[0][:-12] + "0" * 12 + "@" + message_id.split("@")[1]
    made_up = post(site.client, mailgun_body(unsubscribed("reader@example.org", forged_tag), token="t-forged"))
    assert made_up.status_code == 406 and "did not make" in made_up.text
    assert site.status("victim@example.org") is SubscriberStatus.ACTIVE
    assert site.status("reader@example.org") is SubscriberStatus.ACTIVE
    right = post(site.client, mailgun_body(unsubscribed("Reader@Example.org", message_id), token="t-right"))
    assert right.text == "applied\n"
    assert site.status("reader@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_message_ids_signed_before_a_key_rotation_still_name_their_delivery(site: Site, tmp_path: Path) -> None:
    message_id = delivery_message_id(site, "reader@example.org")
    path = tmp_path / "config.yaml"
    rotated = path.read_text(encoding="utf-8").replace(
        "secret: test-secret-0123456789abcdef",
        "secret: the-new-secret-0123456789\n  previous_secrets: [test-secret-0123456789abcdef]",
    )
    path.write_text(rotated, encoding="utf-8")
    site.config = load_config(path)
    site.restart()
    assert post(site.client, mailgun_body(unsubscribed("victim@example.org", message_id), token="r1")).status_code == 406
    assert post(site.client, mailgun_body(unsubscribed("reader@example.org", message_id), token="r2")).text == "applied\n"


@pytest.mark.parametrize("field, value", [
    ("signature", "ü" * 64), ("signature", "٠" * 64), ("token", "тoken"), ("timestamp", "١٧٠٠٠٠٠٠٠٠"),
    ("signature", 12), ("token", None), ("timestamp", ["x"]),
])
def test_bad_bytes_in_a_mailgun_signature_are_a_4xx_without_a_traceback(
    site: Site, caplog: pytest.LogCaptureFixture, field: str, value: object
) -> None:
    body = json.loads(mailgun_body(unsubscribed("victim@example.org"), token="t" * 50))
    body["signature"][field] = value
    with caplog.at_level(logging.WARNING):
        answer = post(site.client, json.dumps(body, ensure_ascii=False).encode())
    assert answer.status_code in (400, 403), answer.text
    assert not [r for r in caplog.records if (r.levelno >= logging.ERROR or r.exc_info) and r.threadName != THREAD_NAME]
    assert site.status("victim@example.org") is SubscriberStatus.ACTIVE


def test_replay_ids_expire_and_are_purged(store: Store) -> None:
    replays = ReplayIds(store.engine)
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert replays.claim("mailgun", "tok", expires_at=now + timedelta(minutes=12), now=now)
    assert not replays.claim("mailgun", "tok", expires_at=now + timedelta(minutes=12), now=now + timedelta(minutes=5))
    assert replays.claim("sendgrid", "tok", expires_at=now + timedelta(minutes=12), now=now)  # per provider
    assert replays.claim("mailgun", "other", expires_at=now + timedelta(hours=2), now=now)
    assert replays.purge(now + timedelta(minutes=30)) == 2
    assert replays.count() == 1
    # once its window is over an id may come again (the timestamp check refuses the old request by then)
    assert replays.claim("mailgun", "tok", expires_at=now + timedelta(minutes=50), now=now + timedelta(minutes=31))


# --- the other three providers: their replay ids live in the store as well -------------------------


def _restartable(tmp_path: Path, transport: str) -> Site:
    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    config = load_config(write_config(tmp_path, store_url=url, transport=transport))
    store = Store.open(url)
    for name in ("reader", "victim"):
        store.subscribers.upsert(f"{name}@example.org", language="en")
    return Site(config, url, store, TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080"))


def test_a_sendgrid_event_is_applied_once_across_a_restart_and_custom_args_must_match(tmp_path: Path) -> None:
    from tests.test_provider_sendgrid import public_key_b64, signed

    key = ec.generate_private_key(ec.SECP256R1())
    site = _restartable(tmp_path, f"kind: sendgrid\n    api_key: k\n    webhook_public_key: {public_key_b64(key)}")
    try:
        message_id = delivery_message_id(site, "reader@example.org")
        delivery = int(message_id.split(".")[2])
        events = [{"email": "reader@example.org", "event": "spamreport", "sg_event_id": "ev-1"},
                  {"email": "victim@example.org", "event": "unsubscribe", "sg_event_id": "ev-2",
                   "delivery_id": str(delivery), "message_id": f"<{message_id}>"}]
        payload = json.dumps(events).encode()
        first = site.client.post("/webhooks/sendgrid", content=payload, headers=signed(key, payload))
        assert first.json() == {"received": 2, "applied": 1, "repeated": 0, "refused": 1}
        assert site.status("victim@example.org") is SubscriberStatus.ACTIVE  # names reader's delivery
        site.restart()
        subscriber = site.store.subscribers.by_email("reader@example.org")
        assert subscriber is not None
        site.store.subscribers.set_status(subscriber.id, SubscriberStatus.ACTIVE)
        again = site.client.post("/webhooks/sendgrid", content=payload, headers=signed(key, payload, int(time.time()) + 1))
        assert again.json()["applied"] == 0 and again.json()["repeated"] == 1  # SendGrid's retry, re-signed
        assert site.status("reader@example.org") is SubscriberStatus.ACTIVE
        stale = site.client.post("/webhooks/sendgrid", content=payload, headers=signed(key, payload, int(time.time()) - 3600))
        assert stale.status_code == 403
    finally:
        site.close()


def test_a_postmark_record_is_applied_once_across_a_restart(tmp_path: Path) -> None:
    from tests.test_provider_postmark import basic

    site = _restartable(tmp_path, "kind: postmark\n    server_token: t\n    webhook_username: u\n    webhook_password: pw-0123456789")
    try:
        record = {"RecordType": "SpamComplaint", "ID": 4242, "Email": "reader@example.org", "MessageID": "pm-1"}
        assert site.client.post("/webhooks/postmark", json=record, headers=basic("u", "pw-0123456789")).json()["applied"]
        site.restart()
        subscriber = site.store.subscribers.by_email("reader@example.org")
        assert subscriber is not None
        site.store.subscribers.set_status(subscriber.id, SubscriberStatus.ACTIVE)
        again = site.client.post("/webhooks/postmark", json=record, headers=basic("u", "pw-0123456789")).json()
        assert again == {"record_type": "SpamComplaint", "applied": False, "already_received": True}
        assert site.status("reader@example.org") is SubscriberStatus.ACTIVE
    finally:
        site.close()


def test_an_sns_message_is_applied_once_across_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import publisher.web.webhooks.ses as ses_webhook
    from tests.support.provider_servers.ses import SnsSigner

    topic = "arn:aws:sns:eu-west-1:123456789012:publisher-events"
    sns = SnsSigner(topic)
    monkeypatch.setattr(ses_webhook, "fetch_url", sns.fetch)
    site = _restartable(tmp_path, f"kind: ses\n    region: eu-west-1\n    access_key_id: A\n    secret_access_key: s\n"
                                  f"    sns_topic_arn: {topic}")
    complaint = {"eventType": "Complaint", "complaint": {"complaintFeedbackType": "abuse",
                 "complainedRecipients": [{"emailAddress": "reader@example.org"}]}, "mail": {}}
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
    try:
        message = json.dumps(sns.notification(complaint, message_id="sns-once")).encode()
        assert site.client.post("/webhooks/ses", content=message, headers=headers).text == "1 event(s), 1 applied, 0 refused\n"
        site.restart()
        subscriber = site.store.subscribers.by_email("reader@example.org")
        assert subscriber is not None
        site.store.subscribers.set_status(subscriber.id, SubscriberStatus.ACTIVE)
        assert site.client.post("/webhooks/ses", content=message, headers=headers).text == "already received\n"
        assert site.status("reader@example.org") is SubscriberStatus.ACTIVE
        tagged = dict(complaint, mail={"tags": {"publisher_delivery": [delivery_message_id(site, "victim@example.org").split(".")[2]]}})
        answer = site.client.post("/webhooks/ses", content=json.dumps(sns.notification(tagged, message_id="sns-2")).encode(),
                                  headers=headers)
        assert answer.text == "1 event(s), 0 applied, 1 refused\n"  # the tag names victim's delivery, not reader's
    finally:
        site.close()
