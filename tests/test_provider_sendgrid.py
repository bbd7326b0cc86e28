"""SendGrid: the transport against a local SendGrid that checks every request against SendGrid's
OpenAPI description, the real pipeline end to end through it, and the signed Event Webhook."""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections.abc import Iterator
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from publisher.config import Config, SendGridSettings
from publisher.delivery.mail import build_transport
from publisher.delivery.mail.sendgrid import SendGridTransport
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SubscriberStatus
from publisher.pipeline import collect, run_digests
from publisher.store import Store
from publisher.store.schema import deliveries
from publisher.web import create_app
from publisher.web.webhooks.sendgrid import SignatureError, verify_signature
from tests.support.messages import sample_message
from tests.support.provider_servers.sendgrid import API_KEY, SendGridServer

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

DAY = date(2024, 12, 2)


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer() as running:
        yield running
        assert running.violations == [], running.violations  # every request kept SendGrid's contract


def transport_for(server: SendGridServer, *, api_key: str = API_KEY, timeout: float = 5.0,
                  max_retry_after: float = 5.0) -> SendGridTransport:
    settings = SendGridSettings(kind="sendgrid", api_key=api_key, base_url=server.url, timeout=timeout,
                                max_retry_after=max_retry_after)
    return SendGridTransport(settings)


# --- the transport ---------------------------------------------------------------------------------


def test_each_message_goes_as_its_own_documented_request(server: SendGridServer) -> None:
    batch = [sample_message(n, f"reader{n}@example.org") for n in (1, 2, 3)]
    with transport_for(server) as transport:
        report = transport.send(batch)
    assert [r.delivery_id for r in report.results] == [1, 2, 3]
    assert all(r.ok for r in report.results)
    assert [r.provider_message_id for r in report.results] == [got.message_id for got in server.received]
    assert len(server.received) == 3  # one request per message
    for message, got in zip(batch, server.received, strict=True):
        original = message_from_bytes(message.data, policy=policy.default)
        assert got.headers["Authorization"] == f"Bearer {API_KEY}"
        [personalization] = got.body["personalizations"]
        assert personalization["to"] == [{"email": message.recipient}]
        headers = personalization["headers"]
        assert headers["List-Unsubscribe"] == str(original["List-Unsubscribe"])  # RFC 8058: both reach the reader
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert headers["Message-ID"] == message.message_id
        assert personalization["custom_args"] == {"delivery_id": str(message.delivery_id), "message_id": message.message_id}
        assert got.body["from"] == {"email": "digest@news.example.test", "name": "News Digest"}
        assert got.body["subject"] == str(original["Subject"])
        text, html = got.body["content"]
        assert text["type"] == "text/plain" and html["type"] == "text/html"
        assert text["value"] == original.get_body(("plain",)).get_content()
        assert html["value"] == original.get_body(("html",)).get_content()


def test_a_refused_address_fails_only_that_message_permanently(server: SendGridServer) -> None:
    server.refuse("broken@example.org", 400, "Does not contain a valid address.")
    batch = [sample_message(1, "ok@example.org"), sample_message(2, "broken@example.org"), sample_message(3, "fine@example.org")]
    with transport_for(server) as transport:
        results = transport.send(batch).results
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].temporary is False
    assert "valid address" in (results[1].error or "")


def test_a_short_rate_limit_is_waited_out_once(server: SendGridServer) -> None:
    server.fail_next(429, reset_in=0)  # X-RateLimit-Reset: now
    with transport_for(server) as transport:
        [result] = transport.send([sample_message(1, "a@example.org")]).results
    assert result.ok
    assert [got.status for got in server.received] == [429, 202]


def test_a_long_rate_limit_leaves_the_message_for_later(server: SendGridServer) -> None:
    server.fail_next(429, reset_in=3600)
    with transport_for(server, max_retry_after=5) as transport:
        [result] = transport.send([sample_message(1, "a@example.org")]).results
    assert (result.ok, result.temporary) == (False, True)
    assert "429" in (result.error or "") and "rate limit 600" in (result.error or "")
    assert len(server.received) == 1  # not retried in place


