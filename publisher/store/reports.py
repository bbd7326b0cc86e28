"""Read-only figures for the operator's console and /metrics: digests, the list, its growth, deliveries.

Every query aggregates in SQL (flat memory for any list) and is the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, and_, cast, func, or_, select
from sqlalchemy.engine import Engine

from publisher.models import DeliveryStatus, Subscriber, SubscriberStatus
from publisher.store.schema import deliveries, digests, subscriber_events, subscribers
from publisher.store.subscribers import _to_subscriber

PAGE_SIZE = 50


@dataclass(frozen=True)
class DigestFigures:
    id: int
    edition: str
    day: date
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    recipients: int
    sent: int = 0
    failed: int = 0
    deferred: int = 0  # pending, waiting for a retry or for the rest of the send
    skipped: int = 0
    bounced: int = 0  # recipients of this digest now bounced, whose status changed after it started
    complained: int = 0

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def duration_text(self) -> str:
        """"42 s", "3 min 5 s", "2 h 4 min"; empty while unfinished."""
        if self.duration is None:
            return ""
        seconds = max(0, round(self.duration.total_seconds()))
        if seconds < 60:
            return f"{seconds} s"
        if seconds < 3600:
            return f"{seconds // 60} min {seconds % 60} s"
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@dataclass(frozen=True)
class DailyGrowth:
    day: date
    joined: int = 0
    left: int = 0  # unsubscribed
    bounced: int = 0  # bounced or complained


@dataclass(frozen=True)
class ReceivedDigest:
    digest_id: int
    edition: str
    day: date
    status: str
    sent_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class StatusChange:
    at: datetime
    status: str
    reason: str | None


@dataclass
class SubscriberPage:
    subscribers: list[Subscriber] = field(default_factory=list)
    next_after: int | None = None  # the id to continue after, when there is more


def _day(value: Any) -> date:
    """A SQL date() result: a date on PostgreSQL, an ISO string on SQLite."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


