"""The ledger of a channel's posts (publisher.pipeline.ledger.Ledger): one row per (digest, channel, part).

Like the delivery ledger: a post is marked sent only after Telegram answered with its message_id, and
committed at once, so a killed run posts again only the post in flight and a restart posts the rest.
The parts are planned from the digest's frozen articles; enqueue adds the missing ones and leaves the
rows that exist alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from publisher.models import DeliveryStatus, SubscriberStatus
from publisher.store.deliveries import PendingDelivery, Waiting
from publisher.store.schema import channel_posts

PENDING = DeliveryStatus.PENDING.value


class PostWriter:
    """The engine's write path for posts: each outcome, one commit."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def sent(self, delivery_id: int, provider_message_id: str | None) -> None:
        now = datetime.now(UTC)
        self._update(delivery_id, {"status": DeliveryStatus.SENT.value, "provider_message_id": provider_message_id,
                                   "sent_at": now, "attempts": channel_posts.c.attempts + 1, "last_error": None})

    def retry_at(self, delivery_id: int, error: str, when: datetime, *, count_attempt: bool = True) -> None:
        values: dict[str, Any] = {"last_error": error[:2000], "next_attempt_at": when}
        if count_attempt:
            values["attempts"] = channel_posts.c.attempts + 1
        self._update(delivery_id, values)

    def failed(self, delivery_id: int, error: str, *, count_attempt: bool = True) -> None:
        values: dict[str, Any] = {"status": DeliveryStatus.FAILED.value, "last_error": error[:2000]}
        if count_attempt:
            values["attempts"] = channel_posts.c.attempts + 1
        self._update(delivery_id, values)

    def skipped(self, delivery_id: int, reason: str) -> None:
        self._update(delivery_id, {"status": DeliveryStatus.SKIPPED.value, "last_error": reason[:2000]})

    def flush(self) -> None:
        """Nothing waits: every outcome was committed when it was written."""

    def _update(self, post_id: int, values: dict[str, Any]) -> None:
        self._connection.execute(
            update(channel_posts)
            .where(channel_posts.c.id == post_id, channel_posts.c.status == PENDING)
            .values(updated_at=datetime.now(UTC), **values)
        )
        self._connection.commit()


