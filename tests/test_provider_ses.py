"""Amazon SES v2: the transport (botocore, SigV4) against a local SES API that recomputes every
signature and checks every body against botocore's SendEmail model, the whole pipeline through it, and
the SNS-delivered bounce and complaint webhook with messages signed by a key of our own.
"""

from __future__ import annotations

import base64
import json
import socket
import warnings
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import select

import publisher.web.webhooks.ses as ses_webhook
from publisher.config import SesSettings, load_config
from publisher.delivery.mail import build_transport
from publisher.delivery.mail.ses import DELIVERY_TAG, SesTransport
from publisher.errors import TransportUnavailable
from publisher.models import SubscriberStatus
from publisher.pipeline import collect, run_digests
from publisher.store import Store
from publisher.store.schema import deliveries
from publisher.web import create_app
from tests.conftest import write_config
from tests.support.messages import sample_message
from tests.support.provider_servers.ses import SEND_EMAIL_PATH, SesServer, SnsSigner

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
from starlette.testclient import TestClient  # noqa: E402

DAY = date(2024, 12, 2)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:publisher-events"


@pytest.fixture
def server() -> Iterator[SesServer]:
    with SesServer(refuse={"rejected@example.org": ("MessageRejected", "Email address is not verified.")}) as running:
        yield running
    assert running.violations == [], running.violations


def transport_for(server: SesServer, **overrides: Any) -> tuple[SesTransport, list[float]]:
    slept: list[float] = []
    return SesTransport(server.settings(**overrides), sleep=slept.append), slept


# --- the transport -------------------------------------------------------------------------------


def test_send_email_carries_our_bytes_envelope_tag_and_configuration_set(server: SesServer) -> None:
    transport, _ = transport_for(server, configuration_set="newsletter-events")
    message = sample_message(42, "reader@example.org")
    [result] = transport.send([message]).results
    [call] = server.accepted
    assert call.raw == message.data  # base64 on the wire, our exact bytes at SES
    assert call.params["FromEmailAddress"] == message.sender
    assert call.to == ["reader@example.org"]
    assert call.params["ConfigurationSetName"] == "newsletter-events"
    assert call.params["EmailTags"] == [{"Name": DELIVERY_TAG, "Value": "42"}]
    assert call.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTESTPUBLISHER/")
    assert "/eu-west-1/ses/aws4_request" in call.headers["Authorization"]
    parsed = call.parsed()
    assert parsed["List-Unsubscribe"] == "<https://news.example.test/u/42>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert result.ok and result.provider_message_id == "0102018c00000001-test-000000"
    assert transport.max_batch == 1


def test_no_configuration_set_means_none_is_named(server: SesServer) -> None:
    transport, _ = transport_for(server)
    transport.send([sample_message(1, "a@example.org")])
    assert "ConfigurationSetName" not in server.accepted[0].params
    assert isinstance(build_transport(server.settings(), base_dir=Path(".")), SesTransport)


def test_a_rejected_message_fails_alone_in_batch_order(server: SesServer) -> None:
    transport, _ = transport_for(server)
    batch = [sample_message(1, "a@example.org"), sample_message(2, "rejected@example.org"), sample_message(3, "c@example.org")]
    results = transport.send(batch).results
    assert [(r.delivery_id, r.ok) for r in results] == [(1, True), (2, False), (3, True)]
    assert not results[1].temporary and "MessageRejected" in (results[1].error or "")


def test_throttling_is_waited_once_then_temporary(server: SesServer) -> None:
    transport, slept = transport_for(server)
    server.fail_next(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
    [first] = transport.send([sample_message(1, "a@example.org")]).results
    assert first.ok and slept == [1.0]
    server.fail_next(429, "TooManyRequestsException", "Maximum sending rate exceeded.", times=2)
    [second] = transport.send([sample_message(2, "b@example.org")]).results
    assert not second.ok and second.temporary and "TooManyRequests" in (second.error or "")
    assert len(server.received) == 4  # no hidden botocore retries


def test_server_error_is_temporary_and_not_retried_by_botocore(server: SesServer) -> None:
    transport, _ = transport_for(server)
    server.fail_next(500, "InternalFailure", "Internal error")
    [result] = transport.send([sample_message(1, "a@example.org")]).results
    assert not result.ok and result.temporary
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (400, "AccountSuspendedException", "suspended"),
        (400, "SendingPausedException", "configuration_set"),
        (400, "MailFromDomainNotVerifiedException", "from address"),
        (400, "LimitExceededException", "quota"),
        (404, "NotFoundException", "mail.transport.configuration_set"),
        (429, "TooManyRequestsException", "quota"),  # "Daily message quota exceeded"
    ],
)
def test_account_problems_stop_the_transport_with_a_remedy(server: SesServer, status: int, code: str, hint: str) -> None:
    transport, _ = transport_for(server)
    server.fail_next(status, code, "Daily message quota exceeded." if status == 429 else "")
    with pytest.raises(TransportUnavailable, match=hint):
        transport.send([sample_message(1, "a@example.org")])


