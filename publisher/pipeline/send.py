"""Stage 4, deliver: one send engine for every channel. Outcomes decided once, written once.

    claim a batch of due ledger rows -> compose finished messages -> hand them to the channel ->
    `verdict.decide` says, per result: sent / retry at T / failed / bounce the subscriber / stop ->
    `_write` records it (the one ledger write path; acceptances committed in groups).

Concurrency (mail.connections): one claimer (this thread) reads disjoint chunks of due rows and hands
them to N senders, each with its own channel (publisher.pipeline.senders); the results come back
here and are judged here, then committed in groups of at most COMMIT_GROUP rows by the committer
thread (publisher.pipeline.committer) on its own ledger connection, while this thread goes on. A
chunk is held from being handed out until its results are committed, and no more than the pool's
limit are held (with one connection: no thread, each result committed before the next message is
sent). A row is marked sent only after the channel said the server accepted it. A crash can repeat
at most `duplicate_bound` messages.

Only the process holding the digest's lease sends. Rows are streamed in id order (keyset pages of
mail.batch_size), so memory does not grow with the list. After a pass over the due rows the engine
goes round again for the rows whose backoff has passed meanwhile, as long as the last pass got
something accepted; it never waits for a row due later. The channel is anything with
`send(batch) -> SendReport` and `max_batch` (every MailTransport); the composer turns a ledger row
into that channel's message (publisher.pipeline.compose for email).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

from publisher.config import MailSettings
from publisher.errors import StoreError
from publisher.pipeline.committer import Committer
from publisher.pipeline.compose import LinkMaker
from publisher.pipeline.lease import LEASE, holder_is_dead
from publisher.pipeline.ledger import Ledger, LedgerWrites
from publisher.pipeline.outcome import SHOWN_FAILURES, SendOutcome
from publisher.pipeline.send_run import Composer, Run, Stopped
from publisher.pipeline.senders import (
    COMMIT_GROUP,
    Channel,
    SenderPool,
    TokenBucket,
    chunk_size,
    duplicate_bound,
)
from publisher.pipeline.verdict import Action, Breaker, RetryPolicy
from publisher.store import DigestRecord, DigestStatus, Store

log = logging.getLogger("publisher.send")


__all__ = ["LEASE", "Channel", "Composer", "LinkMaker", "SendEngine", "SendOutcome", "holder_is_dead"]


class SendEngine:
    def __init__(
        self,
        store: Store,
        channel: Channel,
        *,
        mail: MailSettings,
        owner: str,
        stop: threading.Event | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        breaker: Breaker | None = None,
        channel_factory: Callable[[], Channel] | None = None,
        connections: int = 1,
        ledger: Ledger | None = None,
        lease: bool = True,
    ) -> None:
        """channel_factory builds one more channel per extra sender (connections > 1): a channel
        is used by one thread only. Without a factory the send uses `channel` alone. lease=False: a
        broker worker's batch, whose coordinator holds the digest's lease (publisher.pipeline.dispatch)."""
        self.store = store
        # a channel's own ledger (its posts); the digest's status stays the email send's
        self.ledger: Ledger = ledger or store.deliveries
        self.owns_digest = ledger is None
        self.channel = channel
        self.mail = mail
        self.policy = RetryPolicy(mail.retry.max_attempts, mail.retry.first_delay, mail.retry.max_delay)
        self.owner = owner
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.breaker = breaker or Breaker()
        self.channel_factory = channel_factory
        self.connections = max(1, connections)
        self.lease = lease

    # --- the send ------------------------------------------------------------------------------

    def send(self, digest: DigestRecord, compose: Composer) -> SendOutcome:
        outcome = SendOutcome(digest.edition)
        if not self.claim_lease(digest.id):
            outcome.held_by = self.store.digests.lease_holder(digest.id)[0]
            log.info("digest %s %s is being sent by %s; not sending it here", digest.edition, digest.day, outcome.held_by)
            return outcome
        try:
            try:
                self._send_all(digest, compose, outcome)
            except StoreError as exc:
                # the store went away mid-send: what the server accepted since the last commit is
                # sent again by the next run (at most the messages in flight); nothing is lost
                connections = self.connections if self.channel_factory is not None else 1
                bound = duplicate_bound(connections, chunk_size(self.channel, connections))
                outcome.error = (f"{exc}; the send stopped. Run again once the store is back: the rest is sent, "
                                 f"and at most {bound} messages accepted just before the failure go out twice")
                log.error("digest %s %s: %s", digest.edition, digest.day, outcome.error)
                return outcome
            self._finish(digest, outcome)
        finally:
            try:
                if self.lease:
                    self.store.digests.release(digest.id, self.owner)
            except StoreError as exc:  # the lease runs out by itself; the outcome already says why
                log.warning("digest %s: the lease could not be released: %s", digest.id, exc)
        return outcome

    def _send_all(self, digest: DigestRecord, compose: Composer, outcome: SendOutcome) -> None:
        self._fill_ledger(digest)
        outcome.already_sent = self.ledger.counts(digest.id)["sent"]
        pool = SenderPool(self.channel, self.channel_factory, self.connections,
                          TokenBucket(self.mail.rate_per_second), self.stop)
        writes: AbstractContextManager[LedgerWrites]
        if pool.connections > 1 and not self.store.shares_one_connection:
            # commits on their own thread: the claimer goes on judging and handing out meanwhile
            writes = Committer.running(lambda: self.ledger.writer(group=COMMIT_GROUP), pool.wake)
        else:
            writes = self.ledger.writer(group=COMMIT_GROUP)
        try:
            with writes as writer:
                run = Run(self, digest, compose, writer, outcome, pool)
                try:
                    run.all_passes()
                except Stopped:
                    pass
                finally:
                    # refusals held back when the send ends early wait for the next run, unjudged
                    early = run.stopped or outcome.interrupted or outcome.error is not None
                    run.settle_streak(Action.RETRY if early else Action.FAILED)
        finally:
            pool.close()

    def renew_every(self) -> float:
        """Seconds between renewals of the sending lease while the send goes on: a third of it."""
        return LEASE.total_seconds() / 3

    # --- for a coordinator whose workers send the rows (publisher.pipeline.dispatch) ---------------

    def fill_ledger(self, digest: DigestRecord) -> None:
        self._fill_ledger(digest)

    def finish(self, digest: DigestRecord, outcome: SendOutcome) -> None:
        self._finish(digest, outcome)

    def claim(self, digest_id: int) -> bool:
        return self.claim_lease(digest_id)

    def claim_lease(self, digest_id: int) -> bool:
        if not self.lease:
            return True
        if self.store.digests.claim(digest_id, self.owner, LEASE):
            return True
        holder = self.store.digests.lease_holder(digest_id)[0]
        if holder and holder_is_dead(holder):
            log.warning("taking over digest %s from %s, whose process is gone", digest_id, holder)
            return self.store.digests.take_over(digest_id, holder, self.owner, LEASE)
        return False

    def _fill_ledger(self, digest: DigestRecord) -> None:
        if not self.owns_digest:
            self.ledger.enqueue(digest.id, "")
            return
        current = self.store.digests.get(digest.id)
        language = digest.rendered.language if digest.rendered else None
        assert language is not None, "render before sending"
        if current is not None and current.status in (DigestStatus.SENDING, DigestStatus.DONE):
            # Still current (the edition's newest digest, within its send deadline): readers who joined
            # or were imported since it was queued get it too, so a first run before the list was
            # imported freezes nobody out. The fill adds only subscribers without a row: nobody twice.
            started = current.started_at or current.created_at
            fresh = datetime.now(UTC) <= started + timedelta(hours=self.mail.retry.deadline_hours)
            if fresh and self.store.digests.is_newest(digest.id):
                joined = self.ledger.enqueue(digest.id, language)
                if joined:
                    self.store.digests.set_status(digest.id, DigestStatus.SENDING,
                                                  recipients=(current.recipients or 0) + joined)
                    log.info("digest %s %s: %d readers who joined since were queued", digest.edition, digest.day,
                             joined)
            return
        added = self.ledger.enqueue(digest.id, language)
        self.store.digests.set_status(digest.id, DigestStatus.SENDING, recipients=added, started_at=datetime.now(UTC))
        log.info("digest %s %s: %d recipients queued", digest.edition, digest.day, added)

    def _finish(self, digest: DigestRecord, outcome: SendOutcome) -> None:
        counts = self.ledger.counts(digest.id)
        outcome.recipients = sum(counts.values())
        pending = counts["pending"]
        # The deadline holds even while the transport is down: a digest days late is stale news.
        if pending and not outcome.interrupted:
            current = self.store.digests.get(digest.id)
            started = current.started_at if current and current.started_at else datetime.now(UTC)
            if datetime.now(UTC) > started + timedelta(hours=self.mail.retry.deadline_hours):
                self._name_expired(digest, outcome)
                expired = self.ledger.expire_pending(digest.id, "retry deadline passed")
                log.error("digest %s %s: %d deliveries failed: retry deadline passed (mail.retry.deadline_hours)",
                          digest.edition, digest.day, expired)
                outcome.failed += expired
                pending = 0
        # a stop that came after the last row left nothing undone: the digest is complete
        outcome.interrupted = outcome.interrupted and pending > 0
        if pending == 0 and self.owns_digest:
            self.store.digests.set_status(digest.id, DigestStatus.DONE, finished_at=datetime.now(UTC))
        outcome.deferred = pending
        if pending:
            waiting = self.ledger.waiting(digest.id)
            outcome.next_attempt_at, outcome.deferred_reasons = waiting.next_attempt_at, waiting.reasons


    def _name_expired(self, digest: DigestRecord, outcome: SendOutcome) -> None:
        """Every delivery about to fail for the deadline, by address and last reason (in the log)."""
        last_id, forever = 0, datetime.max.replace(tzinfo=UTC)
        while rows := self.ledger.due(digest.id, after_id=last_id, limit=self.mail.batch_size, now=forever):
            last_id = rows[-1].id
            for row in rows:
                reason = f"retry deadline passed (mail.retry.deadline_hours); last: {row.last_error or 'never tried'}"
                log.warning("delivery %d to %s failed: %s", row.id, row.email, reason)
                if len(outcome.failures) < SHOWN_FAILURES:
                    outcome.failures.append((row.email, reason))
