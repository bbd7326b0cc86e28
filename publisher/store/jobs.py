"""Scheduled slots: one row per (job, slot) decides who runs it, and keeps skipped slots visible."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from publisher.store.schema import job_runs


@dataclass(frozen=True)
class JobRun:
    job: str
    slot: datetime
    status: str
    owner: str | None
    started_at: datetime | None
    finished_at: datetime | None
    reason: str | None


class JobRunRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def start(self, job: str, slot: datetime, owner: str, *, status: str = "running", reason: str | None = None) -> bool:
        """Record the slot as ours. False if another process (or an earlier run) already has it."""
        values = {"job": job, "slot": slot, "status": status, "owner": owner, "started_at": datetime.now(UTC), "reason": reason}
        dialect = self._engine.dialect.name
        if dialect in ("postgresql", "sqlite"):
            # ON CONFLICT DO NOTHING: losing the race is normal here, not a server error to log
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            with self._engine.begin() as connection:
                inserted = connection.execute(
                    insert(job_runs).values(**values).on_conflict_do_nothing().returning(job_runs.c.id)
                ).first()
                return inserted is not None
        try:
            with self._engine.begin() as connection:
                connection.execute(job_runs.insert().values(**values))
        except IntegrityError:
            return False
        return True

    def finish(self, job: str, slot: datetime, status: str, reason: str | None = None) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(job_runs)
                .where(job_runs.c.job == job, job_runs.c.slot == slot)
                .values(status=status, finished_at=datetime.now(UTC), reason=reason)
            )

    def recent(self, limit: int = 20) -> list[JobRun]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(job_runs).order_by(job_runs.c.slot.desc()).limit(limit)).all()
        return [JobRun(r.job, r.slot, r.status, r.owner, r.started_at, r.finished_at, r.reason) for r in rows]
