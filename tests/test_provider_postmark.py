"""Postmark: the batch transport against a local Postmark that checks every request against Postmark's
OpenAPI description (our extended copy), the real pipeline end to end through it, and the webhooks."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from publisher.config import Config, PostmarkSettings
from publisher.delivery.mail import build_transport, postmark
from publisher.delivery.mail.postmark import PostmarkTransport
from publisher.errors import TransportUnavailable
from publisher.models import SubscriberStatus
from publisher.pipeline import collect, run_digests
from publisher.store import Store
from publisher.store.schema import deliveries
from publisher.web import create_app
from tests.support.messages import sample_message
from tests.support.provider_servers.postmark import SERVER_TOKEN, PostmarkServer

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

DAY = date(2024, 12, 2)


@pytest.fixture
def server() -> Iterator[PostmarkServer]:
    with PostmarkServer() as running:
        yield running
        assert running.violations == [], running.violations  # every request kept Postmark's contract


def transport_for(server: PostmarkServer, *, token: str = SERVER_TOKEN, stream: str = "broadcast",
                  max_retry_after: float = 5.0) -> PostmarkTransport:
    settings = PostmarkSettings(kind="postmark", server_token=token, base_url=server.url, message_stream=stream,
                                max_retry_after=max_retry_after, timeout=5)
    return PostmarkTransport(settings)


# --- the transport ---------------------------------------------------------------------------------


def test_a_batch_goes_as_one_documented_request(server: PostmarkServer) -> None:
    batch = [sample_message(n, f"reader{n}@example.org") for n in (1, 2, 3)]
    with transport_for(server) as transport:
        report = transport.send(batch)
    assert [r.delivery_id for r in report.results] == [1, 2, 3] and all(r.ok for r in report.results)
    [request] = server.received
    assert request.headers["X-Postmark-Server-Token"] == SERVER_TOKEN
    assert [r.provider_message_id for r in report.results] == [entry["MessageID"] for entry in request.answer]
    for message, entry in zip(batch, request.body, strict=True):
        original = message_from_bytes(message.data, policy=policy.default)
        headers = {h["Name"]: h["Value"] for h in entry["Headers"]}
        assert headers["List-Unsubscribe"] == str(original["List-Unsubscribe"])  # RFC 8058: both reach the reader
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert headers["Message-ID"] == message.message_id
        assert entry["From"] == '"News Digest" <digest@news.example.test>'
        assert entry["To"] == message.recipient
        assert entry["Subject"] == str(original["Subject"])
        assert entry["MessageStream"] == "broadcast"
        assert entry["Metadata"] == {"delivery_id": str(message.delivery_id)}
        assert entry["TextBody"] == original.get_body(("plain",)).get_content()
        assert entry["HtmlBody"] == original.get_body(("html",)).get_content()


def test_each_message_is_judged_by_its_own_error_code(server: PostmarkServer) -> None:
    server.refuse("inactive@example.org", 406)
    server.refuse("invalid@example.org", 300)
    names = ["ok", "inactive", "fine", "invalid"]
    with transport_for(server) as transport:
        results = transport.send([sample_message(n, f"{name}@example.org") for n, name in enumerate(names)]).results
    assert [r.ok for r in results] == [True, False, True, False]  # HTTP 200 for the whole batch nonetheless
    assert server.received[0].status == 200
    assert (results[1].temporary, results[3].temporary) == (False, False)
    assert "406" in (results[1].error or "") and "inactive" in (results[1].error or "")
    assert "300" in (results[3].error or "")


def test_more_than_postmarks_limit_is_split(server: PostmarkServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert postmark.BATCH_LIMIT == 500  # Postmark's documented ceiling (the spec copy says maxItems 500)
    monkeypatch.setattr(postmark, "BATCH_LIMIT", 2)  # the same splitting, without building 501 messages
    server.refuse("r1@example.org", 406)
    batch = [sample_message(n, f"r{n}@example.org", size=300) for n in range(5)]
    with transport_for(server) as transport:
        results = transport.send(batch).results
    assert server.batch_sizes == [2, 2, 1]
    assert [r.delivery_id for r in results] == [0, 1, 2, 3, 4]
    assert [r.ok for r in results] == [True, False, True, True, True]


def test_a_short_rate_limit_is_waited_out_once(server: PostmarkServer) -> None:
    server.fail_next(429, retry_after=0)
    with transport_for(server) as transport:
        results = transport.send([sample_message(1, "a@example.org"), sample_message(2, "b@example.org")]).results
    assert all(r.ok for r in results)
    assert [got.status for got in server.received] == [429, 200]


@pytest.mark.parametrize(("status", "retry_after"), [(429, 3600), (500, None), (503, None)])
def test_rate_limits_and_outages_leave_the_whole_batch_for_later(server: PostmarkServer, status: int,
                                                                 retry_after: int | None) -> None:
    server.fail_next(status, retry_after=retry_after)
    with transport_for(server) as transport:
        results = transport.send([sample_message(1, "a@example.org"), sample_message(2, "b@example.org")]).results
    assert [(r.ok, r.temporary) for r in results] == [(False, True), (False, True)]
    assert len(server.received) == 1


def test_a_refused_request_is_kept_for_later_not_blamed_on_the_recipients(server: PostmarkServer) -> None:
    server.fail_next(422, code=402)  # "Invalid JSON": about our request, not about these readers
    with transport_for(server) as transport:
        results = transport.send([sample_message(1, "a@example.org"), sample_message(2, "b@example.org")]).results
    assert [(r.ok, r.temporary) for r in results] == [(False, True), (False, True)]


@pytest.mark.parametrize(("script", "expected"), [
    ({"status": 422, "code": 405}, "sender signature"),  # out of credits, as a whole-request answer
    ({"recipient_code": 400}, "sender signature"),  # every entry: sender signature not found
])
def test_account_problems_stop_the_batch_with_the_remedy(server: PostmarkServer, script: dict[str, int], expected: str) -> None:
    if "recipient_code" in script:
        server.refuse("a@example.org", script["recipient_code"])
        server.refuse("b@example.org", script["recipient_code"])
    else:
        server.fail_next(script["status"], code=script["code"])
    with transport_for(server) as transport, pytest.raises(TransportUnavailable, match=expected):
        transport.send([sample_message(1, "a@example.org"), sample_message(2, "b@example.org")])


def test_an_unknown_message_stream_names_the_setting(server: PostmarkServer) -> None:
    with transport_for(server, stream="newsletter") as transport, pytest.raises(TransportUnavailable) as caught:
        transport.send([sample_message(1, "a@example.org")])
    assert "message stream not found" in str(caught.value) and "mail.transport.message_stream" in str(caught.value)


def test_a_wrong_token_stops_the_batch_and_names_the_setting(server: PostmarkServer) -> None:
    with transport_for(server, token="pm-wrong") as transport, pytest.raises(TransportUnavailable) as caught:
        transport.send([sample_message(1, "a@example.org")])
    assert "mail.transport.server_token" in str(caught.value)
    assert "pm-wrong" not in str(caught.value)


def test_an_unreachable_api_is_transport_unavailable() -> None:
    settings = PostmarkSettings(kind="postmark", server_token=SERVER_TOKEN, base_url="http://127.0.0.1:9", timeout=2)
    with PostmarkTransport(settings) as transport, pytest.raises(TransportUnavailable, match="base_url"):
        transport.send([sample_message(1, "a@example.org")])


def test_the_local_postmark_refuses_what_postmark_would(server: PostmarkServer) -> None:
    """The contract check is real: a request breaking Postmark's schema or rules gets Postmark's 422."""
    good = {"From": "d@example.org", "To": "a@example.org", "Subject": "s", "TextBody": "x", "MessageStream": "broadcast"}
    headers = {"X-Postmark-Server-Token": SERVER_TOKEN}
    assert requests.post(f"{server.url}/email/batch", json=[good], headers=headers, timeout=5).status_code == 200
    bad_bodies: list[Any] = [
        good,  # not an array
        [{**good, "Messagestream": "broadcast"}],  # a misspelt field
        [{k: v for k, v in good.items() if k != "To"}],  # no recipient
        [{**good, "Headers": [{"Name": "X-Id", "Value": 7}]}],  # a header value that is not a string
        [good] * 501,  # over the batch limit
    ]
    for body in bad_bodies:
        found_before = len(server.violations)
        answer = requests.post(f"{server.url}/email/batch", json=body, headers=headers, timeout=5)
        assert answer.status_code == 422 and answer.json()["ErrorCode"]
        assert len(server.violations) > found_before
    server.violations.clear()  # expected here; the fixture checks the rest of the tests stay clean


def test_config_builds_the_postmark_transport(config_factory: Any) -> None:
    config = config_factory(transport="kind: postmark\n    server_token: t\n    base_url: http://127.0.0.1:1")
    transport = build_transport(config.mail.transport, base_dir=config.base_dir)
    assert isinstance(transport, PostmarkTransport) and transport.max_batch == 50


# --- the pipeline, end to end ----------------------------------------------------------------------


@pytest.fixture
def world(config_factory: Any, tmp_path: Path, server: PostmarkServer) -> Iterator[tuple[Config, Store]]:
    config = config_factory(store_url=f"sqlite:///{tmp_path / 'store.db'}",
                            transport=f"kind: postmark\n    server_token: {SERVER_TOKEN}\n    base_url: {server.url}")
    store = Store.open(config.store_url)
    for i in range(5):
        store.subscribers.upsert(f"en{i}@example.org", name=f"Reader {i}", language="en")
    store.subscribers.upsert("ar0@example.org", name="قارئ", language="ar")
    report = collect(config, store)
    assert not report.errors, report.errors
    yield config, store
    store.close()


def recipients(server: PostmarkServer) -> list[str]:
    return [message["To"].rsplit("<", 1)[-1].rstrip(">") for message in server.accepted]


def test_pipeline_delivers_through_postmark_once(world: tuple[Config, Store], server: PostmarkServer) -> None:
    config, store = world
    server.refuse("en3@example.org", 406)
    outcomes = run_digests(config, store, DAY)
    assert {o.edition: (o.send.sent, o.send.failed) for o in outcomes if o.send} == {"en": (4, 1), "ar": (1, 0)}
    assert server.batch_sizes == [5, 1]  # one request per edition here, each within max_batch
    assert sorted(recipients(server)) == ["ar0@example.org", *(f"en{i}@example.org" for i in (0, 1, 2, 4))]
    for message in server.accepted:
        headers = {h["Name"]: h["Value"] for h in message["Headers"]}
        assert headers["List-Unsubscribe"].startswith("<http://127.0.0.1:8080/unsubscribe/")
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    answered = {entry["MessageID"] for got in server.received for entry in got.answer if entry["ErrorCode"] == 0}
    with store.engine.connect() as connection:
        stored = {row[0] for row in connection.execute(select(deliveries.c.provider_message_id)) if row[0]}
    assert stored == answered  # the ledger keeps Postmark's ids
    requests_before = len(server.received)
    again = run_digests(config, store, DAY)
    assert all(o.send and o.send.sent == 0 for o in again)
    assert len(server.received) == requests_before  # nothing twice, and the refused reader is not retried


def test_an_outage_defers_the_batch_and_the_next_run_completes(world: tuple[Config, Store], server: PostmarkServer) -> None:
    config, store = world
    server.fail_next(500)
    [first] = run_digests(config, store, DAY, editions=["en"])
    assert first.send is not None and (first.send.sent, first.send.deferred, first.send.failed) == (0, 5, 0)
    server.fail_next(429, retry_after=3600)  # too long to wait in place: deferred again, for an hour
    before = datetime.now(UTC)
    [second] = run_digests(config, store, DAY, editions=["en"])
    assert second.send is not None and (second.send.sent, second.send.deferred) == (0, 5)
    with store.engine.begin() as connection:
        due = connection.execute(select(deliveries.c.next_attempt_at).where(deliveries.c.status == "pending")).scalars()
        assert min(due) >= before + timedelta(seconds=3590)  # no sooner than Retry-After said
        connection.execute(deliveries.update().where(deliveries.c.status == "pending").values(next_attempt_at=before))
    [third] = run_digests(config, store, DAY, editions=["en"])  # an hour later
    assert third.send is not None and third.send.sent == 5
    assert sorted(recipients(server)) == [f"en{i}@example.org" for i in range(5)]  # everyone, once


# --- the webhooks ----------------------------------------------------------------------------------

USER, PASSWORD = "hooks", "s3cret-pass"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def webhook(config_factory: Any, tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    transport = f"kind: postmark\n    server_token: t\n    webhook_username: {USER}\n    webhook_password: {PASSWORD}"
    config = config_factory(store_url=f"sqlite:///{tmp_path / 'hooks.db'}", transport=transport)
    store = Store.open(config.store_url)
    for name in ("hard", "soft", "spam", "leaver", "back", "reader"):
        store.subscribers.upsert(f"{name}@example.org", language="en")
    client = TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080")
    yield client, store
    client.close()
    store.close()


def status(store: Store, email: str) -> SubscriberStatus:
    subscriber = store.subscribers.by_email(email)
    assert subscriber is not None
    return subscriber.status


RECORDS: list[tuple[dict[str, Any], bool]] = [  # a Postmark webhook body, and whether it changes anyone
    ({"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1, "Email": "hard@example.org", "MessageID": "m1",
      "Description": "The server was unable to deliver your message", "Details": "550 no such user",
      "Inactive": True, "MessageStream": "broadcast"}, True),
    ({"RecordType": "Bounce", "Type": "SoftBounce", "TypeCode": 4096, "Email": "soft@example.org", "MessageID": "m2",
      "Inactive": False, "MessageStream": "broadcast"}, False),
    ({"RecordType": "SpamComplaint", "Type": "SpamComplaint", "TypeCode": 100001, "Email": "spam@example.org",
      "MessageID": "m3", "MessageStream": "broadcast"}, True),
    ({"RecordType": "SubscriptionChange", "MessageID": "m4", "ServerID": 1, "MessageStream": "broadcast",
      "ChangedAt": "2024-12-02T10:00:00Z", "Recipient": "leaver@example.org", "Origin": "Recipient",
      "SuppressSending": True, "SuppressionReason": "ManualSuppression"}, True),
    ({"RecordType": "SubscriptionChange", "MessageID": None, "MessageStream": "broadcast", "Recipient": "back@example.org",
      "Origin": "Customer", "SuppressSending": False, "SuppressionReason": None}, False),
    ({"RecordType": "Delivery", "Recipient": "reader@example.org", "MessageID": "m5", "MessageStream": "broadcast"}, False),
]


def test_authenticated_records_change_subscribers(webhook: tuple[TestClient, Store]) -> None:
    client, store = webhook
    for record, changes in RECORDS:
        answer = client.post("/webhooks/postmark", json=record, headers=basic(USER, PASSWORD))
        assert answer.status_code == 200, answer.text
        assert answer.json()["applied"] is changes, record
    assert {name: status(store, f"{name}@example.org") for name in ("hard", "soft", "spam", "leaver", "back", "reader")} == {
        "hard": SubscriberStatus.BOUNCED, "soft": SubscriberStatus.ACTIVE, "spam": SubscriberStatus.COMPLAINED,
        "leaver": SubscriberStatus.UNSUBSCRIBED, "back": SubscriberStatus.ACTIVE, "reader": SubscriberStatus.ACTIVE,
    }


def test_wrong_or_missing_credentials_are_refused(webhook: tuple[TestClient, Store]) -> None:
    client, store = webhook
    record = RECORDS[0][0]
    for headers in ({}, basic(USER, "guess"), basic("someone", PASSWORD), {"Authorization": "Bearer " + PASSWORD}):
        answer = client.post("/webhooks/postmark", content=json.dumps(record), headers=headers)
        assert answer.status_code == 401
    assert status(store, "hard@example.org") is SubscriberStatus.ACTIVE


def test_without_configured_credentials_every_post_is_refused(config_factory: Any, tmp_path: Path) -> None:
    config = config_factory(store_url=f"sqlite:///{tmp_path / 'k.db'}", transport="kind: postmark\n    server_token: t")
    store = Store.open(config.store_url)
    try:
        with TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080") as client:
            assert client.post("/webhooks/postmark", json=RECORDS[0][0], headers=basic("", "")).status_code == 403
            assert client.post("/webhooks/sendgrid", content=b"[]").status_code == 404  # not this site's provider
    finally:
        store.close()


def test_ten_suppressed_readers_in_a_row_do_not_stop_the_send(config_factory: Any, tmp_path: Path,
                                                             server: PostmarkServer) -> None:
    """The pipeline stops after ten identical refusals in a row; Postmark's 406 is per reader, so it must
    not look identical."""
    config = config_factory(store_url=f"sqlite:///{tmp_path / 'many.db'}",
                            transport=f"kind: postmark\n    server_token: {SERVER_TOKEN}\n    base_url: {server.url}")
    store = Store.open(config.store_url)
    try:
        for i in range(12):
            store.subscribers.upsert(f"gone{i:02d}@example.org", language="en")
            server.refuse(f"gone{i:02d}@example.org", 406)
        store.subscribers.upsert("zz-reader@example.org", language="en")
        assert not collect(config, store).errors
        [outcome] = run_digests(config, store, DAY, editions=["en"])
        assert outcome.send is not None
        assert (outcome.send.sent, outcome.send.failed, outcome.send.deferred) == (1, 12, 0)
        assert outcome.send.error is None
    finally:
        store.close()


# --- answers that do not match the batch -----------------------------------------------------------


def test_an_answer_with_an_entry_missing_is_matched_by_recipient(
    server: PostmarkServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Postmark answers two entries, in the wrong order, for three messages
    server.reshape_next(lambda entries: [entries[2], entries[0]])
    batch = [sample_message(n, f"reader{n}@example.org") for n in (1, 2, 3)]
    with caplog.at_level("WARNING"), transport_for(server) as transport:
        results = transport.send(batch).results
    [request] = server.received
    by_address = {entry["To"]: entry["MessageID"] for entry in request.answer}
    assert [r.delivery_id for r in results] == [1, 2, 3]
    assert (results[0].ok, results[2].ok) == (True, True)
    assert results[0].provider_message_id == by_address["reader1@example.org"]
    assert results[2].provider_message_id == by_address["reader3@example.org"]
    # no entry for the second: it may or may not have gone out, so it is not marked sent (nor failed)
    assert (results[1].ok, results[1].temporary) == (False, True)
    assert "no result for this message" in (results[1].error or "")
    assert "answered 2 entries for 3 messages" in caplog.text


def test_an_answer_with_more_entries_than_messages_gives_each_its_own(server: PostmarkServer) -> None:
    stray = {"ErrorCode": 0, "Message": "OK", "MessageID": "not-ours", "To": "someone.else@example.org"}
    server.reshape_next(lambda entries: [stray, entries[1], entries[0]])
    batch = [sample_message(n, f"reader{n}@example.org") for n in (1, 2)]
    with transport_for(server) as transport:
        results = transport.send(batch).results
    answer = {entry["To"]: entry["MessageID"] for entry in server.received[0].answer}
    assert [(r.ok, r.provider_message_id) for r in results] == [
        (True, answer["reader1@example.org"]),
        (True, answer["reader2@example.org"]),
    ]


def test_an_answer_out_of_request_order_is_matched_by_recipient(
    server: PostmarkServer, caplog: pytest.LogCaptureFixture
) -> None:
    # as many entries as messages, but swapped: position alone would give each reader the other's id
    server.reshape_next(lambda entries: [entries[1], entries[0]])
    batch = [sample_message(n, f"reader{n}@example.org") for n in (1, 2)]
    with caplog.at_level("WARNING"), transport_for(server) as transport:
        results = transport.send(batch).results
    answer = {entry["To"]: entry["MessageID"] for entry in server.received[0].answer}
    assert answer["reader1@example.org"] != answer["reader2@example.org"]
    assert [(r.delivery_id, r.ok, r.provider_message_id) for r in results] == [
        (1, True, answer["reader1@example.org"]),
        (2, True, answer["reader2@example.org"]),
    ]
    assert "not in request order" in caplog.text
