"""One call of SendEngine.send (publisher.pipeline.send): the passes over the due rows, the chunks
handed to the senders and judged when they come back, the refusal streak the breaker holds back, and
the one ledger write path. Split from the engine so that each module stays one noun."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from publisher.errors import TransportUnavailable
from publisher.models import OutgoingMessage, SubscriberStatus
from publisher.pipeline.committer import Committer
from publisher.pipeline.compose import NotSent
from publisher.pipeline.ledger import LedgerWrites
from publisher.pipeline.outcome import SHOWN_FAILURES, SendOutcome
from publisher.pipeline.senders import Done, SenderPool
from publisher.pipeline.verdict import HINT_STREAK, Action, Decision, Refusal, decide
from publisher.store import DigestRecord, PendingDelivery
from publisher.subscriber_status import apply_status

if TYPE_CHECKING:  # the engine creates a Run and hands itself in (no cycle at run time)
    from publisher.pipeline.send import SendEngine

log = logging.getLogger("publisher.send")

MAX_PASSES = 100  # a bound on going round again (each pass costs every retried row an attempt)

Composer = Callable[[PendingDelivery], OutgoingMessage | NotSent]


class Stopped(Exception):
    """The send ends before the end of the list; the outcome says why."""


class Run:
    """One call of SendEngine.send: the passes over due rows, and the streak the breaker holds back."""

    def __init__(self, engine: SendEngine, digest: DigestRecord, compose: Composer, writer: LedgerWrites,
                 outcome: SendOutcome, pool: SenderPool) -> None:
        self.engine, self.digest, self.compose, self.writer, self.outcome = engine, digest, compose, writer, outcome
        self.store, self.ledger = engine.store, engine.ledger
        self.pool = pool
        self.chunk = pool.chunk
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
        except Stopped:
            self._collect(drain=True)  # what was handed out still comes back and is written
            raise
        self._collect(drain=True)  # every chunk handed out comes back and is written
        if self.stopped or self.outcome.interrupted:
            if self.stopped:
                log.error("digest %s %s: %s", self.digest.edition, self.digest.day, self.outcome.error)
            raise Stopped
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
        self.done += len(done.report.results)  # a channel told to stop leaves the rest out: still pending
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
        if not force and time.monotonic() - self.renewed <= self.engine.renew_every():
            return
        self.writer.flush()
        if not self.engine.claim_lease(self.digest.id):
            self.outcome.error = "lost the sending lease to another process; stopping"
            raise Stopped
        self.renewed = time.monotonic()

