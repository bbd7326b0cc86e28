"""Reads for the bounce importer: which subscriber a delivery (named by a returned Message-ID) went to."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine

from publisher.store.schema import deliveries, subscribers


@dataclass(frozen=True)
class DeliveredTo:
    delivery_id: int
    digest_id: int
    subscriber_id: int
    email: str


class DeliveryLookup:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def recipient_of(self, digest_id: int, delivery_id: int) -> DeliveredTo | None:
        """The subscriber of that delivery, if the delivery exists and belongs to that digest."""
        query = (
            select(deliveries.c.id, deliveries.c.digest_id, deliveries.c.subscriber_id, subscribers.c.email)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(deliveries.c.id == delivery_id, deliveries.c.digest_id == digest_id)
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return DeliveredTo(row.id, row.digest_id, row.subscriber_id, row.email) if row else None
