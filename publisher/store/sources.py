"""Machine state per source (ETag, last success, consecutive failures), kept apart from config."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from publisher.models import SourceState
from publisher.store.schema import source_states


class SourceStateRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, name: str) -> SourceState:
        with self._engine.connect() as connection:
            row = connection.execute(select(source_states).where(source_states.c.name == name)).first()
        if row is None:
            return SourceState(name=name)
        return SourceState(
            name=name,
            etag=row.etag,
            last_modified=row.last_modified,
            last_success_at=row.last_success_at,
            last_error=row.last_error,
            consecutive_failures=row.consecutive_failures,
            content_digest=row.content_digest,
        )

    def all(self) -> list[tuple[SourceState, datetime | None, int | None]]:
        """Every source's state, with when it last failed and how many items it last gave."""
        with self._engine.connect() as connection:
            rows = connection.execute(select(source_states).order_by(source_states.c.name)).all()
        return [
            (
                SourceState(
                    name=r.name,
                    etag=r.etag,
                    last_modified=r.last_modified,
                    last_success_at=r.last_success_at,
                    last_error=r.last_error,
                    consecutive_failures=r.consecutive_failures,
                    content_digest=r.content_digest,
                ),
                r.last_error_at,
                r.last_count,
            )
            for r in rows
        ]

    def _ensure(self, name: str) -> None:
        with self._engine.begin() as connection:
            if connection.execute(select(source_states.c.name).where(source_states.c.name == name)).first() is None:
                connection.execute(source_states.insert().values(name=name, consecutive_failures=0))

    def record_success(
        self,
        name: str,
        *,
        etag: str | None,
        last_modified: str | None,
        count: int,
        not_modified: bool = False,
        content_digest: str | None = None,
    ) -> None:
        """A fetch that worked. A not-modified answer keeps what the last full read recorded (its
        validators, item count and content digest)."""
        self._ensure(name)
        values: dict[str, object] = {
            "last_success_at": datetime.now(UTC),
            "consecutive_failures": 0,
            "last_error": None,
        }
        if not not_modified:
            values.update(etag=etag, last_modified=last_modified, last_count=count, content_digest=content_digest)
        with self._engine.begin() as connection:
            connection.execute(update(source_states).where(source_states.c.name == name).values(**values))

    def record_failure(self, name: str, error: str) -> int:
        """Returns the number of consecutive failures, this one included."""
        self._ensure(name)
        with self._engine.begin() as connection:
            connection.execute(
                update(source_states)
                .where(source_states.c.name == name)
                .values(
                    last_error=error,
                    last_error_at=datetime.now(UTC),
                    consecutive_failures=source_states.c.consecutive_failures + 1,
                )
            )
            return int(
                connection.execute(
                    select(source_states.c.consecutive_failures).where(source_states.c.name == name)
                ).scalar_one()
            )
