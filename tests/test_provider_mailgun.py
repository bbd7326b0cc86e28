"""Mailgun: the transport against a local Mailgun API that checks every request against Mailgun's own
OpenAPI spec, the whole pipeline through it, and the signed event webhook.

The local API (tests/support/provider_servers/mailgun.py) is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from publisher.config import MailgunSettings, load_config
from publisher.delivery.mail import build_transport
from publisher.delivery.mail.mailgun import MailgunTransport
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SubscriberStatus
from publisher.pipeline import collect, run_digests
from publisher.store import Store
from publisher.store.schema import deliveries
from publisher.web import create_app
from tests.conftest import write_config
from tests.support.messages import sample_message
from tests.support.provider_servers.mailgun import MailgunServer

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

DAY = date(2024, 12, 2)
SIGNING_KEY = "whsec-mailgun-test-key"
NOT_AN_ADDRESS = "'to' parameter is not a valid address. please check documentation"


@pytest.fixture
def server() -> Iterator[MailgunServer]:
    with MailgunServer(refuse={"nobody@example.org": NOT_AN_ADDRESS}) as running:
        yield running
    assert running.violations == [], running.violations


def transport_for(server: MailgunServer, **overrides: Any) -> tuple[MailgunTransport, list[float]]:
    slept: list[float] = []
    return MailgunTransport(server.settings(**overrides), sleep=slept.append), slept


# --- the transport -------------------------------------------------------------------------------


def test_sends_our_exact_bytes_to_messages_mime_with_basic_auth(server: MailgunServer) -> None:
    transport, _ = transport_for(server)
    message = sample_message(7, "reader@example.org")
    report = transport.send([message])
    [request] = server.received
    assert request.path == "/v3/mg.example.org/messages.mime"
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.fields == {"to": ["reader@example.org"]}
    assert request.message == message.data  # raw MIME: nothing rebuilt, nothing lost
    parsed = request.parsed()
    assert parsed["List-Unsubscribe"] == "<https://news.example.test/u/7>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [result] = report.results
    assert result.ok and result.delivery_id == 7
    assert result.provider_message_id == "<20261125090000.000001@mg.example.org>"


def test_one_message_per_call_results_in_batch_order(server: MailgunServer) -> None:
    transport, _ = transport_for(server)
    assert transport.max_batch == 1
    batch = [sample_message(1, "a@example.org"), sample_message(2, "nobody@example.org"), sample_message(3, "c@example.org")]
    report = transport.send(batch)
    assert [r.delivery_id for r in report.results] == [1, 2, 3]
    assert [r.ok for r in report.results] == [True, False, True]
    refused = report.results[1]
    assert not refused.temporary and "not a valid address" in (refused.error or "")
    assert [r.fields["to"] for r in server.received] == [["a@example.org"], ["nobody@example.org"], ["c@example.org"]]


def test_region_chooses_the_api_address() -> None:
    def settings(**values: Any) -> MailgunSettings:
        return MailgunSettings(kind="mailgun", api_key="k", domain="mg.example.org", **values)

    assert MailgunTransport(settings()).base_url == "https://api.mailgun.net"
    assert MailgunTransport(settings(region="eu")).base_url == "https://api.eu.mailgun.net"
    assert MailgunTransport(settings(region="eu", base_url="http://127.0.0.1:9/")).base_url == "http://127.0.0.1:9"
    built = build_transport(settings(region="eu"), base_dir=Path("."))
    assert isinstance(built, MailgunTransport)


def test_short_429_is_waited_once_then_sent(server: MailgunServer) -> None:
    transport, slept = transport_for(server)
    server.fail_next(429, "account-requests-per-sec limit exceeded", headers={"Retry-After": "2"})
    [result] = transport.send([sample_message(1, "a@example.org")]).results
    assert result.ok
    assert slept == [2.0]
    assert [r.status for r in server.received] == [429, 200]


def test_long_429_and_500_are_temporary_for_that_message(server: MailgunServer) -> None:
    transport, slept = transport_for(server, max_retry_after=10)
    server.fail_next(429, "try again after 120 seconds", headers={"Retry-After": "120"})
    server.fail_next(500, "Internal Server Error")
    first, second, third = transport.send(
        [sample_message(1, "a@example.org"), sample_message(2, "b@example.org"), sample_message(3, "c@example.org")]
    ).results
    assert slept == []  # 120 s is longer than max_retry_after: not waited in place
    assert not first.ok and first.temporary and "429" in (first.error or "")
    assert not second.ok and second.temporary and "500" in (second.error or "")
    assert third.ok


def test_bad_key_stops_the_transport_with_the_remedy(server: MailgunServer) -> None:
    transport, _ = transport_for(server, api_key="wrong")
    with pytest.raises(TransportUnavailable, match="mail.transport.api_key"):
        transport.send([sample_message(1, "a@example.org")])
    assert server.accepted == []
    assert server.received[0].headers["Authorization"] != ""  # the key went, it was just wrong


def test_unknown_domain_stops_the_transport(server: MailgunServer) -> None:
    transport, _ = transport_for(server, domain="other.example.org")
    with pytest.raises(TransportUnavailable, match="mail.transport.domain"):
        transport.send([sample_message(1, "a@example.org")])


def test_failure_after_an_acceptance_keeps_the_rest_pending(server: MailgunServer) -> None:
    transport, _ = transport_for(server)
    server.fail_for("b@example.org", 401, "Forbidden")  # the key stops working between two messages
    batch = [sample_message(1, "a@example.org"), sample_message(2, "b@example.org"), sample_message(3, "c@example.org")]
    first, second, third = transport.send(batch).results
    assert first.ok  # accepted: must be reported, so no exception may lose it
    assert not second.ok and second.temporary and "api_key" in (second.error or "")
    assert not third.ok and third.temporary and "not attempted" in (third.error or "")
    assert [r.fields["to"] for r in server.received] == [["a@example.org"], ["b@example.org"]]


def test_unreachable_api_raises_before_anything_is_claimed() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = MailgunSettings(kind="mailgun", api_key="k", domain="mg.example.org", base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransportUnavailable, match="cannot connect"):
        MailgunTransport(settings).send([sample_message(1, "a@example.org")])


def test_bad_envelope_and_empty_batch_never_reach_the_api(server: MailgunServer) -> None:
    transport, _ = transport_for(server)
    assert transport.send([]).results == []
    bad = OutgoingMessage(5, "digest@news.example.test", "no-at-sign", "<5@x>", sample_message(5, "x@example.org").data)
    [result] = transport.send([bad]).results
    assert not result.ok and not result.temporary
    assert server.received == []


def test_the_local_api_refuses_what_mailgun_would(server: MailgunServer) -> None:
    """The checks are real: a request without the message part breaks the spec and gets a 400."""
    answer = requests.post(f"{server.url}/v3/mg.example.org/messages.mime", auth=("api", server.api_key),
                           files={"to": (None, "a@example.org")}, timeout=5)
    assert answer.status_code == 400
    assert len(server.violations) == 1 and "message" in server.violations[0]
    server.violations.clear()


# --- the pipeline through Mailgun ----------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path, server: MailgunServer) -> Iterator[tuple[Any, Store]]:
    transport = (f"kind: mailgun\n    api_key: {server.api_key}\n    domain: {server.domain}\n"
                 f"    base_url: {server.url}\n    max_retry_after: 5")
    config = load_config(write_config(tmp_path, store_url=f"sqlite:///{tmp_path / 'store.db'}", transport=transport))
    store = Store.open(config.store_url)
    for i in range(3):
        store.subscribers.upsert(f"en{i}@example.org", name=f"Reader {i}", language="en")
    for i in range(2):
        store.subscribers.upsert(f"ar{i}@example.org", name=f"قارئ {i}", language="ar")
    assert not collect(config, store).errors
    yield config, store
    store.close()


def test_pipeline_delivers_each_digest_once_through_mailgun(world: tuple[Any, Store], server: MailgunServer) -> None:
    config, store = world
    outcomes = run_digests(config, store, DAY)
    assert {o.edition: o.send.sent for o in outcomes if o.send} == {"en": 3, "ar": 2}
    recipients = sorted(r.fields["to"][0] for r in server.accepted)
    assert recipients == ["ar0@example.org", "ar1@example.org", "en0@example.org", "en1@example.org", "en2@example.org"]
    for request in server.accepted:
        parsed = request.parsed()
        assert parsed["To"].addresses[0].addr_spec == request.fields["to"][0]
        assert parsed["List-Unsubscribe"] and parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with store.engine.connect() as connection:
        stored = sorted(connection.execute(select(deliveries.c.provider_message_id)).scalars())
    assert stored == sorted(str(r.provider_id) for r in server.accepted)
    again = run_digests(config, store, DAY)
    assert all(o.send and o.send.sent == 0 for o in again)
    assert len(server.accepted) == 5


def test_pipeline_defers_a_failed_request_and_the_next_run_completes_it(
    world: tuple[Any, Store], server: MailgunServer
) -> None:
    config, store = world
    server.fail_next(500, "Internal Server Error")
    server.fail_next(429, "limit exceeded", headers={"Retry-After": "3600"})  # too long to wait in place
    before = datetime.now(UTC)
    [outcome] = run_digests(config, store, DAY, editions=["en"])
    # retry.first_delay is 0 in the test config: the 500 is retried within the same run; the 429 is
    # due again no sooner than its Retry-After says
    assert outcome.send is not None and (outcome.send.sent, outcome.send.deferred) == (2, 1)
    with store.engine.begin() as connection:
        [due] = connection.execute(select(deliveries.c.next_attempt_at).where(deliveries.c.status == "pending")).scalars()
        assert due >= before + timedelta(seconds=3590)
        connection.execute(deliveries.update().where(deliveries.c.status == "pending").values(next_attempt_at=before))
    [again] = run_digests(config, store, DAY, editions=["en"])  # an hour later
    assert again.send is not None and again.send.sent == 1
    assert sorted(r.fields["to"][0] for r in server.accepted) == [f"en{i}@example.org" for i in range(3)]


# --- the webhook ---------------------------------------------------------------------------------


@pytest.fixture
def hook(tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    transport = f"kind: mailgun\n    api_key: k\n    domain: mg.example.org\n    webhook_signing_key: {SIGNING_KEY}"
    config = load_config(write_config(tmp_path, transport=transport))
    store = Store.open(config.store_url)
    store.subscribers.upsert("reader@example.org", language="en")
    client = TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080")
    yield client, store
    client.close()
    store.close()


LONG_AGO = 1_600_000_000  # 2020-09-13: a signature that old is stale whatever the clock says


def signed(event_data: dict[str, Any], *, key: str = SIGNING_KEY, timestamp: int | None = None,
           token: str = "a" * 50) -> bytes:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(key.encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": signature},
                       "event-data": event_data}).encode()


def status_of(store: Store, email: str = "reader@example.org") -> SubscriberStatus:
    subscriber = store.subscribers.by_email(email)
    assert subscriber is not None
    return subscriber.status


HARD_BOUNCE = {"event": "failed", "severity": "permanent", "reason": "bounce", "recipient": "reader@example.org",
               "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"}}


def post(client: TestClient, body: bytes) -> Any:
    return client.post("/webhooks/mailgun", content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("event_data", "expected"),
    [
        (HARD_BOUNCE, SubscriberStatus.BOUNCED),
        ({"event": "failed", "severity": "permanent", "reason": "suppress-bounce", "recipient": "reader@example.org"},
         SubscriberStatus.BOUNCED),
        ({"event": "complained", "recipient": "reader@example.org"}, SubscriberStatus.COMPLAINED),
        ({"event": "unsubscribed", "recipient": "reader@example.org"}, SubscriberStatus.UNSUBSCRIBED),
        ({"event": "failed", "severity": "temporary", "reason": "generic", "recipient": "reader@example.org"},
         SubscriberStatus.ACTIVE),
        ({"event": "delivered", "recipient": "reader@example.org"}, SubscriberStatus.ACTIVE),
    ],
)
def test_signed_events_change_the_subscriber(hook: tuple[TestClient, Store], event_data: dict[str, Any],
                                             expected: SubscriberStatus) -> None:
    client, store = hook
    answer = post(client, signed(event_data))
    assert answer.status_code == 200
    assert status_of(store) == expected


def test_bad_signature_old_timestamp_and_garbage_are_refused(hook: tuple[TestClient, Store]) -> None:
    client, store = hook
    assert post(client, signed(HARD_BOUNCE, key="not-the-key")).status_code == 403
    assert post(client, signed(HARD_BOUNCE, timestamp=LONG_AGO)).status_code == 403  # outside MAX_AGE
    tampered = json.loads(signed(HARD_BOUNCE))
    tampered["signature"]["token"] = "b" * 50
    assert post(client, json.dumps(tampered).encode()).status_code == 403
    assert post(client, b"not json").status_code == 400
    assert status_of(store) == SubscriberStatus.ACTIVE


def test_a_replayed_token_changes_nothing(hook: tuple[TestClient, Store]) -> None:
    client, store = hook
    body = signed({"event": "complained", "recipient": "reader@example.org"}, token="t" * 50)
    assert post(client, body).text == "applied\n"
    subscriber = store.subscribers.by_email("reader@example.org")
    assert subscriber is not None
    store.subscribers.set_status(subscriber.id, SubscriberStatus.ACTIVE)  # the reader resubscribed
    replay = post(client, body)
    assert replay.status_code == 200 and replay.text == "already received\n"
    assert status_of(store) == SubscriberStatus.ACTIVE


def test_webhook_is_absent_when_mailgun_is_not_the_transport(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))  # the outbox
    store = Store.open(config.store_url)
    try:
        with TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080") as client:
            assert post(client, signed(HARD_BOUNCE)).status_code == 404
    finally:
        store.close()
