"""The store: SQLite by default, PostgreSQL by URL. Knows nothing of rendering or delivery."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from publisher.store.articles import ArticleRepository
from publisher.store.database import create_store_engine, upgrade_schema
from publisher.store.deliveries import DeliveryLedger, PendingDelivery
from publisher.store.digests import DigestConflict, DigestRecord, DigestRepository, DigestStatus
from publisher.store.jobs import JobRunRepository
from publisher.store.sources import SourceStateRepository
from publisher.store.subscribers import SubscriberRepository


class Store:
    """One engine and the repositories over it. Open with Store.open(url)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.articles = ArticleRepository(engine)
        self.subscribers = SubscriberRepository(engine)
        self.digests = DigestRepository(engine)
        self.deliveries = DeliveryLedger(engine)
        self.sources = SourceStateRepository(engine)
        self.jobs = JobRunRepository(engine)

    @classmethod
    def open(cls, url: str) -> Store:
        engine = create_store_engine(url)
        upgrade_schema(engine)
        return cls(engine)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    @property
    def shares_one_connection(self) -> bool:
        """An in-memory SQLite store: one connection for every thread, so no thread may have its own."""
        return isinstance(self.engine.pool, StaticPool)

    def close(self) -> None:
        self.engine.dispose()


__all__ = [
    "DeliveryLedger",
    "DigestConflict",
    "DigestRecord",
    "DigestStatus",
    "PendingDelivery",
    "Store",
]
