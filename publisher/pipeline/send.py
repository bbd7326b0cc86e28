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
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

from publisher.config import MailSettings
from publisher.errors import StoreError, TransportUnavailable
from publisher.models import OutgoingMessage, SubscriberStatus
from publisher.pipeline.committer import Committer
from publisher.pipeline.compose import LinkMaker, NotSent
from publisher.pipeline.lease import holder_is_dead
from publisher.pipeline.ledger import Ledger, LedgerWrites
from publisher.pipeline.outcome import SHOWN_FAILURES, SendOutcome
from publisher.pipeline.senders import (
    COMMIT_GROUP,
    Channel,
    Done,
    SenderPool,
    TokenBucket,
    duplicate_bound,
)
from publisher.pipeline.verdict import HINT_STREAK, Action, Breaker, Decision, Refusal, RetryPolicy, decide
from publisher.store import DigestRecord, DigestStatus, PendingDelivery, Store
from publisher.subscriber_status import apply_status

log = logging.getLogger("publisher.send")

LEASE = timedelta(minutes=2)
MAX_PASSES = 100  # a bound on going round again (each pass costs every retried row an attempt)

__all__ = ["LEASE", "Channel", "Composer", "LinkMaker", "SendEngine", "SendOutcome", "holder_is_dead"]


Composer = Callable[[PendingDelivery], OutgoingMessage | NotSent]


class _Stopped(Exception):
    """The send ends before the end of the list; the outcome says why."""


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
    ) -> None:
        """channel_factory builds one more channel per extra sender (connections > 1): a channel
        is used by one thread only. Without a factory the send uses `channel` alone."""
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

    # --- the send ------------------------------------------------------------------------------

    def send(self, digest: DigestRecord, compose: Composer) -> SendOutcome:
        outcome = SendOutcome(digest.edition)
        if not self._claim(digest.id):
            outcome.held_by = self.store.digests.lease_holder(digest.id)[0]
            log.info("digest %s %s is being sent by %s; not sending it here", digest.edition, digest.day, outcome.held_by)
            return outcome
        try:
            try:
                self._send_all(digest, compose, outcome)
            except StoreError as exc:
                # the store went away mid-send: what the server accepted since the last commit is
                # sent again by the next run (at most the messages in flight); nothing is lost
                bound = duplicate_bound(self.connections, max(1, int(getattr(self.channel, "max_batch", 1))))
                outcome.error = (f"{exc}; the send stopped. Run again once the store is back: the rest is sent, "
                                 f"and at most {bound} messages accepted just before the failure go out twice")
                log.error("digest %s %s: %s", digest.edition, digest.day, outcome.error)
                return outcome
            self._finish(digest, outcome)
        finally:
            try:
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
                run = _Run(self, digest, compose, writer, outcome, pool)
                try:
                    run.all_passes()
                except _Stopped:
                    pass
                finally:
                    # refusals held back when the send ends early wait for the next run, unjudged
                    early = run.stopped or outcome.interrupted or outcome.error is not None
                    run.settle_streak(Action.RETRY if early else Action.FAILED)
        finally:
            pool.close()

    def _claim(self, digest_id: int) -> bool:
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


