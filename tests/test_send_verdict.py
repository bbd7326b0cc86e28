"""The send engine's pure policy: what one result means, the breaker, and who may become what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from publisher.models import SendResult, SubscriberStatus
from publisher.pipeline.verdict import Action, Breaker, Decision, Refusal, RetryPolicy, decide
from publisher.subscriber_status import may_become

NOW = datetime(2024, 12, 2, 7, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=4, first_delay=30, max_delay=100)
RCPT = "reader@example.org"


def refused(error: str, *, temporary: bool = False) -> SendResult:
    return SendResult(1, False, error=error, temporary=temporary)


@pytest.mark.parametrize("error", [
    "550 5.1.1 The email account that you tried to reach does not exist (at RCPT TO, server 127.0.0.1:25)",
    "550-5.1.1 <reader@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
    "550 5.2.1 The email account that you tried to reach is disabled",
    "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
    "550 No such user here",
    "550 Requested action not taken: <reader@example.org>",
])
def test_a_refusal_about_the_recipient_bounces_them(error: str) -> None:
    decision = decide(refused(error), RCPT, 0, POLICY, NOW)
    assert (decision.action, decision.refusal) == (Action.BOUNCE, Refusal.RECIPIENT)
    assert decision.reason == error


@pytest.mark.parametrize(("error", "temporary", "hint"), [
    ("554 5.7.1 <reader@example.org>: Relay access denied (at RCPT TO, server 127.0.0.1:25)", False, "mail.transport"),
    ("550 5.7.1 Unable to relay for reader@example.org", False, "relay"),
    ("553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", False, "relay"),
    ("530 5.7.0 Authentication required (server 127.0.0.1:25 refused the sender at MAIL FROM; check ...)", True,
     "mail.transport.username"),
    ("535 5.7.8 Error: authentication failed", False, "mail.transport.password"),
    ("553 5.7.1 Sender address rejected: not owned by user (server 127.0.0.1:25 refused the sender at MAIL FROM)",
     True, "from addresses"),
])
def test_a_refusal_about_us_stops_the_send_without_spending_an_attempt(error: str, temporary: bool, hint: str) -> None:
    decision = decide(refused(error, temporary=temporary), RCPT, 2, POLICY, NOW)
    assert (decision.action, decision.refusal, decision.count_attempt) == (Action.STOP, Refusal.US, False)
    assert hint in decision.hint
    assert decision.retry_at == NOW + timedelta(seconds=30)


@pytest.mark.parametrize("error", [
    "550 5.7.1 Message rejected as spam",
    "554 5.7.26 This mail is unauthenticated, which poses a security risk",
    "552 5.3.4 Message size exceeds fixed limit",
    "554 <reader@example.org>: Recipient address rejected: blocked by policy",
    "554 Transaction failed",
])
def test_a_policy_or_content_refusal_fails_the_delivery_only(error: str) -> None:
    decision = decide(refused(error), RCPT, 0, POLICY, NOW)
    assert (decision.action, decision.refusal) == (Action.FAILED, Refusal.OTHER)


def test_an_address_we_cannot_put_on_an_envelope_fails_without_a_bounce() -> None:
    decision = decide(refused("invalid recipient address 'a b@x.test': must be a bare address"), "a b@x.test", 0,
                      POLICY, NOW)
    assert (decision.action, decision.refusal) == (Action.FAILED, Refusal.LOCAL)


def test_temporary_failures_back_off_doubling_up_to_the_ceiling_then_fail() -> None:
    busy = refused("451 4.3.0 try later", temporary=True)
    waits = [decide(busy, RCPT, attempts, POLICY, NOW).retry_at for attempts in range(3)]
    assert waits == [NOW + timedelta(seconds=s) for s in (30, 60, 100)]
    assert all(decide(busy, RCPT, a, POLICY, NOW).action is Action.RETRY for a in range(3))
    last = decide(busy, RCPT, 3, POLICY, NOW)
    assert last.action is Action.FAILED and last.reason == "gave up after 4 attempts: 451 4.3.0 try later"


def test_acceptance_keeps_the_provider_id() -> None:
    decision = decide(SendResult(1, True, provider_message_id="Q1"), RCPT, 0, POLICY, NOW)
    assert (decision.action, decision.provider_message_id) == (Action.SENT, "Q1")


SENT = Decision(Action.SENT)
OTHER = Decision(Action.FAILED, "550 5.7.1 policy", refusal=Refusal.OTHER)
BOUNCE = Decision(Action.BOUNCE, "550 5.1.1 gone", refusal=Refusal.RECIPIENT)


def test_breaker_ignores_any_number_of_recipient_refusals() -> None:
    breaker = Breaker(limit=10, domains=3)
    assert not any(breaker.observe(BOUNCE, f"gone{i}@d{i % 50}.test") for i in range(1000))


def test_breaker_trips_on_policy_refusals_spanning_domains() -> None:
    breaker = Breaker(limit=10, domains=3)
    breaker.observe(SENT, "a@one.test")
    trips = [breaker.observe(OTHER, f"r{i}@d{i % 3}.test") for i in range(10)]
    assert trips == [False] * 9 + [True]


def test_breaker_holds_for_policy_refusals_at_one_domain_once_mail_was_accepted() -> None:
    breaker = Breaker(limit=10, domains=3)
    breaker.observe(SENT, "a@one.test")
    assert not any(breaker.observe(OTHER, f"r{i}@strict.test") for i in range(30))


def test_breaker_trips_when_nothing_was_accepted_yet() -> None:
    breaker = Breaker(limit=10, domains=3)
    assert [breaker.observe(OTHER, f"r{i}@strict.test") for i in range(10)][-1] is True


def test_an_acceptance_breaks_the_streak() -> None:
    breaker = Breaker(limit=10, domains=3)
    for i in range(9):
        breaker.observe(OTHER, f"r{i}@d{i}.test")
    breaker.observe(SENT, "ok@x.test")
    assert not any(breaker.observe(OTHER, f"s{i}@d{i}.test") for i in range(9))


@pytest.mark.parametrize(("current", "wanted", "allowed"), [
    (SubscriberStatus.ACTIVE, SubscriberStatus.BOUNCED, True),
    (SubscriberStatus.PENDING, SubscriberStatus.BOUNCED, True),
    (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, False),
    (SubscriberStatus.COMPLAINED, SubscriberStatus.BOUNCED, False),
    (SubscriberStatus.BOUNCED, SubscriberStatus.BOUNCED, False),
    (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED, True),
    (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.COMPLAINED, True),
    (SubscriberStatus.COMPLAINED, SubscriberStatus.UNSUBSCRIBED, False),
    (SubscriberStatus.BOUNCED, SubscriberStatus.UNSUBSCRIBED, True),
    (SubscriberStatus.ACTIVE, SubscriberStatus.ACTIVE, False),  # not a mail event's to give
])
def test_who_may_become_what(current: SubscriberStatus, wanted: SubscriberStatus, allowed: bool) -> None:
    assert may_become(current, wanted) is allowed