@pytest.mark.parametrize(("status", "temporary"), [(500, True), (413, False)])
def test_server_errors_are_temporary_and_too_large_is_permanent(server: SendGridServer, status: int, temporary: bool) -> None:
    server.fail_next(status)
    with transport_for(server) as transport:
        [result] = transport.send([sample_message(1, "a@example.org")]).results
    assert (result.ok, result.temporary) == (False, temporary)
    assert str(status) in (result.error or "")


def test_a_timeout_is_temporary(server: SendGridServer) -> None:
    server.fail_next(202, hold=True)
    with transport_for(server, timeout=0.3) as transport:
        [result] = transport.send([sample_message(1, "a@example.org")]).results
    assert (result.ok, result.temporary) == (False, True)
    assert "no answer" in (result.error or "")


def test_a_wrong_key_stops_the_batch_and_names_the_setting(server: SendGridServer) -> None:
    with transport_for(server, api_key="SG.wrong") as transport, pytest.raises(TransportUnavailable) as caught:
        transport.send([sample_message(1, "a@example.org"), sample_message(2, "b@example.org")])
    assert "mail.transport.api_key" in str(caught.value)
    assert "SG.wrong" not in str(caught.value)  # never the secret itself
    assert len(server.received) == 1


def test_an_unreachable_api_is_transport_unavailable(server: SendGridServer) -> None:
    settings = SendGridSettings(kind="sendgrid", api_key=API_KEY, base_url="http://127.0.0.1:9", timeout=2)
    with SendGridTransport(settings) as transport, pytest.raises(TransportUnavailable, match="base_url"):
        transport.send([sample_message(1, "a@example.org")])


def test_a_malformed_envelope_is_refused_without_a_request(server: SendGridServer) -> None:
    bad = OutgoingMessage(9, "digest@news.example.test", "no-at-sign", "<9@x>", sample_message(9, "x@example.org").data)
    with transport_for(server) as transport:
        [result] = transport.send([bad]).results
    assert (result.ok, result.temporary) == (False, False)
    assert server.received == []


def test_the_local_sendgrid_refuses_what_sendgrid_would(server: SendGridServer) -> None:
    """The contract check is real: a request breaking SendGrid's schema or rules gets SendGrid's 400."""
    good = {"personalizations": [{"to": [{"email": "a@example.org"}]}], "from": {"email": "d@example.org"},
            "subject": "s", "content": [{"type": "text/plain", "value": "x"}]}
    bad_bodies: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "from"},  # required by the schema
        {**good, "personalizations": [{"to": [{"email": "a@example.org"}], "headers": {"Reply-To": "x@example.org"}}]},
        {**good, "content": [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}]},
    ]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert requests.post(f"{server.url}/v3/mail/send", json=good, headers=headers, timeout=5).status_code == 202
    for body in bad_bodies:
        found_before = len(server.violations)
        answer = requests.post(f"{server.url}/v3/mail/send", json=body, headers=headers, timeout=5)
        assert answer.status_code == 400 and answer.json()["errors"]
        assert len(server.violations) > found_before
    server.violations.clear()  # expected here; the fixture checks the rest of the tests stay clean


def test_config_builds_the_sendgrid_transport(config_factory: Any) -> None:
    config = config_factory(transport="kind: sendgrid\n    api_key: k\n    base_url: http://127.0.0.1:1")
    transport = build_transport(config.mail.transport, base_dir=config.base_dir)
    assert isinstance(transport, SendGridTransport) and transport.max_batch == 1


# --- the pipeline, end to end ----------------------------------------------------------------------