class _Run:
    """One call of SendEngine.send: the passes over due rows, and the streak the breaker holds back."""

    def __init__(self, engine: SendEngine, digest: DigestRecord, compose: Composer, writer: LedgerWrites,
                 outcome: SendOutcome, pool: SenderPool) -> None:
        self.engine, self.digest, self.compose, self.writer, self.outcome = engine, digest, compose, writer, outcome
        self.store, self.ledger = engine.store, engine.ledger
        self.chunk = max(1, int(getattr(engine.channel, "max_batch", 1)))
        self.pool = pool
        self.committer = writer if isinstance(writer, Committer) else None
        self.accepted = 0
        counts = self.ledger.counts(digest.id)
        self.total = sum(counts.values())
        self.done = counts["sent"] + counts["failed"] + counts["skipped"]
        # refusals of kind OTHER held back while they might turn out to be about us (see Breaker)
        self.streak: list[tuple[PendingDelivery, Decision]] = []
        self.stopped = False
        self.pass_number = 0  # from the second pass on, every row settled is a retry within this run
        self.renewed = time.monotonic()

    def all_passes(self) -> None:
        for number in range(1, MAX_PASSES + 1):
            self.pass_number = number
            accepted = self.one_pass()
            self.settle_streak(Action.FAILED)
            self.writer.flush()
            if not accepted or not self.ledger.due(self.digest.id, after_id=0, limit=1):
                return
            log.info("digest %s %s: pass %d done; going round again for retries now due",
                     self.digest.edition, self.digest.day, number)

    def one_pass(self) -> int:
        """Every row due now, in id order, over the pool's senders; returns how many were accepted."""
        self.accepted = 0
        last_id = 0
        try:
            self._pass(last_id)
        except _Stopped:
            self._collect(drain=True)  # what was handed out still comes back and is written
            raise
        self._collect(drain=True)  # every chunk handed out comes back and is written
        if self.stopped or self.outcome.interrupted:
            if self.stopped:
                log.error("digest %s %s: %s", self.digest.edition, self.digest.day, self.outcome.error)
            raise _Stopped
        return self.accepted

    def _pass(self, last_id: int) -> None:
        while not self._halted():
            if self.committer is None:
                self.writer.flush()  # commit before the next read (with the committer: it commits meanwhile)
            rows = self.ledger.due(self.digest.id, after_id=last_id, limit=self.engine.mail.batch_size)
            if not rows:
                break
            last_id = rows[-1].id
            self._renew(force=True)
            for start in range(0, len(rows), self.chunk):
                if self._halted():
                    break
                self._renew()
                self._dispatch(rows[start : start + self.chunk])

    def _halted(self) -> bool:
        if self.engine.stop.is_set():
            self.outcome.interrupted = True
            return True
        return self.stopped

    def _dispatch(self, rows: Sequence[PendingDelivery]) -> None:
        by_id: dict[int, PendingDelivery] = {}
        messages: list[OutgoingMessage] = []
        for row in rows:
            built = self._compose(row)
            if built is not None:
                messages.append(built)
                by_id[row.id] = row
        if messages:
            self.pool.submit(by_id, messages)
        self._collect(drain=False)

    def _collect(self, *, drain: bool) -> None:
        """Once the pool is full, judge the chunks coming back until it is down to its low water mark
        (draining: to none), then commit them as one group before anything else is handed out: the
        accepted rows not committed are always among the chunks handed out."""
        pool = self.pool
        if self.committer is not None:
            self._collect_committing(self.committer, drain=drain)
            return
        if not drain and not pool.full:
            return
        floor = 0 if drain else pool.low
        while pool.in_flight > floor:
            done = pool.next_done(None)
            if done is not None:
                self._judge(done)
        self.writer.flush()

    def _collect_committing(self, committer: Committer, *, drain: bool) -> None:
        """With the committer thread. A chunk counts as held from being handed out until its results
        are committed; fewer than the pool's limit held: return at once (another chunk may go out).
        At the limit: judge what comes back and hand it over to be committed until no more than the
        low water mark is held, then return, so the claimer refills in a burst instead of waking
        for every chunk. The accepted rows not committed are always among the chunks held.
        Draining: until every chunk came back and every result is committed."""
        pool = self.pool
        if not drain and pool.in_flight + committer.uncommitted_chunks < pool.limit:
            return
        while True:
            while (done := pool.next_done(0)) is not None:
                self._judge(done)
            committer.check()
            # a commit costs about the same for one row as for twenty (SQLite: ~0.3 ms of CPU): hand
            # over once committing what waits brings the pool down to its low water mark (the
            # chunks still out keep the senders busy meanwhile), or when nothing else is coming
            held = pool.in_flight + committer.uncommitted_chunks
            if drain or pool.in_flight == 0 or held - committer.waiting_chunks <= pool.low:
                committer.hand_over()
            if drain:
                if pool.in_flight == 0:
                    break
            elif pool.in_flight + committer.uncommitted_chunks <= pool.low:
                return
            done = pool.next_done(None)  # a chunk back, or a commit done (None)
            if done is not None:
                self._judge(done)
        committer.flush()

    def _judge(self, done: Done) -> None:
        if self.committer is not None:
            self.committer.judged()
        by_id = done.token
        assert isinstance(by_id, dict)
        if done.error is not None:
            if not isinstance(done.error, TransportUnavailable):
                raise done.error
            # nothing of that chunk was accepted: its rows stay pending, untouched; the rest stops
            if not self.stopped:
                self._stop(str(done.error))
            return
        assert done.report is not None
        now = datetime.now(UTC)
        for result in done.report.results:
            row = by_id[result.delivery_id]
            decision = decide(result, row.email, row.attempts, self.engine.policy, now)
            self.accepted += decision.action is Action.SENT
            self._take(row, decision)
        self.done += len(by_id)
        if self.engine.on_progress:
            self.engine.on_progress(self.done, self.total)

    def _compose(self, row: PendingDelivery) -> OutgoingMessage | None:
        if row.subscriber_status is not SubscriberStatus.ACTIVE or row.paused:
            self._skip(row, "paused" if row.paused else f"subscriber is {row.subscriber_status.value}")
            return None
        built = self.compose(row)
        if isinstance(built, NotSent):
            if built.failed:
                self._write(row, Decision(Action.FAILED, built.reason))
            else:
                self._skip(row, built.reason)
            return None
        return built

    def _take(self, row: PendingDelivery, decision: Decision) -> None:
        """Route one decision: through the breaker's streak, or straight to the ledger."""
        if self.stopped:
            # the rest of a batch answered after the send was stopped: sent stays sent, the rest waits
            if decision.action is not Action.SENT:
                decision = Decision(Action.RETRY, decision.reason, decision.retry_at or datetime.now(UTC),
                                    decision.refusal, count_attempt=False)
            self._write(row, decision)
            return
        trips = self.engine.breaker.observe(decision, row.email)
        if decision.action is Action.SENT and self.streak:
            self.settle_streak(Action.FAILED)
        if decision.action is Action.STOP:
            self._stop(f"{decision.reason}; stopped, nobody marked failed (hint: {decision.hint})")
            self._write(row, decision)
            return
        if decision.refusal is Refusal.OTHER and decision.action is Action.FAILED:
            self.streak.append((row, decision))
            if trips:
                self._stop(f"{self.engine.breaker.explain(decision.reason)}; stopped, nobody marked failed "
                           f"(hint: {HINT_STREAK})")
                self.settle_streak(Action.RETRY)
            return
        self._write(row, decision)

    def settle_streak(self, action: Action) -> None:
        """Write the held-back refusals: as failed (the streak broke) or as deferred (it was about us)."""
        if action is Action.FAILED:
            self.engine.breaker.reset()
        if not self.streak:
            return
        held, self.streak = self.streak, []
        retry_at = datetime.now(UTC) + self.engine.policy.backoff(1)
        for row, decision in held:
            if action is Action.RETRY:
                decision = Decision(Action.RETRY, decision.reason, retry_at, decision.refusal, count_attempt=False)
            self._write(row, decision)

    def _stop(self, error: str) -> None:
        self.stopped = True
        self.outcome.error = error

    # --- the one ledger write path -------------------------------------------------------------

    def _skip(self, row: PendingDelivery, reason: str) -> None:
        self.writer.skipped(row.id, reason)
        self.outcome.skipped += 1

    def _write(self, row: PendingDelivery, decision: Decision) -> None:
        outcome, writer = self.outcome, self.writer
        retry = self.pass_number > 1
        if decision.action is Action.SENT:
            writer.sent(row.id, decision.provider_message_id)
            outcome.sent += 1
            outcome.retried += retry
            return
        if decision.action in (Action.RETRY, Action.STOP):
            assert decision.retry_at is not None
            writer.retry_at(row.id, decision.reason, decision.retry_at, count_attempt=decision.count_attempt)
            return
        writer.failed(row.id, decision.reason)
        outcome.failed += 1
        outcome.retried += retry
        if len(outcome.failures) < SHOWN_FAILURES:
            outcome.failures.append((row.email, decision.reason))
        if decision.action is Action.BOUNCE:
            outcome.bounced += 1
            # the mailbox does not exist: sending to it again only hurts our reputation
            writer.flush()  # the store takes one writer at a time (SQLite): ours commits first
            apply_status(self.store.subscribers, row.subscriber_id, SubscriberStatus.BOUNCED, decision.reason)
            log.info("delivery %d to %s bounced, subscriber %d marked bounced: %s",
                     row.id, row.email, row.subscriber_id, decision.reason)
        else:
            log.warning("delivery %d to %s failed: %s", row.id, row.email, decision.reason)

    # --- stop and lease ------------------------------------------------------------------------

    def _renew(self, *, force: bool = False) -> None:
        # a slow batch (rate limit, slow server) must not outlive its lease
        if not force and time.monotonic() - self.renewed <= LEASE.total_seconds() / 3:
            return
        self.writer.flush()
        if not self.engine._claim(self.digest.id):
            self.outcome.error = "lost the sending lease to another process; stopping"
            raise _Stopped
        self.renewed = time.monotonic()

