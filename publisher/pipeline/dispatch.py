"""The coordinator of a broker send (mail.broker): fill the ledger, enqueue batches, wait, finish.

    claim the digest's lease -> fill the ledger -> a round: every due row, in id order, as tasks of
    mail.broker.batch delivery ids -> wait (bounded) until every task of the round ended -> again for
    the rows whose retry came due, while the last round got something accepted -> finish the digest.

A row is named by one outstanding task at a time: a round enqueues each due row once, and the next
round is read only when every task of this one has ended. Workers (publisher.pipeline.batch) send and
write the ledger; this side only reads it. The wait ends when every task ended, on a signal, or after
mail.broker.wait_minutes with no task ending and no row settled (nobody consuming the queue): then
the summary names the deliveries still queued and asks for `publisher worker`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from publisher.broker import BatchResult
from publisher.config import MailSettings
from publisher.errors import BrokerUnavailable, StoreError
from publisher.models import OutgoingMessage, SendReport
from publisher.pipeline.outcome import SHOWN_FAILURES, SendOutcome
from publisher.pipeline.send import LEASE, SendEngine
from publisher.pipeline.send_run import MAX_PASSES
from publisher.store import DigestRecord, Store

log = logging.getLogger("publisher.dispatch")

POLL = 0.25  # seconds between looks at the results and the ledger counts (woken early by a signal)
WINDOW = 32  # task results looked at per look
COUNT_EVERY = 1.0  # seconds between counts of the ledger (a GROUP BY over the digest's rows)


class TaskHandle(Protocol):
    def poll(self) -> BatchResult | None: ...


class TaskQueue(Protocol):
    def submit(self, digest_id: int, ids: list[int]) -> TaskHandle: ...


class _NoChannel:
    """The coordinator sends nothing itself; its engine only leases, fills and finishes."""

    max_batch = 1

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        raise AssertionError("the coordinator never sends")


@dataclass
class _Task:
    handle: TaskHandle
    ids: list[int]


class _GaveUp(Exception):
    pass


class Dispatcher:
    def __init__(self, store: Store, queue: TaskQueue, *, mail: MailSettings, owner: str,
                 stop: threading.Event | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
        assert mail.broker is not None
        self.store, self.queue, self.mail, self.broker = store, queue, mail, mail.broker
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.engine = SendEngine(store, _NoChannel(), mail=mail, owner=owner, stop=self.stop)
        self.renewed = 0.0

    def send(self, digest: DigestRecord) -> SendOutcome:
        outcome = SendOutcome(digest.edition)
        if not self.engine.claim(digest.id):
            outcome.held_by = self.store.digests.lease_holder(digest.id)[0]
            log.info("digest %s %s is being sent by %s; not sending it here", digest.edition, digest.day,
                     outcome.held_by)
            return outcome
        self.renewed = time.monotonic()
        try:
            try:
                self.engine.fill_ledger(digest)
                start = self.store.deliveries.counts(digest.id)
                bounced_before = self.store.deliveries.bounced(digest.id)
                outcome.already_sent = start["sent"]
                try:
                    self._rounds(digest, outcome)
                finally:
                    end = self.store.deliveries.counts(digest.id)
                    # the ledger is the truth: a killed worker's task never reports, its rows still count
                    outcome.sent = end["sent"] - start["sent"]
                    outcome.failed = end["failed"] - start["failed"]
                    outcome.skipped = end["skipped"] - start["skipped"]
                    outcome.bounced = self.store.deliveries.bounced(digest.id) - bounced_before
                self.engine.finish(digest, outcome)
            except StoreError as exc:
                outcome.error = f"{exc}; the coordinator stopped. Run again once the store is back: the rest is sent"
                log.error("digest %s %s: %s", digest.edition, digest.day, outcome.error)
        finally:
            try:
                self.store.digests.release(digest.id, self.engine.owner)
            except StoreError as exc:
                log.warning("digest %s: the lease could not be released: %s", digest.id, exc)
        return outcome

    def _rounds(self, digest: DigestRecord, outcome: SendOutcome) -> None:
        for number in range(1, MAX_PASSES + 1):
            before = self.store.deliveries.counts(digest.id)["sent"]
            try:
                tasks = self._enqueue(digest, outcome)
            except _GaveUp:
                return
            if self.stop.is_set():
                outcome.interrupted = True
            if not tasks:
                return
            log.info("digest %s %s: round %d, %d tasks of up to %d deliveries enqueued on %s", digest.edition,
                     digest.day, number, len(tasks), self.broker.batch, self.broker.queue)
            try:
                self._wait(digest, outcome, tasks, retry=number > 1)
            except _GaveUp:
                return
            if outcome.error or outcome.interrupted:
                return
            accepted = self.store.deliveries.counts(digest.id)["sent"] - before
            if not accepted or not self.store.deliveries.due(digest.id, after_id=0, limit=1):
                return
            log.info("digest %s %s: round %d done; again for retries now due", digest.edition, digest.day, number)

    def _enqueue(self, digest: DigestRecord, outcome: SendOutcome) -> list[_Task]:
        tasks: list[_Task] = []
        last_id = 0
        while not self.stop.is_set():
            rows = self.store.deliveries.due(digest.id, after_id=last_id, limit=self.broker.batch)
            if not rows:
                break
            last_id = rows[-1].id
            ids = [row.id for row in rows]
            try:
                tasks.append(_Task(self.queue.submit(digest.id, ids), ids))
            except BrokerUnavailable as exc:
                outcome.error = f"{exc}; {len(tasks)} tasks were enqueued before, the rest stays pending"
                log.error("digest %s %s: %s", digest.edition, digest.day, outcome.error)
                if not tasks:
                    raise _GaveUp from exc
                break
            self._renew(digest, outcome)
        return tasks

    def _wait(self, digest: DigestRecord, outcome: SendOutcome, tasks: list[_Task], *, retry: bool) -> None:
        pending = list(tasks)
        limit = self.broker.wait_minutes * 60
        settled_before, quiet_since, counted = -1, time.monotonic(), 0.0
        while pending:
            # a look at a task's result is a round trip to the broker: WINDOW of them per look, in turn
            # (results that come meanwhile are buffered; the ledger counts show progress in between)
            window, rest = pending[:WINDOW], pending[WINDOW:]
            ended = [task for task in window if self._ended(task, outcome, retry=retry)]
            pending = rest + [task for task in window if task not in ended]
            settled = settled_before
            if time.monotonic() - counted >= COUNT_EVERY or not pending:
                counts, counted = self.store.deliveries.counts(digest.id), time.monotonic()
                settled = counts["sent"] + counts["failed"] + counts["skipped"]
                if self.on_progress:
                    self.on_progress(settled, sum(counts.values()))
            if ended or settled != settled_before:
                settled_before, quiet_since = settled, time.monotonic()
            if not pending:
                return
            if self.stop.is_set():
                outcome.interrupted = True
                log.warning("digest %s %s: stopped by a signal; %d tasks are still with the workers, who finish "
                            "them", digest.edition, digest.day, len(pending))
                raise _GaveUp
            if time.monotonic() - quiet_since > limit:
                queued = len(self.store.deliveries.due(digest.id, after_id=0, limit=10**9,
                                                       ids=[i for task in pending for i in task.ids]))
                outcome.error = (f"{queued} deliveries still queued on {self.broker.queue} after "
                                 f"{self.broker.wait_minutes:g} minutes without progress; start `publisher worker` "
                                 "(they are sent when a worker takes them; run again afterwards to finish the digest)")
                log.error("digest %s %s: %s", digest.edition, digest.day, outcome.error)
                raise _GaveUp
            self._renew(digest, outcome)
            self.stop.wait(POLL)

    def _ended(self, task: _Task, outcome: SendOutcome, *, retry: bool) -> bool:
        try:
            result = task.handle.poll()
        except BrokerUnavailable as exc:
            outcome.error = f"{exc}; the workers' rows are in the ledger: run again to finish the digest"
            log.error("digest %s: %s", outcome.edition, outcome.error)
            raise _GaveUp from exc
        if result is None:
            return False
        outcome.retried += result.retried + (result.sent + result.failed if retry else 0)
        room = SHOWN_FAILURES - len(outcome.failures)
        outcome.failures.extend(result.failures[: max(0, room)])
        if result.error and not outcome.error:
            outcome.error = result.error  # the first reason a task stopped (a refusal about us, with its hint)
            log.error("digest %s: a task stopped: %s", outcome.edition, result.error)
        return True

    def _renew(self, digest: DigestRecord, outcome: SendOutcome) -> None:
        if time.monotonic() - self.renewed <= LEASE.total_seconds() / 3:
            return
        if not self.engine.claim(digest.id):
            outcome.error = "lost the sending lease to another process; stopping"
            raise _GaveUp
        self.renewed = time.monotonic()


__all__ = ["Dispatcher", "TaskHandle", "TaskQueue"]