def test_account_problem_after_an_acceptance_reports_both(server: SesServer) -> None:
    transport, _ = transport_for(server)
    transport.send([])  # nothing sent for an empty batch
    assert server.received == []
    batch = [sample_message(1, "a@example.org"), sample_message(2, "b@example.org"), sample_message(3, "c@example.org")]
    server.refuse["b@example.org"] = ("SendingPausedException", "Sending is paused for this account.")
    first, second, third = transport.send(batch).results
    assert first.ok
    assert second.temporary and "SendingPaused" in (second.error or "")
    assert third.temporary and "not attempted" in (third.error or "")


@pytest.mark.parametrize("overrides", [{"secret_access_key": "wrong"}, {"region": "us-east-1"}])
def test_wrong_credentials_or_region_are_refused_by_the_signature_check(server: SesServer, overrides: dict[str, str]) -> None:
    transport, _ = transport_for(server, **overrides)
    with pytest.raises(TransportUnavailable, match="mail.transport.secret_access_key"):
        transport.send([sample_message(1, "a@example.org")])
    assert server.accepted == []
    assert len(server.violations) == 1  # the server saw the bad signature; expected here
    server.violations.clear()


def test_unreachable_endpoint_raises_before_anything_is_claimed() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = SesSettings(kind="ses", region="eu-west-1", access_key_id="A", secret_access_key="s",
                           base_url=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(TransportUnavailable, match="cannot connect"):
        SesTransport(settings).send([sample_message(1, "a@example.org")])


def test_the_local_api_checks_bodies_against_the_botocore_model(server: SesServer) -> None:
    """The checks are real: a correctly signed body that breaks the SendEmail model gets a 400."""
    body = json.dumps({"Content": {"Raw": {"Data": base64.b64encode(b"Subject: x\r\n\r\nx").decode()}},
                       "Destination": {"ToAddresses": "a@example.org"}}).encode()  # a string, not a list
    request = AWSRequest("POST", server.url + SEND_EMAIL_PATH, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(server.access_key_id, server.secret_access_key), "ses", server.region).add_auth(request)
    answer = requests.post(server.url + SEND_EMAIL_PATH, data=body, headers=dict(request.headers.items()), timeout=5)
    assert answer.status_code == 400 and answer.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert len(server.violations) == 1 and "ToAddresses" in server.violations[0]
    server.violations.clear()


# --- the pipeline through SES --------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path, server: SesServer) -> Iterator[tuple[Any, Store]]:
    transport = (f"kind: ses\n    region: {server.region}\n    access_key_id: {server.access_key_id}\n"
                 f"    secret_access_key: {server.secret_access_key}\n    base_url: {server.url}\n"
                 "    configuration_set: newsletter-events\n    max_retry_after: 0")
    config = load_config(write_config(tmp_path, store_url=f"sqlite:///{tmp_path / 'store.db'}", transport=transport))
    store = Store.open(config.store_url)
    for i in range(3):
        store.subscribers.upsert(f"en{i}@example.org", name=f"Reader {i}", language="en")
    for i in range(2):
        store.subscribers.upsert(f"ar{i}@example.org", name=f"قارئ {i}", language="ar")
    assert not collect(config, store).errors
    yield config, store
    store.close()


def test_pipeline_delivers_each_digest_once_through_ses(world: tuple[Any, Store], server: SesServer) -> None:
    config, store = world
    outcomes = run_digests(config, store, DAY)
    assert {o.edition: o.send.sent for o in outcomes if o.send} == {"en": 3, "ar": 2}
    assert sorted(c.to[0] for c in server.accepted) == [
        "ar0@example.org", "ar1@example.org", "en0@example.org", "en1@example.org", "en2@example.org"]
    for call in server.accepted:
        parsed = call.parsed()
        assert parsed["To"].addresses[0].addr_spec == call.to[0]
        assert parsed["List-Unsubscribe"] and parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with store.engine.connect() as connection:
        rows = connection.execute(select(deliveries.c.id, deliveries.c.provider_message_id)).all()
    tags = {int(c.params["EmailTags"][0]["Value"]) for c in server.accepted}
    assert {row.id for row in rows} == tags  # every SES message points back at its ledger row
    assert all(row.provider_message_id and row.provider_message_id.startswith("0102018c") for row in rows)
    again = run_digests(config, store, DAY)
    assert all(o.send and o.send.sent == 0 for o in again)
    assert len(server.accepted) == 5


def test_pipeline_defers_failed_calls_and_the_next_run_completes_them(world: tuple[Any, Store], server: SesServer) -> None:
    config, store = world
    server.fail_next(500, "InternalFailure")
    server.fail_next(429, "TooManyRequestsException", "Maximum sending rate exceeded.", times=2)
    [outcome] = run_digests(config, store, DAY, editions=["en"])
    # retry.first_delay is 0 in the test config: the failed calls are retried within the same run
    assert outcome.send is not None and (outcome.send.sent, outcome.send.deferred) == (3, 0)
    assert outcome.send.retried == 2
    [again] = run_digests(config, store, DAY, editions=["en"])
    assert again.send is not None and again.send.sent == 0
    assert sorted(c.to[0] for c in server.accepted) == [f"en{i}@example.org" for i in range(3)]


# --- the SNS webhook -----------------------------------------------------------------------------


@pytest.fixture
def sns() -> SnsSigner:
    return SnsSigner(TOPIC)


@pytest.fixture
def hook(tmp_path: Path, sns: SnsSigner, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Store]]:
    monkeypatch.setattr(ses_webhook, "fetch_url", sns.fetch)  # instead of downloading from amazonaws.com
    transport = f"kind: ses\n    region: eu-west-1\n    access_key_id: A\n    secret_access_key: s\n    sns_topic_arn: {TOPIC}"
    config = load_config(write_config(tmp_path, transport=transport))
    store = Store.open(config.store_url)
    store.subscribers.upsert("reader@example.org", language="en")
    client = TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080")
    yield client, store
    client.close()
    store.close()