class ChannelPostLedger:
    """One channel's posts; `labels` is the plan (one per part, in posting order)."""

    def __init__(self, engine: Engine, channel: str, chat: str, labels: Sequence[str]) -> None:
        self._engine = engine
        self.channel = channel
        self.chat = chat
        self.labels = list(labels)
        self.parts: dict[int, int] = {}  # row id -> part, for the composer

    def _mine(self, digest_id: int) -> Any:
        return and_(channel_posts.c.digest_id == digest_id, channel_posts.c.channel == self.channel)

    def enqueue(self, digest_id: int, language: str, *, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        rows = [{"digest_id": digest_id, "channel": self.channel, "part": part, "label": label[:500],
                 "status": PENDING, "attempts": 0, "updated_at": now} for part, label in enumerate(self.labels)]
        if not rows:
            return 0
        insert = postgresql_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        statement = insert(channel_posts).values(rows).on_conflict_do_nothing(
            index_elements=["digest_id", "channel", "part"]
        )
        with self._engine.begin() as connection:
            return int(connection.execute(statement).rowcount or 0)

    def due(self, digest_id: int, *, after_id: int, limit: int, now: datetime | None = None) -> list[PendingDelivery]:
        """The next pending posts whose time has come, in part order, stopping at one still waiting."""
        now = now or datetime.now(UTC)
        # posts go in order: none after a post that waits for its retry
        waiting = (select(func.min(channel_posts.c.id))
                   .where(self._mine(digest_id), channel_posts.c.status == PENDING, channel_posts.c.next_attempt_at > now)
                   .scalar_subquery())
        query = (
            select(channel_posts)
            .where(self._mine(digest_id), channel_posts.c.status == PENDING, channel_posts.c.id > after_id,
                   or_(channel_posts.c.next_attempt_at.is_(None), channel_posts.c.next_attempt_at <= now),
                   or_(waiting.is_(None), channel_posts.c.id < waiting))
            .order_by(channel_posts.c.id)
            .limit(limit)
        )
        found = []
        with self._engine.connect() as connection:
            for r in connection.execute(query):
                self.parts[r.id] = r.part
                found.append(PendingDelivery(
                    id=r.id, subscriber_id=0, email=f"{self.chat} post {r.part + 1} ({r.label})", name=self.channel,
                    subscriber_status=SubscriberStatus.ACTIVE, paused=False, attempts=r.attempts,
                    last_error=r.last_error,
                ))
        return found

    @contextmanager
    def writer(self, *, group: int = 1) -> Iterator[PostWriter]:
        """Posts are few and each is committed at once: `group` is accepted and not needed."""
        with self._engine.connect() as connection:
            yield PostWriter(connection)

    def counts(self, digest_id: int) -> dict[str, int]:
        query = select(channel_posts.c.status, func.count()).where(self._mine(digest_id)).group_by(channel_posts.c.status)
        with self._engine.connect() as connection:
            found = {row[0]: int(row[1]) for row in connection.execute(query)}
        return {status.value: found.get(status.value, 0) for status in DeliveryStatus}

    def waiting(self, digest_id: int, *, top: int = 3) -> Waiting:
        pending = and_(self._mine(digest_id), channel_posts.c.status == PENDING)
        with self._engine.connect() as connection:
            count, first = connection.execute(
                select(func.count(), func.min(channel_posts.c.next_attempt_at)).where(pending)).one()
            reasons = connection.execute(
                select(channel_posts.c.last_error, func.count().label("rows")).where(pending)
                .group_by(channel_posts.c.last_error).order_by(func.count().desc()).limit(top)).all()
        if first is not None and first.tzinfo is None:  # SQLite gives naive UTC back
            first = first.replace(tzinfo=UTC)
        return Waiting(int(count or 0), first,
                       tuple((r.last_error or "not attempted yet", int(r.rows)) for r in reasons))

    def expire_pending(self, digest_id: int, reason: str) -> int:
        with self._engine.begin() as connection:
            result = connection.execute(
                update(channel_posts).where(self._mine(digest_id), channel_posts.c.status == PENDING)
                .values(status=DeliveryStatus.FAILED.value, last_error=reason, updated_at=datetime.now(UTC)))
            return result.rowcount or 0

    def posts(self, digest_id: int) -> list[tuple[int, str, str | None, str | None]]:
        """(part, status, provider_message_id, last_error) of every post, in part order."""
        query = (select(channel_posts.c.part, channel_posts.c.status, channel_posts.c.provider_message_id,
                        channel_posts.c.last_error).where(self._mine(digest_id)).order_by(channel_posts.c.part))
        with self._engine.connect() as connection:
            return [(r.part, r.status, r.provider_message_id, r.last_error) for r in connection.execute(query)]


def posts_due(engine: Engine, *, now: datetime | None = None) -> list[tuple[int, str]]:
    """(digest id, channel) of every channel whose next post in order may go now: its first pending
    post comes before the first one still waiting for its retry (or none waits). Posts behind a
    waiting one are not due, so a channel held back by a 429 is not run again before its time."""
    now = now or datetime.now(UTC)
    waiting = case((channel_posts.c.next_attempt_at > now, channel_posts.c.id))
    first_waiting = func.min(waiting)
    query = (
        select(channel_posts.c.digest_id, channel_posts.c.channel)
        .where(channel_posts.c.status == PENDING)
        .group_by(channel_posts.c.digest_id, channel_posts.c.channel)
        .having(or_(first_waiting.is_(None), func.min(channel_posts.c.id) < first_waiting))
        .order_by(channel_posts.c.digest_id)
    )
    with engine.connect() as connection:
        return [(int(r.digest_id), str(r.channel)) for r in connection.execute(query)]
