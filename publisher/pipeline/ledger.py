"""What the send engine needs of a ledger: the email deliveries (store.deliveries) or a channel's posts.

A ledger holds one row per thing to send for a digest; the engine claims due rows, and writes each
outcome through a writer (rows committed in groups of at most `group`, flushed on demand). Rows are `PendingDelivery` (a channel's post fills it
with its own meaning: `email` names the post in reports, subscriber 0 is nobody).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from publisher.store import PendingDelivery
from publisher.store.deliveries import Waiting


class LedgerWrites(Protocol):
    def sent(self, delivery_id: int, provider_message_id: str | None) -> None: ...

    def retry_at(self, delivery_id: int, error: str, when: datetime, *, count_attempt: bool = True) -> None: ...

    def failed(self, delivery_id: int, error: str, *, count_attempt: bool = True) -> None: ...

    def skipped(self, delivery_id: int, reason: str) -> None: ...

    def flush(self) -> None:
        """Commit what is written so far (writers that commit each row have nothing to do)."""


class Ledger(Protocol):
    def enqueue(self, digest_id: int, language: str, *, now: datetime | None = None) -> int: ...

    def due(self, digest_id: int, *, after_id: int, limit: int, now: datetime | None = None) -> list[PendingDelivery]: ...

    def writer(self, *, group: int = 1) -> AbstractContextManager[LedgerWrites]: ...

    def counts(self, digest_id: int) -> dict[str, int]: ...

    def waiting(self, digest_id: int, *, top: int = 3) -> Waiting: ...

    def expire_pending(self, digest_id: int, reason: str) -> int: ...
