"""Ledger commits on their own thread, so the claimer never waits for a commit's round trip.

The send engine's claimer writes each judged result here (this is a `LedgerWrites`); `hand_over`
passes what was written so far to the committer thread, which applies it to the ledger's own writer
(opened on that thread: one connection, used by it alone) and commits. While one commit runs, the
next results pile up and go together: the group grows with the commit's latency, no clock decides.

The crash bound is the engine's to keep: a chunk counts as held from the moment it is handed to a
sender until the commit that carries its results is done (`uncommitted_chunks`), and the engine
hands out no more than `in_flight_limit` chunks held that way. So the accepted rows not yet
committed are still always among the chunks handed out. A failed commit is kept and raised to the
claimer at its next call (`check`, `flush`); nothing after it is committed, so the rows stay pending.

Written here rather than with concurrent.futures: a group must merge whatever came meanwhile, and
the claimer must learn of each commit on the same queue it waits on for results (`wake`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

from publisher.pipeline.ledger import LedgerWrites

__all__ = ["Committer"]

_Op = tuple[str, tuple[Any, ...], dict[str, Any]]


class Committer:
    """A `LedgerWrites` whose commits run on a thread of their own. Use `Committer.running(...)`."""

    def __init__(self, open_writer: Callable[[], AbstractContextManager[LedgerWrites]], wake: Callable[[], None]) -> None:
        self._open = open_writer
        self._wake = wake
        self._ops: list[_Op] = []  # written by the claimer, not handed over yet
        self._chunks = 0  # chunks whose results are in _ops
        self._cond = threading.Condition()
        self._todo: list[tuple[list[_Op], int]] = []
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self.judged_chunks = 0  # every chunk judged (claimer only)
        self.committed_chunks = 0  # every chunk whose results are committed (written by the thread)
        self._thread = threading.Thread(target=self._serve, name="ledger-committer", daemon=True)

    @classmethod
    @contextmanager
    def running(
        cls, open_writer: Callable[[], AbstractContextManager[LedgerWrites]], wake: Callable[[], None]
    ) -> Iterator[Committer]:
        """The committer, its thread started; at the end what was written is committed (after an
        error too, as the ledger's own writer does: what the server accepted is kept)."""
        committer = cls(open_writer, wake)
        committer._thread.start()
        try:
            yield committer
        except BaseException:
            committer.close(raise_error=False)
            raise
        committer.close(raise_error=True)

    # --- LedgerWrites (the claimer's side) -------------------------------------------------------

    def sent(self, delivery_id: int, provider_message_id: str | None) -> None:
        self._ops.append(("sent", (delivery_id, provider_message_id), {}))

    def retry_at(self, delivery_id: int, error: str, when: datetime, *, count_attempt: bool = True) -> None:
        self._ops.append(("retry_at", (delivery_id, error, when), {"count_attempt": count_attempt}))

    def failed(self, delivery_id: int, error: str, *, count_attempt: bool = True) -> None:
        self._ops.append(("failed", (delivery_id, error), {"count_attempt": count_attempt}))

    def skipped(self, delivery_id: int, reason: str) -> None:
        self._ops.append(("skipped", (delivery_id, reason), {}))

    def flush(self) -> None:
        """Hand over what is written and wait until every commit is done (raises a commit's error)."""
        self._submit()
        with self._cond:
            while (self._todo or self._busy) and self._error is None:
                self._cond.wait()
        self.check()

    # --- the claimer's other calls ----------------------------------------------------------------

    def judged(self) -> None:
        """One more chunk's results were written here (they count as held until committed)."""
        self._chunks += 1
        self.judged_chunks += 1

    @property
    def uncommitted_chunks(self) -> int:
        return self.judged_chunks - self.committed_chunks

    @property
    def waiting_chunks(self) -> int:
        """Chunks judged and written here, not handed over yet."""
        return self._chunks

    def hand_over(self) -> None:
        """Start committing what is written, unless a commit is running (then it waits for the next)."""
        if not self._ops and not self._chunks:
            return
        with self._cond:
            idle = not self._busy and not self._todo
        if idle:
            self._submit()

    def check(self) -> None:
        """Raise the error a commit failed with, if one did."""
        if self._error is not None:
            raise self._error

    def close(self, *, raise_error: bool) -> None:
        try:
            self.flush()
        except BaseException:
            if raise_error:
                raise
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()

    def _submit(self) -> None:
        if not self._ops and not self._chunks:
            return
        ops, chunks, self._ops, self._chunks = self._ops, self._chunks, [], 0
        with self._cond:
            if self._error is not None:
                return  # nothing is committed after a failed commit: those rows stay pending
            self._todo.append((ops, chunks))
            self._cond.notify_all()

    # --- the thread -------------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            with self._open() as writer:
                while (group := self._next()) is not None:
                    ops, chunks = group
                    for name, args, kwargs in ops:
                        getattr(writer, name)(*args, **kwargs)
                    writer.flush()
                    with self._cond:
                        self.committed_chunks += chunks
                        self._busy = False
                        self._cond.notify_all()
                    self._wake()
        except BaseException as exc:  # noqa: BLE001 - handed to the claimer, which raises it
            with self._cond:
                self._error = exc
                self._busy = False
                self._todo.clear()
                self._cond.notify_all()
            self._wake()

    def _next(self) -> tuple[list[_Op], int] | None:
        """Everything handed over since the last commit, as one group; None once closed and done."""
        with self._cond:
            while not self._todo and not self._closed:
                self._cond.wait()
            if not self._todo:
                return None
            ops = [op for group, _ in self._todo for op in group]
            chunks = sum(count for _, count in self._todo)
            self._todo.clear()
            self._busy = True
            return ops, chunks
