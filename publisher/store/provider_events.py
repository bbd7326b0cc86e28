"""What the provider webhooks need from the store: the replay ids they have seen, and whom a delivery
they name went to.

A replay id (Mailgun's signature token, SendGrid's sg_event_id, SNS's MessageId, a hash of a
Postmark body) is claimed once per provider, in the store, with the instant after which the
provider's own timestamp window refuses it anyway; so a captured request is refused after a restart
and by every process sharing the store, and the table never grows past one window's worth of events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from publisher.store.schema import deliveries, replay_ids, subscribers

MAX_REPLAY_ID = 200
PURGE_ONE_IN = 50  # expired rows are deleted now and then, cheaply (indexed on expires_at)


class ReplayIds:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def claim(self, provider: str, replay_id: str, *, expires_at: datetime, now: datetime | None = None) -> bool:
        """True the first time (provider, replay_id) is seen (or after its previous claim expired);
        False when it was seen and has not expired: a replay. Safe across threads and processes."""
        now = now or datetime.now(UTC)
        key = replay_id[:MAX_REPLAY_ID]
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    delete(replay_ids).where(
                        replay_ids.c.provider == provider, replay_ids.c.replay_id == key, replay_ids.c.expires_at <= now
                    )
                )
                connection.execute(replay_ids.insert().values(provider=provider, replay_id=key, expires_at=expires_at))
        except IntegrityError:
            return False
        if random.randrange(PURGE_ONE_IN) == 0:
            self.purge(now)
        return True

    def release(self, provider: str, replay_id: str) -> None:
        """Forget a claim whose event could not be applied, so the provider's retry is applied."""
        with self._engine.begin() as connection:
            connection.execute(
                delete(replay_ids).where(
                    replay_ids.c.provider == provider, replay_ids.c.replay_id == replay_id[:MAX_REPLAY_ID]
                )
            )

    def purge(self, now: datetime | None = None) -> int:
        with self._engine.begin() as connection:
            result = connection.execute(delete(replay_ids).where(replay_ids.c.expires_at <= (now or datetime.now(UTC))))
        return int(result.rowcount or 0)

    def count(self, provider: str | None = None) -> int:
        query = select(func.count()).select_from(replay_ids)
        if provider is not None:
            query = query.where(replay_ids.c.provider == provider)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())


@dataclass(frozen=True)
class Recipient:
    delivery_id: int
    digest_id: int
    email: str


class DeliveryRecipients:
    """Whom one of our deliveries went to, found by what a provider's event carries back."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def find(
        self, *, delivery_id: int | None = None, digest_id: int | None = None, provider_message_id: str | None = None
    ) -> Recipient | None:
        conditions = []
        if delivery_id is not None:
            conditions.append(deliveries.c.id == delivery_id)
            if digest_id is not None:
                conditions.append(deliveries.c.digest_id == digest_id)
        elif provider_message_id:
            id_in_angles = provider_message_id.strip("<>")
            conditions.append(
                or_(
                    deliveries.c.provider_message_id == id_in_angles,
                    deliveries.c.provider_message_id == f"<{id_in_angles}>",
                )
            )
        else:
            return None
        query = (
            select(deliveries.c.id, deliveries.c.digest_id, subscribers.c.email)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(*conditions)
            .limit(2)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        if len(rows) != 1:
            return None
        return Recipient(int(rows[0].id), int(rows[0].digest_id), str(rows[0].email))