class Reports:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def digests(self, *, limit: int = 20, digest_ids: Sequence[int] | None = None) -> list[DigestFigures]:
        """The newest digests with their delivery figures, newest first."""
        query = select(digests).order_by(digests.c.day.desc(), digests.c.id.desc()).limit(limit)
        if digest_ids is not None:
            query = query.where(digests.c.id.in_(list(digest_ids)))
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
            ids = [row.id for row in rows]
            counts: dict[int, dict[str, int]] = {i: {} for i in ids}
            if ids:
                for digest_id, status, number in connection.execute(
                    select(deliveries.c.digest_id, deliveries.c.status, func.count())
                    .where(deliveries.c.digest_id.in_(ids))
                    .group_by(deliveries.c.digest_id, deliveries.c.status)
                ):
                    counts[digest_id][status] = int(number)
                lost: dict[int, dict[str, int]] = {i: {} for i in ids}
                for digest_id, status, number in connection.execute(
                    select(deliveries.c.digest_id, subscribers.c.status, func.count())
                    .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                    .join(digests, digests.c.id == deliveries.c.digest_id)
                    .where(
                        deliveries.c.digest_id.in_(ids),
                        subscribers.c.status.in_([SubscriberStatus.BOUNCED.value, SubscriberStatus.COMPLAINED.value]),
                        or_(digests.c.started_at.is_(None), subscribers.c.updated_at >= digests.c.started_at),
                    )
                    .group_by(deliveries.c.digest_id, subscribers.c.status)
                ):
                    lost[digest_id][status] = int(number)
        figures = []
        for row in rows:
            c = counts.get(row.id, {})
            gone = lost.get(row.id, {}) if ids else {}
            figures.append(
                DigestFigures(
                    id=row.id,
                    edition=row.edition,
                    day=row.day,
                    status=row.status,
                    started_at=row.started_at,
                    finished_at=row.finished_at,
                    recipients=sum(c.values()) or int(row.recipients or 0),
                    sent=c.get(DeliveryStatus.SENT.value, 0),
                    failed=c.get(DeliveryStatus.FAILED.value, 0),
                    deferred=c.get(DeliveryStatus.PENDING.value, 0),
                    skipped=c.get(DeliveryStatus.SKIPPED.value, 0),
                    bounced=gone.get(SubscriberStatus.BOUNCED.value, 0),
                    complained=gone.get(SubscriberStatus.COMPLAINED.value, 0),
                )
            )
        return figures

    def digest(self, digest_id: int) -> DigestFigures | None:
        found = self.digests(limit=1, digest_ids=[digest_id])
        return found[0] if found else None

    def ledger_counts(self) -> dict[tuple[str, str], int]:
        """(edition, delivery status) -> ledger rows, over every digest."""
        query = (
            select(digests.c.edition, deliveries.c.status, func.count())
            .join(digests, digests.c.id == deliveries.c.digest_id)
            .group_by(digests.c.edition, deliveries.c.status)
        )
        with self._engine.connect() as connection:
            return {(str(r[0]), str(r[1])): int(r[2]) for r in connection.execute(query)}

    def last_finished(self) -> dict[str, tuple[datetime, datetime]]:
        """edition -> (started_at, finished_at) of its newest finished digest."""
        newest = (
            select(digests.c.edition, func.max(digests.c.finished_at).label("finished"))
            .where(digests.c.finished_at.is_not(None), digests.c.started_at.is_not(None))
            .group_by(digests.c.edition)
            .subquery()
        )
        query = select(digests.c.edition, digests.c.started_at, digests.c.finished_at).join(
            newest, and_(newest.c.edition == digests.c.edition, newest.c.finished == digests.c.finished_at)
        )
        with self._engine.connect() as connection:
            return {str(r[0]): (r[1], r[2]) for r in connection.execute(query)}

    def list_counts(self) -> dict[tuple[str, str], int]:
        """(language, status) -> subscribers."""
        query = select(subscribers.c.language, subscribers.c.status, func.count()).group_by(
            subscribers.c.language, subscribers.c.status
        )
        with self._engine.connect() as connection:
            return {(str(r[0]), str(r[1])): int(r[2]) for r in connection.execute(query)}

    def growth(self, *, days: int = 90, today: date | None = None) -> list[DailyGrowth]:
        """Per UTC day of the last `days`: subscribers who joined, left and bounced (or complained)."""
        today = today or datetime.now(UTC).date()
        first = today - timedelta(days=days - 1)
        since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
        joined: dict[date, int] = {}
        left: dict[date, int] = {}
        bounced: dict[date, int] = {}
        created_day = cast(func.date(subscribers.c.created_at), Date) if self._pg else func.date(subscribers.c.created_at)
        event_day = cast(func.date(subscriber_events.c.at), Date) if self._pg else func.date(subscriber_events.c.at)
        with self._engine.connect() as connection:
            for day, number in connection.execute(
                select(created_day, func.count()).where(subscribers.c.created_at >= since).group_by(created_day)
            ):
                joined[_day(day)] = int(number)
            for day, status, number in connection.execute(
                select(event_day, subscriber_events.c.status, func.count())
                .where(subscriber_events.c.at >= since)
                .group_by(event_day, subscriber_events.c.status)
            ):
                if status == SubscriberStatus.UNSUBSCRIBED.value:
                    left[_day(day)] = left.get(_day(day), 0) + int(number)
                elif status in (SubscriberStatus.BOUNCED.value, SubscriberStatus.COMPLAINED.value):
                    bounced[_day(day)] = bounced.get(_day(day), 0) + int(number)
        return [
            DailyGrowth(d, joined.get(d, 0), left.get(d, 0), bounced.get(d, 0))
            for d in (first + timedelta(days=i) for i in range(days))
        ]

    def deliveries_per_day(self, *, days: int = 90, today: date | None = None) -> list[tuple[date, int, int]]:
        """(UTC day, sent, failed) for the last `days` days."""
        today = today or datetime.now(UTC).date()
        first = today - timedelta(days=days - 1)
        since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
        moment = func.coalesce(deliveries.c.sent_at, deliveries.c.updated_at)
        day_of = cast(func.date(moment), Date) if self._pg else func.date(moment)
        sent: dict[date, int] = {}
        failed: dict[date, int] = {}
        with self._engine.connect() as connection:
            for day, status, number in connection.execute(
                select(day_of, deliveries.c.status, func.count())
                .where(moment >= since, deliveries.c.status.in_([DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value]))
                .group_by(day_of, deliveries.c.status)
            ):
                target = sent if status == DeliveryStatus.SENT.value else failed
                target[_day(day)] = int(number)
        return [(d, sent.get(d, 0), failed.get(d, 0)) for d in (first + timedelta(days=i) for i in range(days))]

    def search(
        self,
        text: str = "",
        *,
        status: str | None = None,
        language: str | None = None,
        after_id: int = 0,
        limit: int = PAGE_SIZE,
    ) -> SubscriberPage:
        """Subscribers whose address or name contains `text` (any case), in id order, a page at a time."""
        conditions = [subscribers.c.id > after_id]
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(
                or_(subscribers.c.email.ilike(pattern, escape="\\"), subscribers.c.name.ilike(pattern, escape="\\"))
            )
        if status:
            conditions.append(subscribers.c.status == status)
        if language:
            conditions.append(subscribers.c.language == language)
        query = select(subscribers).where(and_(*conditions)).order_by(subscribers.c.id).limit(limit + 1)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        page = SubscriberPage([_to_subscriber(row) for row in rows[:limit]])
        if len(rows) > limit:
            page.next_after = rows[limit - 1].id
        return page

    def received(self, subscriber_id: int, *, limit: int = 100) -> list[ReceivedDigest]:
        query = (
            select(digests.c.id, digests.c.edition, digests.c.day, deliveries.c.status, deliveries.c.sent_at,
                   deliveries.c.last_error)
            .join(digests, digests.c.id == deliveries.c.digest_id)
            .where(deliveries.c.subscriber_id == subscriber_id)
            .order_by(digests.c.day.desc(), digests.c.id.desc())
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [ReceivedDigest(r[0], r[1], r[2], r[3], r[4], r[5]) for r in connection.execute(query)]

    def status_changes(self, subscriber_id: int) -> list[StatusChange]:
        query = (
            select(subscriber_events.c.at, subscriber_events.c.status, subscriber_events.c.reason)
            .where(subscriber_events.c.subscriber_id == subscriber_id)
            .order_by(subscriber_events.c.at.desc(), subscriber_events.c.id.desc())
        )
        with self._engine.connect() as connection:
            return [StatusChange(r[0], r[1], r[2]) for r in connection.execute(query)]

    @property
    def _pg(self) -> bool:
        return self._engine.dialect.name == "postgresql"
