"""Clicks on story links and loads of the open pixel, per digest (analytics.clicks, analytics.opens).

A subscriber is named only when the link carried one (analytics.per_subscriber); otherwise the rows
hold a digest, a story position and a time, nothing about the reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import distinct, func, select
from sqlalchemy.engine import Engine

from publisher.store.schema import articles, click_events, digest_articles, digests, open_events


@dataclass(frozen=True)
class ReaderClick:
    """One click of one subscriber, for their history page."""

    at: datetime
    digest_id: int
    edition: str
    day: date
    position: int
    title: str


@dataclass(frozen=True)
class Opens:
    total: int  # pixel loads (Apple Mail Privacy Protection loads every image it receives)
    unique: int  # distinct subscribers among them (0 unless analytics.per_subscriber)


class ClickLedger:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, digest_id: int, position: int, *, subscriber_id: int | None = None,
               now: datetime | None = None) -> None:
        with self._engine.begin() as connection:
            connection.execute(click_events.insert().values(digest_id=digest_id, position=position,
                                                            subscriber_id=subscriber_id,
                                                            at=now or datetime.now(UTC)))

    def record_open(self, digest_id: int, *, subscriber_id: int | None = None, now: datetime | None = None) -> None:
        with self._engine.begin() as connection:
            connection.execute(open_events.insert().values(digest_id=digest_id, subscriber_id=subscriber_id,
                                                           at=now or datetime.now(UTC)))

    def per_digest(self, digest_ids: Sequence[int]) -> dict[int, int]:
        if not digest_ids:
            return {}
        query = (
            select(click_events.c.digest_id, func.count())
            .where(click_events.c.digest_id.in_(list(digest_ids)))
            .group_by(click_events.c.digest_id)
        )
        with self._engine.connect() as connection:
            return {int(r[0]): int(r[1]) for r in connection.execute(query)}

    def opens(self, digest_ids: Sequence[int]) -> dict[int, Opens]:
        """digest id -> its opens; a digest nobody opened is absent."""
        if not digest_ids:
            return {}
        query = (
            select(open_events.c.digest_id, func.count(), func.count(distinct(open_events.c.subscriber_id)))
            .where(open_events.c.digest_id.in_(list(digest_ids)))
            .group_by(open_events.c.digest_id)
        )
        with self._engine.connect() as connection:
            return {int(r[0]): Opens(int(r[1]), int(r[2])) for r in connection.execute(query)}

    def per_story(self, digest_id: int) -> dict[int, int]:
        """position -> clicks, for one digest."""
        query = (
            select(click_events.c.position, func.count())
            .where(click_events.c.digest_id == digest_id)
            .group_by(click_events.c.position)
        )
        with self._engine.connect() as connection:
            return {int(r[0]): int(r[1]) for r in connection.execute(query)}

    def of_subscriber(self, subscriber_id: int, *, limit: int = 200) -> list[ReaderClick]:
        """One subscriber's clicks, newest first, with the story's title (recorded per subscriber only)."""
        story = digest_articles.alias("story")
        query = (
            select(click_events.c.at, click_events.c.digest_id, digests.c.edition, digests.c.day,
                   click_events.c.position, func.coalesce(articles.c.title, ""))
            .join(digests, digests.c.id == click_events.c.digest_id)
            .outerjoin(story, (story.c.digest_id == click_events.c.digest_id)
                       & (story.c.position == click_events.c.position - 1))  # stored from 0
            .outerjoin(articles, articles.c.pk == story.c.article_pk)
            .where(click_events.c.subscriber_id == subscriber_id)
            .order_by(click_events.c.at.desc(), click_events.c.id.desc())
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [ReaderClick(r[0], int(r[1]), str(r[2]), r[3], int(r[4]), str(r[5]))
                    for r in connection.execute(query)]

    def opens_of_subscriber(self, subscriber_id: int) -> dict[int, int]:
        """digest id -> how often this subscriber's copy loaded the pixel."""
        query = (
            select(open_events.c.digest_id, func.count())
            .where(open_events.c.subscriber_id == subscriber_id)
            .group_by(open_events.c.digest_id)
        )
        with self._engine.connect() as connection:
            return {int(r[0]): int(r[1]) for r in connection.execute(query)}
