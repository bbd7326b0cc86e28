"""A broker worker's task: send one batch of a digest's deliveries (what `publisher worker` runs).

    lock the batch's rows (publisher.store.row_locks) -> the send engine over a ledger view limited to
    the rows this task holds -> the digest's frozen render, composed per row -> the configured
    transport -> verdict.decide -> the one ledger write path, committed -> the task returns (and only
    then is the broker message acknowledged).

Only rows still pending and due are read, so a task given again after its worker died sends only
what was not committed as sent. What it can repeat is what the dead worker had accepted and not yet
committed: `duplicate_bound(mail.connections, max_batch)` messages per task it was running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from publisher.broker import BatchResult
from publisher.config import Config
from publisher.delivery.mail import MailTransport, build_transport
from publisher.pipeline import email_composer, owner_name, template_for
from publisher.pipeline.compose import EmailComposer
from publisher.pipeline.digest import SelectedDigest
from publisher.pipeline.ledger import LedgerWrites
from publisher.pipeline.send import SendEngine
from publisher.pipeline.senders import duplicate_bound, senders_for
from publisher.store import PendingDelivery, Store
from publisher.store.deliveries import DeliveryLedger, Waiting
from publisher.store.row_locks import held_rows

log = logging.getLogger("publisher.worker")

__all__ = ["BatchLedger", "BatchSender", "killed_worker_bound"]


def killed_worker_bound(concurrency: int, connections: int, max_batch: int) -> int:
    """Messages a worker killed mid-digest can make the redelivered tasks send again: for each task
    it was running (one per thread, prefetch 1), what that task had accepted and not committed."""
    return max(1, concurrency) * duplicate_bound(connections, max_batch)


class BatchLedger:
    """The ledger seen by one task: only its rows. Filling is the coordinator's job (a no-op here)."""

    def __init__(self, ledger: DeliveryLedger, ids: Sequence[int]) -> None:
        self._ledger = ledger
        self.ids = sorted(ids)

    def enqueue(self, digest_id: int, language: str, *, now: datetime | None = None) -> int:
        return 0

    def due(self, digest_id: int, *, after_id: int, limit: int, now: datetime | None = None) -> list[PendingDelivery]:
        return self._ledger.due(digest_id, after_id=after_id, limit=limit, now=now, ids=self.ids)

    def writer(self, *, group: int = 1) -> AbstractContextManager[LedgerWrites]:
        return self._ledger.writer(group=group)

    def counts(self, digest_id: int) -> dict[str, int]:
        return self._ledger.counts(digest_id, ids=self.ids)

    def waiting(self, digest_id: int, *, top: int = 3) -> Waiting:
        return self._ledger.waiting(digest_id, top=top, ids=self.ids)

    def expire_pending(self, digest_id: int, reason: str) -> int:
        return self._ledger.expire_pending(digest_id, reason, ids=self.ids)


class BatchSender:
    """The task body, one per worker process; safe for the worker's threads (one transport per task)."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config, self.store = config, store
        self._composers: dict[tuple[int, int], EmailComposer] = {}  # a digest's render is frozen: build it once
        self._lock = threading.Lock()

    def __call__(self, digest_id: int, ids: list[int]) -> dict[str, object]:
        return self.send(digest_id, ids).to_json()

    def send(self, digest_id: int, ids: Sequence[int]) -> BatchResult:
        record = self.store.digests.get(digest_id)
        if record is None or record.rendered is None:
            return BatchResult(error=f"digest {digest_id} is not in the store, or not rendered: is the worker "
                                     "pointed at the coordinator's store.url?")
        try:
            edition = self.config.edition(record.edition)
        except KeyError:
            return BatchResult(error=f"edition {record.edition!r} of digest {digest_id} is not in this worker's "
                                     "config.yaml; give the workers the coordinator's config")
        transport = build_transport(self.config.mail.transport, base_dir=self.config.base_dir)
        try:
            with held_rows(self.store.engine, ids) as mine:
                if not mine:
                    return BatchResult(held_elsewhere=len(ids))
                composer = self._composer(record.id, edition.id, transport)
                engine = SendEngine(self.store, transport, mail=self.config.mail, owner=owner_name(),
                                    ledger=BatchLedger(self.store.deliveries, mine), lease=False,
                                    **senders_for(self.config, transport))
                outcome = engine.send(record, composer)
        finally:
            transport.close()
        log.info("digest %s batch %d-%d: %d sent, %d failed, %d skipped, %d still pending", digest_id, mine[0],
                 mine[-1], outcome.sent, outcome.failed, outcome.skipped, outcome.deferred)
        return BatchResult(sent=outcome.sent, failed=outcome.failed, skipped=outcome.skipped,
                           bounced=outcome.bounced, retried=outcome.retried, held_elsewhere=len(ids) - len(mine),
                           failures=tuple(outcome.failures), error=outcome.error)

    def _composer(self, digest_id: int, edition_id: str, transport: MailTransport) -> EmailComposer:
        key = (digest_id, threading.get_ident())  # a composer keeps caches: one per thread
        with self._lock:
            found = self._composers.get(key)
            if found is not None:
                return found
            record = self.store.digests.get(digest_id)
            assert record is not None and record.rendered is not None
            edition = self.config.edition(edition_id)
            selected = SelectedDigest(edition, record.day, self.store.articles.in_digest(digest_id), record)
            template = template_for(self.config, edition, record.rendered)
            composer = email_composer(self.config, self.store, edition, selected, template, transport)
            if len(self._composers) >= 32:
                self._composers.pop(next(iter(self._composers)))
            self._composers[key] = composer
            return composer
