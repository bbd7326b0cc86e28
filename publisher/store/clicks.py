"""Clicks on story links, per digest and story position (analytics.clicks). No reader is named."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from publisher.store.schema import click_events


class ClickLedger:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, digest_id: int, position: int, *, now: datetime | None = None) -> None:
        with self._engine.begin() as connection:
            connection.execute(click_events.insert().values(digest_id=digest_id, position=position,
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

    def per_story(self, digest_id: int) -> dict[int, int]:
        """position -> clicks, for one digest."""
        query = (
            select(click_events.c.position, func.count())
            .where(click_events.c.digest_id == digest_id)
            .group_by(click_events.c.position)
        )
        with self._engine.connect() as connection:
            return {int(r[0]): int(r[1]) for r in connection.execute(query)}
