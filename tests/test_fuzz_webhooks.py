"""Fuzzed (hypothesis): whatever a client posts to the provider webhooks, correctly signed or not, the
answer is never a 5xx, and nothing but our own log lines (no traceback) comes of it.

Correctly signed bodies go past the signature checks into the event readers and the recipient check,
where the payload is the attacker's (Mailgun's signature does not cover it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import tempfile
import time
import warnings
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.config import load_config
from publisher.store import Store
from publisher.web import create_app
from publisher.web.confirmations import THREAD_NAME
from tests.conftest import write_config

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])
MAILGUN_KEY = "whsec-fuzz-0123456789"
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
_DER = SENDGRID_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
TRANSPORTS = {
    "mailgun": f"kind: mailgun\n    api_key: k\n    domain: mg.example.org\n    webhook_signing_key: {MAILGUN_KEY}",
    "sendgrid": f"kind: sendgrid\n    api_key: k\n    webhook_public_key: {base64.b64encode(_DER).decode()}",
    "postmark": "kind: postmark\n    server_token: t\n    webhook_username: u\n    webhook_password: pw-0123456789",
}

any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text
    | st.sampled_from(["reader@example.org", "failed", "permanent", "bounce", "complained", "unsubscribed",
                       "spamreport", "Bounce", "HardBounce", "SpamComplaint", "digest.1.1.0123456789ab@x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["event", "recipient", "severity", "reason", "message", "headers", "message-id", "email",
                         "sg_event_id", "delivery_id", "message_id", "type", "RecordType", "Type", "Email", "ID",
                         "MessageID", "Metadata", "Recipient", "SuppressSending", "SuppressionReason",
                         "delivery-status", "code"]) | any_text, inner, max_size=5),
    max_leaves=15,
)
_tokens = count()


@pytest.fixture(scope="module")
def clients() -> Any:
    directory = Path(tempfile.mkdtemp(prefix="fuzz-webhooks-"))
    opened = {}
    for provider, transport in TRANSPORTS.items():
        folder = directory / provider
        folder.mkdir()
        config = load_config(write_config(folder, store_url=f"sqlite:///{folder / 'store.db'}", transport=transport))
        store = Store.open(config.store_url)
        store.subscribers.upsert("reader@example.org", language="en")
        opened[provider] = (TestClient(create_app(lambda c=config: c, store), base_url="http://127.0.0.1:8080",
                                       raise_server_exceptions=False), store)
    yield {provider: client for provider, (client, _) in opened.items()}
    for client, store in opened.values():
        client.close()
        store.close()


def check(answer: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert not [r for r in caplog.records if r.exc_info and r.threadName != THREAD_NAME], [r.getMessage() for r in caplog.records]
    caplog.clear()


@FEW
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_unsigned_garbage_to_every_webhook(clients: dict[str, TestClient], caplog: pytest.LogCaptureFixture,
                                           body: bytes) -> None:
    with caplog.at_level(logging.WARNING):
        for provider in ("mailgun", "sendgrid", "postmark", "ses"):
            check(clients.get(provider, clients["mailgun"]).post(f"/webhooks/{provider}", content=body), caplog)


@FEW
@given(json_values, st.one_of(st.none(), json_values))
def test_correctly_signed_mailgun_posts_with_any_event_data(clients: dict[str, TestClient],
                                                            caplog: pytest.LogCaptureFixture, data: Any,
                                                            token: Any) -> None:
    stamp = str(int(time.time()))
    token = token if token is not None else f"fuzz-{next(_tokens)}"
    text = token if isinstance(token, str) else json.dumps(token)
    signature = hmac.new(MAILGUN_KEY.encode(), f"{stamp}{text}".encode(), hashlib.sha256).hexdigest()
    body = json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": data})
    with caplog.at_level(logging.WARNING):
        check(clients["mailgun"].post("/webhooks/mailgun", content=body.encode()), caplog)


@FEW
@given(json_values)
def test_correctly_signed_sendgrid_posts_with_any_events(clients: dict[str, TestClient],
                                                         caplog: pytest.LogCaptureFixture, events: Any) -> None:
    payload = json.dumps(events).encode()
    stamp = str(int(time.time()))
    signature = SENDGRID_KEY.sign(stamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    headers = {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
               "X-Twilio-Email-Event-Webhook-Timestamp": stamp}
    with caplog.at_level(logging.WARNING):
        check(clients["sendgrid"].post("/webhooks/sendgrid", content=payload, headers=headers), caplog)


@FEW
@given(json_values)
def test_authenticated_postmark_posts_with_any_record(clients: dict[str, TestClient],
                                                      caplog: pytest.LogCaptureFixture, record: Any) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(b"u:pw-0123456789").decode()}
    with caplog.at_level(logging.WARNING):
        check(clients["postmark"].post("/webhooks/postmark", content=json.dumps(record).encode(), headers=auth), caplog)


def test_json_nested_beyond_the_parsers_recursion_is_a_400(clients: dict[str, TestClient]) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(b"u:pw-0123456789").decode()}
    deep = b"[" * 200_000 + b"]" * 200_000
    assert clients["postmark"].post("/webhooks/postmark", content=deep, headers=auth).status_code == 400
    assert clients["mailgun"].post("/webhooks/mailgun", content=deep).status_code == 400