@pytest.fixture
def world(config_factory: Any, tmp_path: Path, server: SendGridServer) -> Iterator[tuple[Config, Store]]:
    config = config_factory(store_url=f"sqlite:///{tmp_path / 'store.db'}",
                            transport=f"kind: sendgrid\n    api_key: {API_KEY}\n    base_url: {server.url}")
    store = Store.open(config.store_url)
    for i in range(4):
        store.subscribers.upsert(f"en{i}@example.org", name=f"Reader {i}", language="en")
    store.subscribers.upsert("ar0@example.org", name="قارئ", language="ar")
    report = collect(config, store)
    assert not report.errors, report.errors
    yield config, store
    store.close()


def recipients(server: SendGridServer) -> list[str]:
    return [body["personalizations"][0]["to"][0]["email"] for body in server.accepted]


def test_pipeline_delivers_through_sendgrid_once(world: tuple[Config, Store], server: SendGridServer) -> None:
    config, store = world
    outcomes = run_digests(config, store, DAY)
    assert {o.edition: o.send.sent for o in outcomes if o.send} == {"en": 4, "ar": 1}
    assert sorted(recipients(server)) == ["ar0@example.org", *(f"en{i}@example.org" for i in range(4))]
    for body in server.accepted:
        headers = body["personalizations"][0]["headers"]
        assert headers["List-Unsubscribe"].startswith("<http://127.0.0.1:8080/unsubscribe/")
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with store.engine.connect() as connection:
        stored = {row.provider_message_id for row in connection.execute(select(deliveries.c.provider_message_id))}
    assert stored == {got.message_id for got in server.received if got.status == 202}  # the ledger keeps SendGrid's ids
    requests_before = len(server.received)
    again = run_digests(config, store, DAY)
    assert all(o.send and o.send.sent == 0 for o in again)
    assert len(server.received) == requests_before  # nothing twice


def test_an_outage_on_one_request_defers_it_and_the_next_run_completes(world: tuple[Config, Store], server: SendGridServer) -> None:
    config, store = world
    server.fail_next(500)
    [first] = run_digests(config, store, DAY, editions=["en"])
    assert first.send is not None
    # retry.first_delay is 0 in the test config: the failed request is retried within the same run
    assert (first.send.sent, first.send.deferred, first.send.failed, first.send.retried) == (4, 0, 0, 1)
    [again] = run_digests(config, store, DAY, editions=["en"])
    assert again.send is not None and again.send.sent == 0
    assert sorted(recipients(server)) == [f"en{i}@example.org" for i in range(4)]  # everyone, once


# --- the Event Webhook -----------------------------------------------------------------------------


