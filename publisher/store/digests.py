"""Digests: one row per edition and day, its frozen article list, its rendered content and its lease.

The lease decides which process sends a digest: a conditional UPDATE that works the same on SQLite
and PostgreSQL, so two `publisher serve` processes (or a manual run) never send the same digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError

from publisher.models import RenderedDigest
from publisher.store.schema import digest_articles, digest_variants, digests


@dataclass(frozen=True)
class DigestRecord:
    id: int
    edition: str
    day: date
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    recipients: int | None
    rendered: RenderedDigest | None
    note: str | None


class DigestStatus:
    SELECTED = "selected"  # articles frozen
    RENDERED = "rendered"  # content stored
    SENDING = "sending"  # ledger filled; deliveries going out
    DONE = "done"


def _to_record(row: Row[Any]) -> DigestRecord:
    m = row._mapping
    rendered = None
    if m["html"] is not None:
        rendered = RenderedDigest(
            subject=m["subject"],
            html=m["html"],
            text=m["text"],
            preheader=m["preheader"] or "",
            language=m["language"],
            direction=m["direction"],
        )
    return DigestRecord(
        id=m["id"],
        edition=m["edition"],
        day=m["day"],
        status=m["status"],
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        recipients=m["recipients"],
        rendered=rendered,
        note=m["note"],
    )


class DigestConflict(Exception):
    """Another process created the digest, or took one of its articles, at the same moment."""


class DigestRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def find(self, edition: str, day: date) -> DigestRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(digests).where(digests.c.edition == edition, digests.c.day == day)
            ).first()
        return _to_record(row) if row else None

    def get(self, digest_id: int) -> DigestRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(digests).where(digests.c.id == digest_id)).first()
        return _to_record(row) if row else None

    def previous_created_at(self, edition: str, day: date) -> datetime | None:
        """When the edition's latest digest before `day` was made: later arrivals are 'late'."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(digests.c.created_at)
                .where(digests.c.edition == edition, digests.c.day < day)
                .order_by(digests.c.day.desc())
                .limit(1)
            ).first()
        return row[0] if row else None

    def create(
        self, edition: str, day: date, language: str, article_pks: Sequence[int], *, now: datetime | None = None
    ) -> DigestRecord:
        """Freeze the digest's articles. Raises DigestConflict if another process won the race."""
        now = now or datetime.now(UTC)
        try:
            with self._engine.begin() as connection:
                key = connection.execute(
                    digests.insert().values(
                        edition=edition, day=day, status=DigestStatus.SELECTED, created_at=now, language=language
                    )
                ).inserted_primary_key
                assert key is not None
                digest_id = int(key[0])
                if article_pks:
                    connection.execute(
                        digest_articles.insert(),
                        [
                            {"digest_id": digest_id, "edition": edition, "article_pk": pk, "position": i}
                            for i, pk in enumerate(article_pks)
                        ],
                    )
        except IntegrityError as exc:
            raise DigestConflict(f"digest {edition} {day} was created concurrently") from exc
        record = self.get(digest_id)
        assert record is not None
        return record

    def save_rendered(self, digest_id: int, rendered: RenderedDigest) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(digests)
                .where(digests.c.id == digest_id, digests.c.html.is_(None))
                .values(
                    subject=rendered.subject,
                    html=rendered.html,
                    text=rendered.text,
                    preheader=rendered.preheader,
                    language=rendered.language,
                    direction=rendered.direction,
                    status=DigestStatus.RENDERED,
                )
            )

    def set_status(self, digest_id: int, status: str, **values: Any) -> None:
        with self._engine.begin() as connection:
            connection.execute(update(digests).where(digests.c.id == digest_id).values(status=status, **values))

    def claim(self, digest_id: int, owner: str, lease: timedelta, *, now: datetime | None = None) -> bool:
        """Take (or renew) the right to send this digest. True if we hold it now."""
        now = now or datetime.now(UTC)
        with self._engine.begin() as connection:
            result = connection.execute(
                update(digests)
                .where(
                    digests.c.id == digest_id,
                    or_(
                        digests.c.lease_owner.is_(None),
                        digests.c.lease_owner == owner,
                        digests.c.lease_until < now,
                    ),
                )
                .values(lease_owner=owner, lease_until=now + lease)
            )
            return bool(result.rowcount)

    def take_over(self, digest_id: int, dead_owner: str, owner: str, lease: timedelta) -> bool:
        """Take the lease from a holder known to be dead (its process is gone), atomically."""
        with self._engine.begin() as connection:
            result = connection.execute(
                update(digests)
                .where(digests.c.id == digest_id, digests.c.lease_owner == dead_owner)
                .values(lease_owner=owner, lease_until=datetime.now(UTC) + lease)
            )
            return bool(result.rowcount)

    def release(self, digest_id: int, owner: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(digests)
                .where(and_(digests.c.id == digest_id, digests.c.lease_owner == owner))
                .values(lease_owner=None, lease_until=None)
            )

    def lease_holder(self, digest_id: int) -> tuple[str | None, datetime | None]:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(digests.c.lease_owner, digests.c.lease_until).where(digests.c.id == digest_id)
            ).first()
        return (row[0], row[1]) if row else (None, None)

    def recent(self, limit: int = 20) -> list[DigestRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(digests).order_by(digests.c.day.desc(), digests.c.edition).limit(limit)
            ).all()
        return [_to_record(r) for r in rows]

    def sent_days(self, edition: str) -> list[date]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(digests.c.day)
                .where(digests.c.edition == edition, digests.c.html.is_not(None))
                .order_by(digests.c.day.desc())
            ).all()
        return [r[0] for r in rows]

    def is_newest(self, digest_id: int) -> bool:
        """No digest of the same edition for a later day exists: this one is still the current one."""
        this = digests.alias("this")
        later = (
            select(digests.c.id)
            .select_from(digests.join(this, and_(this.c.edition == digests.c.edition, digests.c.day > this.c.day)))
            .where(this.c.id == digest_id)
            .limit(1)
        )
        with self._engine.connect() as connection:
            return connection.execute(later).first() is None

    # --- frozen section variants (publisher.render.variants.VariantStore) ----------------------------

    def load_variant(self, digest_id: int, key: str) -> str | None:
        query = select(digest_variants.c.value).where(
            digest_variants.c.digest_id == digest_id, digest_variants.c.key == key
        )
        with self._engine.connect() as connection:
            value = connection.execute(query).scalar_one_or_none()
        return str(value) if value is not None else None

    def save_variant(self, digest_id: int, key: str, value: str) -> None:
        """Insert unless one is stored already: the first stored variant is the one everybody gets."""
        try:
            with self._engine.begin() as connection:
                connection.execute(digest_variants.insert().values(digest_id=digest_id, key=key, value=value))
        except IntegrityError:
            pass
