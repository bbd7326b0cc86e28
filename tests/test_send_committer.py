"""The committer thread: results written on the claimer's thread are committed on its own, in order;
a chunk stays held until its commit is done; a failed commit is raised to the claimer and nothing
written after it is committed (those rows stay pending: sent again, never lost)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from publisher.errors import StoreError
from publisher.pipeline.committer import Committer
from publisher.store import Store


class Ledger:
    """A writer that keeps what it was given and commits on flush; `gate` holds a commit."""

    def __init__(self, fail_on_commit: int = 0) -> None:
        self.kept: list[tuple[str, int]] = []
        self.committed: list[tuple[str, int]] = []
        self.commits = 0
        self.fail_on_commit = fail_on_commit
        self.gate = threading.Event()
        self.gate.set()
        self.threads: set[str] = set()

    @contextmanager
    def writer(self) -> Iterator[Ledger]:
        yield self

    def sent(self, delivery_id: int, provider_message_id: str | None) -> None:
        self.threads.add(threading.current_thread().name)
        self.kept.append(("sent", delivery_id))

    def retry_at(self, delivery_id: int, error: str, when: datetime, *, count_attempt: bool = True) -> None:
        self.kept.append(("retry", delivery_id))

    def failed(self, delivery_id: int, error: str, *, count_attempt: bool = True) -> None:
        self.kept.append(("failed", delivery_id))

    def skipped(self, delivery_id: int, reason: str) -> None:
        self.kept.append(("skipped", delivery_id))

    def flush(self) -> None:
        assert self.gate.wait(30)
        self.commits += 1
        kept, self.kept = self.kept, []
        if self.commits == self.fail_on_commit:
            raise StoreError("the store at test failed: connection lost")
        self.committed.extend(kept)


def test_results_are_committed_on_the_committers_thread_in_order_and_chunks_held_until_then() -> None:
    ledger = Ledger()
    woken = threading.Semaphore(0)
    with Committer.running(ledger.writer, woken.release) as committer:
        ledger.gate.clear()  # the first commit is held
        committer.sent(1, "q1")
        committer.judged()
        committer.hand_over()
        committer.sent(2, None)
        committer.failed(3, "550 no such user")
        committer.judged()
        committer.judged()
        committer.hand_over()  # a commit is running: these wait for the next one
        assert committer.uncommitted_chunks == 3
        assert committer.waiting_chunks == 2
        ledger.gate.set()
        assert woken.acquire(timeout=30)
        committer.flush()
        assert committer.uncommitted_chunks == 0
        committer.retry_at(4, "451 later", datetime.now(UTC))
        committer.skipped(5, "paused")
    # the end of the block commits what is left
    assert ledger.committed == [("sent", 1), ("sent", 2), ("failed", 3), ("retry", 4), ("skipped", 5)]
    assert ledger.threads == {"ledger-committer"}
    assert ledger.commits == 3


def test_a_failed_commit_is_raised_to_the_claimer_and_nothing_after_it_is_committed() -> None:
    ledger = Ledger(fail_on_commit=2)
    with pytest.raises(StoreError, match="connection lost"), Committer.running(ledger.writer, lambda: None) as committer:
        committer.sent(1, None)
        committer.judged()
        committer.flush()
        committer.sent(2, None)
        committer.judged()
        with pytest.raises(StoreError):
            committer.flush()
        assert committer.uncommitted_chunks == 1, "the failed group's chunk is never freed"
        committer.sent(3, None)
        committer.hand_over()
        committer.check()  # raises again: the claimer cannot miss it
    assert ledger.committed == [("sent", 1)]


def test_the_committer_commits_on_a_real_store(store_url: str) -> None:
    """Its thread opens the ledger's own writer (its own connection) on SQLite and PostgreSQL."""
    from datetime import date

    store = Store.open(store_url)
    try:
        for i in range(3):
            store.subscribers.upsert(f"r{i}@example.org", language="en")
        digest = store.digests.create("en", date(2024, 12, 2), "en", []).id
        store.deliveries.enqueue(digest, "en")
        rows = store.deliveries.due(digest, after_id=0, limit=10)
        with Committer.running(lambda: store.deliveries.writer(group=50), lambda: None) as committer:
            for row in rows[:2]:
                committer.sent(row.id, f"q{row.id}")
            committer.skipped(rows[2].id, "paused")
            committer.hand_over()
        counts = store.deliveries.counts(digest)
        assert (counts["sent"], counts["skipped"], counts["pending"]) == (2, 1, 0)
    finally:
        store.close()