@pytest.fixture
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def signed(key: ec.EllipticCurvePrivateKey, payload: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    signature = key.sign(stamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp, "Content-Type": "application/json"}


@pytest.fixture
def webhook(config_factory: Any, tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey) -> Iterator[tuple[TestClient, Store]]:
    config = config_factory(store_url=f"sqlite:///{tmp_path / 'hooks.db'}",
                            transport=f"kind: sendgrid\n    api_key: k\n    webhook_public_key: {public_key_b64(signing_key)}")
    store = Store.open(config.store_url)
    for name in ("hard", "blocked", "spam", "leaver", "dropped", "reader"):
        store.subscribers.upsert(f"{name}@example.org", language="en")
    client = TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080")
    yield client, store
    client.close()
    store.close()


def status(store: Store, email: str) -> SubscriberStatus:
    subscriber = store.subscribers.by_email(email)
    assert subscriber is not None
    return subscriber.status


EVENTS = [
    {"email": "hard@example.org", "event": "bounce", "type": "bounce", "reason": "550 5.1.1 no such user",
     "sg_event_id": "e1", "sg_message_id": "m1", "timestamp": 1700000000},
    {"email": "blocked@example.org", "event": "bounce", "type": "blocked", "reason": "421 try later", "sg_event_id": "e2"},
    {"email": "spam@example.org", "event": "spamreport", "sg_event_id": "e3"},
    {"email": "leaver@example.org", "event": "group_unsubscribe", "asm_group_id": 1, "sg_event_id": "e4"},
    {"email": "dropped@example.org", "event": "dropped", "reason": "Bounced Address", "sg_event_id": "e5"},
    {"email": "reader@example.org", "event": "delivered", "sg_event_id": "e6"},
    {"email": "reader@example.org", "event": "open", "sg_event_id": "e7"},
]


def test_signed_events_change_subscribers(webhook: tuple[TestClient, Store], signing_key: ec.EllipticCurvePrivateKey) -> None:
    client, store = webhook
    payload = json.dumps(EVENTS).encode() + b"\r\n"
    answer = client.post("/webhooks/sendgrid", content=payload, headers=signed(signing_key, payload))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 7, "applied": 4, "repeated": 0, "refused": 0}
    assert {name: status(store, f"{name}@example.org") for name in ("hard", "blocked", "spam", "leaver", "dropped", "reader")} == {
        "hard": SubscriberStatus.BOUNCED, "blocked": SubscriberStatus.ACTIVE, "spam": SubscriberStatus.COMPLAINED,
        "leaver": SubscriberStatus.UNSUBSCRIBED, "dropped": SubscriberStatus.BOUNCED, "reader": SubscriberStatus.ACTIVE,
    }
    replay = client.post("/webhooks/sendgrid", content=payload, headers=signed(signing_key, payload))
    assert replay.json()["applied"] == 0  # SendGrid retries: the same events change nothing twice


def test_unsigned_forged_or_stale_posts_are_refused(webhook: tuple[TestClient, Store], signing_key: ec.EllipticCurvePrivateKey) -> None:
    client, store = webhook
    payload = json.dumps([EVENTS[2]]).encode()
    forger = ec.generate_private_key(ec.SECP256R1())
    tampered = payload.replace(b"spam@", b"hard@")
    attempts = [
        {"Content-Type": "application/json"},  # no signature at all
        signed(forger, payload),  # someone else's key
        signed(signing_key, payload, timestamp=int(time.time()) - 3 * 86400),  # an old capture replayed
    ]
    for headers in attempts:
        assert client.post("/webhooks/sendgrid", content=payload, headers=headers).status_code == 403
    assert client.post("/webhooks/sendgrid", content=tampered, headers=signed(signing_key, payload)).status_code == 403
    assert status(store, "spam@example.org") is SubscriberStatus.ACTIVE
    assert status(store, "hard@example.org") is SubscriberStatus.ACTIVE


def test_without_a_configured_key_every_post_is_refused(config_factory: Any, tmp_path: Path) -> None:
    config = config_factory(store_url=f"sqlite:///{tmp_path / 'k.db'}", transport="kind: sendgrid\n    api_key: k")
    store = Store.open(config.store_url)
    try:
        with TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080") as client:
            answer = client.post("/webhooks/sendgrid", content=b"[]", headers={"Content-Type": "application/json"})
        assert answer.status_code == 403
    finally:
        store.close()


def test_the_verifier_accepts_sendgrids_own_published_sample() -> None:
    """The key, signature and payload SendGrid's own Python library tests with (sendgrid-python,
    test/unit/test_eventwebhook.py): proves we sign-check exactly what SendGrid signs."""
    key = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eN"
           "Ec6wEA3F+g==")
    signature = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
    payload = json.dumps([{
        "email": "hello@world.com", "event": "dropped", "reason": "Bounced Address",
        "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
        "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
        "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>", "timestamp": 1600112492,
    }], sort_keys=True, separators=(",", ":")).encode() + b"\r\n"
    verify_signature(key, signature, "1600112502", payload, now=1600112510)
    with pytest.raises(SignatureError):
        verify_signature(key, signature, "1600112503", payload, now=1600112510)
    with pytest.raises(SignatureError):
        verify_signature(key, signature, "1600112502", payload.replace(b"hello", b"hallo"), now=1600112510)
