"""Every transport, same semantics: one suite, the same scenarios, against the four providers' contract
servers (tests/support/provider_servers/) and a real SMTP server (aiosmtpd), each scripted to answer as
its service does. What each scenario must come to is the table in README ("Sending through a mail
provider's API"); the outcome is judged by the one verdict (publisher.pipeline.verdict.decide), as the
send engine judges it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SendReport
from publisher.pipeline.verdict import Action, Decision, RetryPolicy, decide
from tests.support.conformance import HARNESSES, Harness
from tests.support.messages import sample_message

ALL = sorted(HARNESSES)
HTTP = [name for name in ALL if HARNESSES[name].http]
NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=8, first_delay=30, max_delay=1800)


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with HARNESSES[request.param]() as running:
        yield running
        assert running.violations() == [], running.violations()  # every request kept the service's contract


def batch(*recipients: str) -> list[OutgoingMessage]:
    return [sample_message(number, recipient, size=4_000) for number, recipient in enumerate(recipients, start=1)]


def send(harness: Harness, messages: list[OutgoingMessage]) -> SendReport:
    with harness.transport() as transport:
        report = transport.send(messages)
    assert [r.delivery_id for r in report.results] == [m.delivery_id for m in messages]  # one each, in order
    return report


def decisions(report: SendReport, messages: list[OutgoingMessage]) -> list[Decision]:
    return [decide(result, message.recipient, 0, POLICY, NOW) for result, message in zip(report.results, messages, strict=True)]


@pytest.mark.parametrize("harness", ALL, indirect=True)
def test_accepted_with_an_id_is_sent_with_the_providers_id(harness: Harness) -> None:
    messages = batch("a@example.org", "b@example.org")
    report = send(harness, messages)
    assert [d.action for d in decisions(report, messages)] == [Action.SENT, Action.SENT]
    ids = [r.provider_message_id for r in report.results]
    assert all(ids) and len(set(ids)) == 2
    assert not set(ids) & {m.message_id for m in messages}  # the service's own id, not ours
    assert harness.accepted() == 2


@pytest.mark.parametrize("harness", ALL, indirect=True)
def test_accepted_without_an_id_is_sent_once_known_by_our_message_id(harness: Harness) -> None:
    harness.without_ids()
    messages = batch("a@example.org", "b@example.org", "c@example.org")
    report = send(harness, messages)
    assert [d.action for d in decisions(report, messages)] == [Action.SENT] * 3  # never failed, never resent
    assert [r.provider_message_id for r in report.results] == [m.message_id for m in messages]
    assert harness.accepted() == 3  # each handed over exactly once


@pytest.mark.parametrize("harness", ALL, indirect=True)
def test_a_wrong_address_stops_the_send_naming_the_setting_and_fails_nobody(harness: Harness) -> None:
    with harness.wrong_address() as transport, pytest.raises(TransportUnavailable) as caught:
        transport.send(batch("a@example.org", "b@example.org"))
    assert harness.address_key in str(caught.value)
    assert harness.accepted() == 0
    harness.forget_violations()  # a request to the wrong address is not one the contract describes


@pytest.mark.parametrize("harness", HTTP, indirect=True)
def test_a_short_retry_after_is_waited_once_then_the_message_goes(harness: Harness) -> None:
    harness.throttle_next(retry_after=2)
    messages = batch("a@example.org")
    report = send(harness, messages)
    assert [d.action for d in decisions(report, messages)] == [Action.SENT]
    # once, no longer than asked (SendGrid's X-RateLimit-Reset is a whole unix second: up to 1 s less)
    assert len(harness.sleeps) == 1 and 0 <= harness.sleeps[0] <= 2
    assert harness.accepted() == 1


@pytest.mark.parametrize("harness", HTTP, indirect=True)
def test_a_long_retry_after_defers_no_sooner_than_it_says(harness: Harness) -> None:
    harness.throttle_next(retry_after=3600)
    messages = batch("a@example.org")
    report = send(harness, messages)
    (result,) = report.results
    # (SendGrid's reset time is a unix second: the wait it implies shrinks while the answer travels)
    assert not result.ok and result.temporary and result.retry_after is not None and 3540 <= result.retry_after <= 3600
    (decision,) = decisions(report, messages)
    assert decision.action is Action.RETRY and decision.retry_at is not None
    assert decision.retry_at >= NOW + timedelta(seconds=3540)
    assert harness.sleeps == []  # longer than mail.transport.max_retry_after (MAX_RETRY_AFTER): not waited in place


@pytest.mark.parametrize("harness", ALL, indirect=True)
def test_a_server_error_is_temporary(harness: Harness) -> None:
    harness.fail_next("a@example.org")
    messages = batch("a@example.org")
    report = send(harness, messages)
    (result,) = report.results
    assert not result.ok and result.temporary
    assert [d.action for d in decisions(report, messages)] == [Action.RETRY]
    assert harness.accepted() == 0


@pytest.mark.parametrize("harness", ALL, indirect=True)
def test_refused_credentials_before_anything_was_accepted_stop_naming_the_key(harness: Harness) -> None:
    with harness.wrong_credentials() as transport, pytest.raises(TransportUnavailable) as caught:
        transport.send(batch("a@example.org", "b@example.org"))
    assert harness.credentials_key in str(caught.value)
    assert harness.accepted() == 0


@pytest.mark.parametrize("harness", ALL, indirect=True)
def test_credentials_refused_after_an_accepted_chunk_keep_it_sent_and_defer_the_rest(harness: Harness) -> None:
    harness.revoke_after(1)
    messages = batch("a@example.org", "b@example.org", "c@example.org")
    report = send(harness, messages)  # no exception: something of this send was accepted
    actions = [d.action for d in decisions(report, messages)]
    assert actions[0] is Action.SENT
    assert actions.count(Action.SENT) == harness.accepted() < 3
    # the rest are pending: due again (RETRY) or the whole send stopped (STOP), never failed
    assert set(actions[actions.count(Action.SENT):]) <= {Action.RETRY, Action.STOP}
    assert all(r.temporary for r in report.results if not r.ok)


@pytest.mark.parametrize("harness", ALL, indirect=True)
def test_a_refused_recipient_is_permanent_and_about_that_recipient(harness: Harness) -> None:
    harness.refuse("gone@example.org")
    messages = batch("a@example.org", "gone@example.org", "c@example.org")
    report = send(harness, messages)
    assert [d.action for d in decisions(report, messages)] == [Action.SENT, Action.BOUNCE, Action.SENT]
    refused = report.results[1]
    assert not refused.temporary and "gone@example.org" in (refused.error or "")
    assert harness.accepted() == 2