def post(client: TestClient, message: dict[str, Any]) -> Any:
    return client.post("/webhooks/ses", content=json.dumps(message).encode(),
                       headers={"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": message["Type"]})


def status_of(store: Store) -> SubscriberStatus:
    subscriber = store.subscribers.by_email("reader@example.org")
    assert subscriber is not None
    return subscriber.status


def bounce(kind: str = "Permanent", key: str = "notificationType") -> dict[str, Any]:
    return {key: "Bounce", "bounce": {"bounceType": kind, "bounceSubType": "General", "bouncedRecipients": [
        {"emailAddress": "reader@example.org", "action": "failed", "status": "5.1.1",
         "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}, "mail": {"messageId": "0102018c00000001-test-000000"}}


COMPLAINT = {"eventType": "Complaint", "complaint": {"complaintFeedbackType": "abuse",
             "complainedRecipients": [{"emailAddress": "reader@example.org"}]}, "mail": {}}


@pytest.mark.parametrize(
    ("event", "version", "expected"),
    [
        (bounce(), "1", SubscriberStatus.BOUNCED),
        (bounce(key="eventType"), "2", SubscriberStatus.BOUNCED),  # configuration-set event publishing
        (COMPLAINT, "2", SubscriberStatus.COMPLAINED),
        (bounce("Transient"), "1", SubscriberStatus.ACTIVE),
        ({"eventType": "Delivery", "delivery": {"recipients": ["reader@example.org"]}, "mail": {}}, "1",
         SubscriberStatus.ACTIVE),
    ],
)
def test_signed_notifications_change_the_subscriber(hook: tuple[TestClient, Store], sns: SnsSigner,
                                                    event: dict[str, Any], version: str, expected: SubscriberStatus) -> None:
    client, store = hook
    answer = post(client, sns.notification(event, version=version, subject="Amazon SES Email Event Notification"))
    assert answer.status_code == 200, answer.text
    assert status_of(store) == expected
    assert sns.fetched == [sns.cert_url]


def test_forged_or_foreign_messages_are_refused(hook: tuple[TestClient, Store], sns: SnsSigner) -> None:
    client, store = hook
    tampered = sns.notification(bounce())
    tampered["Message"] = tampered["Message"].replace("General", "Suppressed")
    assert post(client, tampered).status_code == 403
    other_topic = sns.notification(bounce(), topic_arn="arn:aws:sns:eu-west-1:999999999999:someone-else")
    assert post(client, other_topic).status_code == 403
    elsewhere = sns.notification(bounce())
    elsewhere["SigningCertURL"] = "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem"
    assert post(client, elsewhere).status_code == 403
    other_key = SnsSigner(TOPIC)
    other_key.key, _ = _other_key()
    assert post(client, other_key.notification(bounce())).status_code == 403
    assert post(client, {"Type": "Notification"}).status_code == 403
    assert client.post("/webhooks/ses", content=b"{not json").status_code == 400
    assert status_of(store) == SubscriberStatus.ACTIVE
    assert set(sns.fetched) <= {sns.cert_url}  # nothing but the SNS certificate was ever fetched


def test_subscription_is_confirmed_only_on_the_sns_host(hook: tuple[TestClient, Store], sns: SnsSigner) -> None:
    client, _ = hook
    foreign = sns.subscription_confirmation(subscribe_url="https://attacker.example/?Action=ConfirmSubscription",
                                            message_id="s-foreign")
    assert post(client, foreign).status_code == 400
    assert not any("attacker" in url for url in sns.fetched)
    genuine = sns.subscription_confirmation()
    assert post(client, genuine).status_code == 200
    assert sns.fetched[-1] == genuine["SubscribeURL"]


def test_a_repeated_message_id_changes_nothing(hook: tuple[TestClient, Store], sns: SnsSigner) -> None:
    client, store = hook
    message = sns.notification(COMPLAINT, message_id="once")
    assert post(client, message).status_code == 200
    subscriber = store.subscribers.by_email("reader@example.org")
    assert subscriber is not None
    store.subscribers.set_status(subscriber.id, SubscriberStatus.ACTIVE)
    again = post(client, message)
    assert again.status_code == 200 and again.text == "already received\n"
    assert status_of(store) == SubscriberStatus.ACTIVE


def _other_key() -> tuple[Any, bytes]:
    from tests.support.provider_servers.ses import _signing_identity

    return _signing_identity("another.example")
