"""What one send result means: sent, retry at T, failed, bounce the subscriber, or stop the send.

Pure policy: no store, no transport, no clock of its own. The send engine (publisher.pipeline.send)
asks `decide` once per result and writes what it says; nothing else decides an outcome.

A permanent refusal is classified once, by whom it is about:

- the recipient (RFC 3463 5.1.x / 5.2.1, "user unknown", or a permanent refusal naming the address,
  as Postmark's per-recipient 300/406 do): that
  subscriber bounces and the send goes on, however many such refusals come in a row;
- us (relay denied, authentication required or refused, the sender refused at MAIL FROM): the send
  stops at once, the row stays pending, nobody is failed, and the hint names what to check;
- anything else (a policy or content refusal, 5.7.x): the delivery fails, and the `Breaker` watches
  them. A streak of such refusals that spans several recipient domains, or that comes before the
  server accepted anything at all, is about us after all: the send stops and the streak is deferred.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from publisher.bounces import Verdict as ReportVerdict
from publisher.bounces import address_failure
from publisher.models import SendResult


class Action(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"  # pending, due again at retry_at
    FAILED = "failed"  # permanent for this delivery; the subscriber stays as they are
    BOUNCE = "bounce"  # failed, and the subscriber's mailbox is gone: mark them bounced
    STOP = "stop"  # the refusal is about us: keep the row pending and stop the whole send


class Refusal(enum.StrEnum):
    RECIPIENT = "recipient"  # the address does not exist
    US = "us"  # our relay, account or sender: every delivery would get the same
    OTHER = "other"  # policy or content, for this recipient as far as we know
    LOCAL = "local"  # never reached a server: an address we cannot put on an envelope
    TEMPORARY = "temporary"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    first_delay: float = 30.0
    max_delay: float = 1800.0

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the attempts-th failed attempt: first_delay, doubling, capped at max_delay."""
        return timedelta(seconds=min(self.first_delay * (2 ** max(attempts - 1, 0)), self.max_delay))


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    retry_at: datetime | None = None
    refusal: Refusal | None = None
    count_attempt: bool = True  # False when the attempt says nothing about this recipient (STOP)
    hint: str = ""
    provider_message_id: str | None = None  # SENT: how to find the message at the next hop


_BASIC_CODE = re.compile(r"^\s*([245]\d\d)\b")
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_RELAY = re.compile(
    r"relay(ing)? (access )?(denied|not (permitted|allowed)|prohibited)|not (permitted|allowed) to relay|"
    r"(unable|cannot|can't) (to )?relay|we do not relay|relay not permitted|allowed rcpthosts",
    re.IGNORECASE,
)
_AUTH = re.compile(
    r"authentication (is )?required|must (first )?(authenticate|log ?in)|auth(entication)? (failed|unsuccessful|"
    r"credentials invalid)|authentication mechanism",
    re.IGNORECASE,
)
_SENDER = re.compile(r"refused the sender at MAIL FROM|sender address rejected", re.IGNORECASE)
_AUTH_CODES = {530, 535, 538}
_AUTH_ENHANCED = {(7, 8), (7, 9), (7, 11)}
# envelope problems found before any I/O (publisher.delivery.mail.base.envelope_problem)
_LOCAL = re.compile(r"^(invalid recipient address|empty recipient address|cannot build message)|\(needed for '")

HINT_RELAY = ("check mail.transport in config.yaml: the host, and that this server relays for us "
              "(its relay and sender policy, mynetworks)")
HINT_AUTH = "check mail.transport.username and mail.transport.password in config.yaml (and the variable they come from)"
HINT_SENDER = "check the editions' from addresses in config.yaml and what the SMTP account may send as"
HINT_STREAK = ("check the server's policy for our mail (sender reputation, SPF/DKIM/DMARC, content filters) "
               "and mail.transport in config.yaml")


