"""Stage 4, deliver: fill the ledger, then send what it says is pending, one commit per result.

Only the process holding the digest's lease sends. Subscribers are streamed from the store in
batches, so memory does not grow with the list. Temporary failures wait with backoff until the retry
deadline; permanent ones are recorded and not retried.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from publisher.bounces import Verdict, address_failure
from publisher.config import MailSettings, SiteSettings
from publisher.delivery.mail import MailTransport
from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, Recipient, SendResult, SubscriberStatus
from publisher.render.message import MessageTemplate
from publisher.store import DigestRecord, DigestStatus, PendingDelivery, Store
from publisher.store.deliveries import LedgerWriter
from publisher.tokens import TokenSigner

log = logging.getLogger("publisher.send")

LEASE = timedelta(minutes=2)
# This many permanent refusals in a row, all with the same answer, stop the send (see _record).
SAME_REFUSAL_LIMIT = 10


@dataclass
class SendOutcome:
    edition: str
    recipients: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0  # temporary failures waiting for their retry time
    already_sent: int = 0  # sent by an earlier (killed or finished) run
    bounced: int = 0  # subscribers marked bounced: their mailbox does not exist
    held_by: str | None = None  # another process holds the lease
    error: str | None = None
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass
class LinkMaker:
    """Per-subscriber URLs and Message-IDs: signed, deterministic, no address inside."""

    site: SiteSettings
    domain: str
    signer: TokenSigner = field(init=False)

    def __post_init__(self) -> None:
        self.signer = TokenSigner(self.site.secret)
        self._base = self.site.public_url.rstrip("/")
        self._id_key = hashlib.sha256(b"message-id:" + self.site.secret.encode()).digest()

    def unsubscribe_url(self, subscriber_id: int) -> str:
        return f"{self._base}/unsubscribe/{self.signer.sign('unsubscribe', subscriber_id)}"

    def preferences_url(self, subscriber_id: int) -> str:
        return f"{self._base}/preferences/{self.signer.sign('preferences', subscriber_id)}"

    def message_id(self, digest_id: int, delivery_id: int) -> str:
        # The same delivery always gets the same Message-ID: a copy resent after a crash is
        # recognizably the same message to clients that deduplicate on it.
        tag = hmac.new(self._id_key, f"{digest_id}.{delivery_id}".encode(), hashlib.sha256).hexdigest()[:12]
        return f"<digest.{digest_id}.{delivery_id}.{tag}@{self.domain}>"


_PERMANENT_REPLY = re.compile(r"\b5[0-5]\d\b")


def is_hard_bounce(error: str) -> bool:
    """A permanent SMTP refusal saying the mailbox itself is gone (5.1.x, 5.2.1, "user unknown").

    The same rule as for bounce messages (publisher.bounces): policy refusals (5.7.x) are about us.
    """
    return bool(_PERMANENT_REPLY.search(error)) and address_failure("", error) is Verdict.BOUNCE


def holder_is_dead(holder: str) -> bool:
    """A lease holder on this host whose process no longer exists (killed -9): its lease is void.

    Holders on other hosts cannot be checked from here; their lease simply expires.
    """
    try:
        host, pid_text, _thread = holder.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def backoff(attempts: int, first: float, ceiling: float) -> timedelta:
    return timedelta(seconds=min(first * (2 ** max(attempts - 1, 0)), ceiling))


class DigestSender:
    def __init__(
        self,
        store: Store,
        transport: MailTransport,
        *,
        site: SiteSettings,
        mail: MailSettings,
        owner: str,
        stop: threading.Event | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        variant: Callable[[frozenset[str]], MessageTemplate | None] | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.mail = mail
        self.owner = owner
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        # A subscriber who chose sections gets the digest compiled for that section set (once per set).
        self.variant = variant
        self._variants: dict[frozenset[str], MessageTemplate | None] = {}
        domain = mail.message_id_domain or (site.base_url.split("://", 1)[1].split("/")[0].split(":")[0])
        self.links = LinkMaker(site, domain)
        self._attempts_before: dict[int, int] = {}
        self._writer: LedgerWriter
        self._refusals: list[tuple[int, int | None, str]] = []
        self._subscriber_of: dict[int, int] = {}
        self.stop_digest = False

    def send(self, digest: DigestRecord, template: MessageTemplate, sender: str) -> SendOutcome:
        outcome = SendOutcome(digest.edition)
        if not self._claim(digest.id):
            outcome.held_by = self.store.digests.lease_holder(digest.id)[0]
            log.info("digest %s %s is being sent by %s; not sending it here", digest.edition, digest.day, outcome.held_by)
            return outcome
        try:
            self._fill_ledger(digest)
            before = self.store.deliveries.counts(digest.id)
            outcome.already_sent = before["sent"]
            with self.store.deliveries.writer() as writer:
                self._writer = writer
                self._send_due(digest, template, parseaddr(sender)[1], outcome)
            self._finish(digest, outcome)
        finally:
            self.store.digests.release(digest.id, self.owner)
        return outcome

    def _claim(self, digest_id: int) -> bool:
        if self.store.digests.claim(digest_id, self.owner, LEASE):
            return True
        holder = self.store.digests.lease_holder(digest_id)[0]
        if holder and holder_is_dead(holder):
            log.warning("taking over digest %s from %s, whose process is gone", digest_id, holder)
            return self.store.digests.take_over(digest_id, holder, self.owner, LEASE)
        return False

    def _fill_ledger(self, digest: DigestRecord) -> None:
        current = self.store.digests.get(digest.id)
        if current is not None and current.status in (DigestStatus.SENDING, DigestStatus.DONE):
            return
        language = digest.rendered.language if digest.rendered else None
        assert language is not None, "render before sending"
        added = self.store.deliveries.enqueue(digest.id, language)
        self.store.digests.set_status(digest.id, DigestStatus.SENDING, recipients=added, started_at=datetime.now(UTC))
        log.info("digest %s %s: %d recipients queued", digest.edition, digest.day, added)

    def _send_due(self, digest: DigestRecord, template: MessageTemplate, sender: str, outcome: SendOutcome) -> None:
        chunk = max(1, int(getattr(self.transport, "max_batch", 1)))
        interval = 1.0 / self.mail.rate_per_second if self.mail.rate_per_second else 0.0
        counts = self.store.deliveries.counts(digest.id)
        total = sum(counts.values())
        done = counts["sent"] + counts["failed"] + counts["skipped"]
        last_id = 0
        while not self.stop.is_set():
            rows = self.store.deliveries.due(digest.id, after_id=last_id, limit=self.mail.batch_size)
            if not rows:
                return
            last_id = rows[-1].id
            self._attempts_before = {row.id: row.attempts for row in rows}
            self._subscriber_of = {row.id: row.subscriber_id for row in rows}
            if not self._claim(digest.id):
                outcome.error = "lost the sending lease to another process; stopping"
                return
            renewed = time.monotonic()
            for start in range(0, len(rows), chunk):
                if self.stop.is_set():
                    outcome.interrupted = True
                    return
                if time.monotonic() - renewed > LEASE.total_seconds() / 3:
                    # a slow batch (rate limit, slow server) must not outlive its lease
                    if not self._claim(digest.id):
                        outcome.error = "lost the sending lease to another process; stopping"
                        return
                    renewed = time.monotonic()
                messages = [
                    m for row in rows[start : start + chunk] if (m := self._message(digest, template, sender, row, outcome))
                ]
                if not messages:
                    continue
                started = time.monotonic()
                try:
                    report = self.transport.send(messages)
                except TransportUnavailable as exc:
                    outcome.error = str(exc)
                    log.error("digest %s %s: %s; the rest stays pending", digest.edition, digest.day, exc)
                    return
                for result in report.results:
                    self._record(result, outcome)
                if self.stop_digest:
                    log.error("digest %s %s: %s", digest.edition, digest.day, outcome.error)
                    return
                done += len(messages)
                if self.on_progress:
                    self.on_progress(done, total)
                if interval:
                    time.sleep(max(0.0, interval * len(messages) - (time.monotonic() - started)))

    def _message(
        self, digest: DigestRecord, template: MessageTemplate, sender: str, row: PendingDelivery, outcome: SendOutcome
    ) -> OutgoingMessage | None:
        if row.subscriber_status is not SubscriberStatus.ACTIVE or row.paused:
            reason = "paused" if row.paused else f"subscriber is {row.subscriber_status.value}"
            self.store.deliveries.mark_skipped(row.id, reason)
            outcome.skipped += 1
            return None
        if row.sections and self.variant is not None:
            chosen = frozenset(row.sections)
            if chosen not in self._variants:
                self._variants[chosen] = self.variant(chosen)
            variant = self._variants[chosen]
            if variant is None:
                self.store.deliveries.mark_skipped(row.id, "no articles in the subscriber's chosen sections")
                outcome.skipped += 1
                return None
            template = variant
        message_id = self.links.message_id(digest.id, row.id)
        recipient = Recipient(
            delivery_id=row.id,
            email=row.email,
            name=row.name,
            message_id=message_id,
            unsubscribe_url=self.links.unsubscribe_url(row.subscriber_id),
            preferences_url=self.links.preferences_url(row.subscriber_id),
        )
        try:
            data = template.personalize(recipient)
        except ValueError as exc:  # an address that cannot be put in a header safely
            self.store.deliveries.mark_failed(row.id, f"cannot build message: {exc}")
            outcome.failed += 1
            return None
        return OutgoingMessage(row.id, sender, row.email, message_id, data)

    def _record(self, result: SendResult, outcome: SendOutcome) -> None:
        ledger = self.store.deliveries
        if result.ok:
            self._writer.sent(result.delivery_id, result.provider_message_id)
            outcome.sent += 1
            self._flush_refusals(outcome)
            return
        error = result.error or "unknown error"
        if self.stop_digest:
            # the rest of a batch answered after the send was stopped for a server-wide refusal
            ledger.retry_later(result.delivery_id, error, datetime.now(UTC) + timedelta(seconds=self.mail.retry.first_delay))
            outcome.deferred += 1
            return
        if not result.temporary:
            # Held back until the streak breaks: one identical refusal for everyone ("554 relay access
            # denied") is the server's problem, not the subscribers'.
            if self._refusals and self._refusals[-1][2] != error:
                self._flush_refusals(outcome)
            self._refusals.append((result.delivery_id, self._subscriber_of.get(result.delivery_id), error))
            if len(self._refusals) >= SAME_REFUSAL_LIMIT:
                for delivery_id, _, _ in self._refusals:
                    ledger.retry_later(delivery_id, error, datetime.now(UTC) + timedelta(seconds=self.mail.retry.first_delay))
                outcome.deferred += len(self._refusals)
                self._refusals.clear()
                outcome.error = (
                    f"{SAME_REFUSAL_LIMIT} recipients in a row refused with the same answer ({error}); "
                    "stopped, nobody marked failed (hint: check mail.transport in config.yaml and the "
                    "server's relay and sender policy)"
                )
                self.stop_digest = True
            return
        attempts = self._attempts_before.get(result.delivery_id, 0) + 1
        retry = self.mail.retry
        if attempts >= retry.max_attempts:
            ledger.mark_failed(result.delivery_id, f"gave up after {attempts} attempts: {error}")
            outcome.failed += 1
        else:
            delay = backoff(attempts, retry.first_delay, retry.max_delay)
            ledger.retry_later(result.delivery_id, error, datetime.now(UTC) + delay)
            outcome.deferred += 1
        outcome.errors.append(error)

    def _flush_refusals(self, outcome: SendOutcome) -> None:
        for delivery_id, subscriber_id, error in self._refusals:
            self.store.deliveries.mark_failed(delivery_id, error)
            outcome.failed += 1
            outcome.errors.append(error)
            if subscriber_id is not None and is_hard_bounce(error):
                # the mailbox does not exist: sending to it again only hurts our reputation
                subscriber = self.store.subscribers.get(subscriber_id)
                if subscriber is not None and subscriber.status is SubscriberStatus.ACTIVE:
                    self.store.subscribers.set_status(subscriber_id, SubscriberStatus.BOUNCED, reason=error[:500])
                    outcome.bounced += 1
                    log.info("subscriber %d marked bounced: %s", subscriber_id, error)
        self._refusals.clear()

    def _finish(self, digest: DigestRecord, outcome: SendOutcome) -> None:
        self._flush_refusals(outcome)
        counts = self.store.deliveries.counts(digest.id)
        outcome.recipients = sum(counts.values())
        pending = counts["pending"]
        # The deadline holds even while the transport is down: a digest days late is stale news.
        if pending and not outcome.interrupted:
            current = self.store.digests.get(digest.id)
            started = current.started_at if current and current.started_at else datetime.now(UTC)
            if datetime.now(UTC) > started + timedelta(hours=self.mail.retry.deadline_hours):
                expired = self.store.deliveries.expire_pending(digest.id, "retry deadline passed")
                log.error("digest %s %s: %d deliveries failed: retry deadline passed", digest.edition, digest.day, expired)
                pending = 0
        if pending == 0 and not outcome.interrupted:
            self.store.digests.set_status(digest.id, DigestStatus.DONE, finished_at=datetime.now(UTC))
        outcome.deferred = pending
