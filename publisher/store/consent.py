"""Consent bookkeeping for the web face: pending sign-ups, open confirmations, abuse limits.

Everything is kept in the store so that it works across processes: a pending subscriber is a
`subscribers` row with status pending; an open confirmation link and every rate-limited action are
`rate_events` rows (keys never hold an address or an IP in clear: callers pass hashes); a confirmation
asked for on the form and not yet sent is a `confirmation_outbox` row, claimed by one worker at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Connection, Engine

from publisher.models import SubscriberStatus
from publisher.store.schema import confirmation_outbox, rate_events, subscribers, suppressions
from publisher.store.subscribers import email_hash

OPEN_CONFIRMATION = "confirm-open"  # rate_events kind: a confirmation link that may still be used
# A confirmation is kept this long at most, whatever the link's own expiry says (config may change).
CONFIRMATION_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class PendingSignup:
    subscriber_id: int
    previous_status: SubscriberStatus | None  # None: the address was not on the list (or was forgotten)


@dataclass(frozen=True)
class QueuedConfirmation:
    id: int
    email: str
    name: str
    language: str
    sections: tuple[str, ...]
    attempts: int  # including the one just claimed
    subscriber_id: int | None  # set once the pending row and the link were made
    token: str | None


def client_key(value: str) -> str:
    """A stable, non-reversible key for an IP address or another client identifier."""
    return hashlib.sha256(b"client:" + value.encode("utf-8")).hexdigest()


def _token_key(subscriber_id: int, token: str) -> str:
    return f"{subscriber_id}:{hashlib.sha256(token.encode('utf-8')).hexdigest()[:40]}"


class ConsentRepository:
    """Sign-up, confirmation and unsubscription steps, each one transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # --- rate limits ------------------------------------------------------------------------------

    def allow(self, kind: str, key: str, *, limit: int, window: timedelta, now: datetime | None = None) -> bool:
        """Count one event of (kind, key) if fewer than `limit` happened within `window`; say whether it did.

        Two processes racing at the very edge of the limit may both pass once: the limit bounds abuse,
        it is not an exact quota.
        """
        now = now or datetime.now(UTC)
        since = now - window
        with self._engine.begin() as connection:
            connection.execute(
                delete(rate_events).where(rate_events.c.kind == kind, rate_events.c.key == key, rate_events.c.at < since)
            )
            used = connection.execute(
                select(func.count())
                .select_from(rate_events)
                .where(rate_events.c.kind == kind, rate_events.c.key == key, rate_events.c.at >= since)
            ).scalar_one()
            if used >= limit:
                return False
            connection.execute(rate_events.insert().values(kind=kind, key=key, at=now))
        return True

    def prune(self, older_than: timedelta, *, now: datetime | None = None) -> int:
        """Forget rate events older than `older_than` (open confirmations are kept CONFIRMATION_RETENTION)."""
        now = now or datetime.now(UTC)
        with self._engine.begin() as connection:
            result = connection.execute(
                delete(rate_events).where(
                    rate_events.c.kind != OPEN_CONFIRMATION, rate_events.c.at < now - older_than
                )
            )
            expired = connection.execute(
                delete(rate_events).where(
                    rate_events.c.kind == OPEN_CONFIRMATION, rate_events.c.at < now - CONFIRMATION_RETENTION
                )
            )
        return int(result.rowcount or 0) + int(expired.rowcount or 0)

    # --- sign-up ----------------------------------------------------------------------------------

    def prepare_pending(
        self, email: str, *, name: str, language: str, sections: Sequence[str], now: datetime | None = None
    ) -> PendingSignup:
        """The subscriber row a confirmation link will point to, made or refreshed now.

        A new (or forgotten) address gets a pending row; the suppression of a forgotten address stays
        until the link is used, so an import cannot re-add it meanwhile. A pending, unsubscribed,
        bounced or complained row keeps its status (only a confirmation changes it) and takes the
        choices of the form. An active row is left untouched.
        """
        now = now or datetime.now(UTC)
        email = email.strip().lower()
        values = {"name": name, "language": language, "sections": ",".join(sections), "updated_at": now}
        with self._engine.begin() as connection:
            row = connection.execute(select(subscribers.c.id, subscribers.c.status).where(subscribers.c.email == email)).first()
            if row is None:
                inserted = connection.execute(
                    subscribers.insert().values(
                        email=email, status=SubscriberStatus.PENDING.value, created_at=now, paused=False, **values
                    )
                )
                key = inserted.inserted_primary_key
                assert key is not None
                return PendingSignup(int(key[0]), None)
            status = SubscriberStatus(row.status)
            if status is not SubscriberStatus.ACTIVE:
                connection.execute(update(subscribers).where(subscribers.c.id == row.id).values(**values))
            return PendingSignup(int(row.id), status)

    # --- confirmation links -----------------------------------------------------------------------

    def open_confirmation(self, subscriber_id: int, token: str, *, now: datetime | None = None) -> None:
        """Remember that this link was sent: only remembered links confirm, each at most once."""
        with self._engine.begin() as connection:
            connection.execute(
                rate_events.insert().values(
                    kind=OPEN_CONFIRMATION, key=_token_key(subscriber_id, token), at=now or datetime.now(UTC)
                )
            )

    def is_open(self, subscriber_id: int, token: str) -> bool:
        with self._engine.connect() as connection:
            return (
                connection.execute(
                    select(rate_events.c.id).where(
                        rate_events.c.kind == OPEN_CONFIRMATION, rate_events.c.key == _token_key(subscriber_id, token)
                    )
                ).first()
                is not None
            )

    def confirm(self, subscriber_id: int, token: str, *, now: datetime | None = None) -> bool:
        """Use a confirmation link: the subscriber becomes active, a suppression of the address is lifted
        (this is a new consent), and every other open link of theirs is closed. False when this link is
        not open (never sent, used already, or closed by a later unsubscription)."""
        now = now or datetime.now(UTC)
        with self._engine.begin() as connection:
            closed = connection.execute(
                delete(rate_events).where(
                    rate_events.c.kind == OPEN_CONFIRMATION, rate_events.c.key == _token_key(subscriber_id, token)
                )
            )
            if not closed.rowcount:
                return False
            row = connection.execute(select(subscribers.c.email).where(subscribers.c.id == subscriber_id)).first()
            if row is None:
                return False
            connection.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(
                    status=SubscriberStatus.ACTIVE.value,
                    confirmed_at=now,
                    updated_at=now,
                    status_reason="confirmed by link",
                    paused=False,
                )
            )
            connection.execute(delete(suppressions).where(suppressions.c.email_hash == email_hash(row.email)))
            self._close_all(connection, subscriber_id)
        return True

    def unsubscribe(self, subscriber_id: int, *, reason: str, now: datetime | None = None) -> SubscriberStatus | None:
        """Stop mail to a subscriber at once; idempotent. Returns the status before, None if unknown.

        Active and pending rows become unsubscribed; bounced and complained ones keep their (stronger)
        status. Open confirmation links are closed either way, so an old link cannot undo this.
        """
        now = now or datetime.now(UTC)
        with self._engine.begin() as connection:
            row = connection.execute(select(subscribers.c.status).where(subscribers.c.id == subscriber_id)).first()
            if row is None:
                return None
            before = SubscriberStatus(row.status)
            if before in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
                connection.execute(
                    update(subscribers)
                    .where(
                        and_(
                            subscribers.c.id == subscriber_id,
                            subscribers.c.status.in_([SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value]),
                        )
                    )
                    .values(status=SubscriberStatus.UNSUBSCRIBED.value, updated_at=now, status_reason=reason)
                )
            self._close_all(connection, subscriber_id)
        return before

    def close_confirmations(self, subscriber_id: int) -> None:
        with self._engine.begin() as connection:
            self._close_all(connection, subscriber_id)

    @staticmethod
    def _close_all(connection: Connection, subscriber_id: int) -> None:
        connection.execute(
            delete(rate_events).where(
                rate_events.c.kind == OPEN_CONFIRMATION, rate_events.c.key.like(f"{subscriber_id}:%")
            )
        )

    # --- the confirmation outbox ------------------------------------------------------------------

    def queue_confirmation(
        self, email: str, *, name: str, language: str, sections: Sequence[str], now: datetime | None = None
    ) -> None:
        """One row, whatever the address: the worker decides what (if anything) to send."""
        now = now or datetime.now(UTC)
        with self._engine.begin() as connection:
            connection.execute(
                confirmation_outbox.insert().values(
                    email=email, name=name, language=language, sections=",".join(sections), created_at=now,
                    attempts=0, next_attempt_at=now,
                )
            )

    def claim_confirmations(
        self, *, lease: timedelta, limit: int = 20, now: datetime | None = None
    ) -> list[QueuedConfirmation]:
        """Due rows no other worker holds, each now held for `lease` (a worker that died lets go)."""
        now = now or datetime.now(UTC)
        free = or_(confirmation_outbox.c.claimed_until.is_(None), confirmation_outbox.c.claimed_until < now)
        claimed: list[QueuedConfirmation] = []
        with self._engine.begin() as connection:
            rows = connection.execute(
                select(confirmation_outbox)
                .where(confirmation_outbox.c.next_attempt_at <= now, free)
                .order_by(confirmation_outbox.c.id)
                .limit(limit)
            ).all()
            for row in rows:
                taken = connection.execute(
                    update(confirmation_outbox)
                    .where(confirmation_outbox.c.id == row.id, free)
                    .values(claimed_until=now + lease, attempts=confirmation_outbox.c.attempts + 1)
                )
                if taken.rowcount:
                    claimed.append(
                        QueuedConfirmation(
                            int(row.id), row.email, row.name, row.language,
                            tuple(s for s in row.sections.split(",") if s), int(row.attempts) + 1,
                            row.subscriber_id, row.token,
                        )
                    )
        return claimed

    def link_confirmation(self, queued_id: int, subscriber_id: int, token: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(confirmation_outbox)
                .where(confirmation_outbox.c.id == queued_id)
                .values(subscriber_id=subscriber_id, token=token)
            )

    def finish_confirmation(self, queued_id: int) -> None:
        with self._engine.begin() as connection:
            connection.execute(delete(confirmation_outbox).where(confirmation_outbox.c.id == queued_id))

    def retry_confirmation(self, queued_id: int, at: datetime) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(confirmation_outbox)
                .where(confirmation_outbox.c.id == queued_id)
                .values(next_attempt_at=at, claimed_until=None)
            )

    def queued_confirmations(self, *, due_by: datetime | None = None) -> int:
        """How many are waiting (all of them, or those due by `due_by` and not held by a worker)."""
        query = select(func.count()).select_from(confirmation_outbox)
        if due_by is not None:
            query = query.where(
                confirmation_outbox.c.next_attempt_at <= due_by,
                or_(confirmation_outbox.c.claimed_until.is_(None), confirmation_outbox.c.claimed_until < due_by),
            )
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())