def classify(result: SendResult, recipient: str) -> tuple[Refusal, str]:
    """Whom a refusal is about, and for US the hint naming what to check."""
    error = result.error or ""
    code = int(match.group(1)) if (match := _BASIC_CODE.match(error)) else None
    enhanced = {(int(s), int(d)) for c, s, d in _ENHANCED.findall(error) if c in "45"}
    if _RELAY.search(error):
        return Refusal.US, HINT_RELAY
    if code in _AUTH_CODES or enhanced & _AUTH_ENHANCED or _AUTH.search(error):
        return Refusal.US, HINT_AUTH
    if _SENDER.search(error):
        return Refusal.US, HINT_SENDER
    if result.temporary:
        return Refusal.TEMPORARY, ""
    if _LOCAL.search(error):
        return Refusal.LOCAL, ""
    if address_failure("", error) is ReportVerdict.BOUNCE and (code is None or code >= 500):
        return Refusal.RECIPIENT, ""
    if (code is None or code >= 500) and not any(s == 7 for s, _ in enhanced) and _names(error, recipient):
        return Refusal.RECIPIENT, ""
    return Refusal.OTHER, ""


# words that make a refusal naming the address about something else than the mailbox's existence
_NOT_THE_MAILBOX = re.compile(r"polic|spam|block|reputation|content|rate|limit|quota|full|size|virus|dmarc|spf|dkim",
                              re.IGNORECASE)


def _names(error: str, recipient: str) -> bool:
    named = bool(recipient) and "@" in recipient and recipient.lower() in error.lower()
    return named and not _NOT_THE_MAILBOX.search(error.lower().replace(recipient.lower(), ""))


def decide(result: SendResult, recipient: str, attempts_before: int, policy: RetryPolicy, now: datetime) -> Decision:
    """The outcome of one send result for a delivery that had `attempts_before` earlier attempts."""
    if result.ok:
        return Decision(Action.SENT, provider_message_id=result.provider_message_id)
    error = result.error or "refused without a reason"
    refusal, hint = classify(result, recipient)
    if refusal is Refusal.US:
        return Decision(Action.STOP, error, now + policy.backoff(1), refusal, count_attempt=False, hint=hint)
    if refusal is Refusal.RECIPIENT:
        return Decision(Action.BOUNCE, error, refusal=refusal)
    if refusal is not Refusal.TEMPORARY:
        return Decision(Action.FAILED, error, refusal=refusal)
    attempts = attempts_before + 1
    if attempts >= policy.max_attempts:
        return Decision(Action.FAILED, f"gave up after {attempts} attempts: {error}", refusal=refusal)
    wait = max(policy.backoff(attempts), timedelta(seconds=result.retry_after or 0))
    return Decision(Action.RETRY, error, now + wait, refusal)


@dataclass
class Breaker:
    """Watches the permanent refusals of kind OTHER; trips when they are about us after all.

    Trips on `limit` such refusals in a row (nothing accepted in between) that either span at least
    `domains` recipient domains, or came before the server accepted any message of this send. An
    acceptance breaks the streak; a recipient refusal or a temporary failure neither counts nor breaks it.
    """

    limit: int = 10
    domains: int = 3
    streak: int = 0
    accepted_any: bool = False
    seen_domains: set[str] = field(default_factory=set)

    def observe(self, decision: Decision, recipient: str) -> bool:
        """Feed one decision; True when the send must stop now."""
        if decision.action is Action.SENT:
            self.accepted_any = True
            self.reset()
            return False
        if decision.refusal is not Refusal.OTHER:
            return False
        self.streak += 1
        self.seen_domains.add(recipient.rpartition("@")[2].lower())
        return self.streak >= self.limit and (len(self.seen_domains) >= self.domains or not self.accepted_any)

    def reset(self) -> None:
        self.streak = 0
        self.seen_domains.clear()

    def explain(self, error: str) -> str:
        where = f"at {len(self.seen_domains)} different domains" if len(self.seen_domains) > 1 else "before any was accepted"
        return f"{self.streak} recipients in a row refused for a reason not about them, {where} (last: {error})"
