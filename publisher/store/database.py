"""Opening the store: one engine, SQLite by default, PostgreSQL by URL; schema upgraded on open."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from publisher.errors import StoreError
from publisher.store import schema
from publisher.store.failures import translate_errors

log = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, issue BEGIN (see _sqlite_begin); savepoints work then.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets a reader (status, web) work while a sender writes; busy_timeout lets two processes
    # take turns instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front: two processes reading then writing (collect in
    # a service and in a manual run) wait for each other under busy_timeout instead of one failing
    # with "database is locked" when its read transaction tries to become a write.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_store_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            database = url.split("///", 1)[1] if "///" in url else ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, poolclass=StaticPool if database in ("", ":memory:") else None)
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        else:
            # PostgreSQL keeps its own synchronous_commit (on by default): a delivery marked sent
            # survives a crash of the database server too, not only of this process. An operator who
            # accepts losing the last commits can say so in store.url: ?options=-csynchronous_commit%3Doff
            engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"cannot open the store at {url!r}: {exc} (hint: check store.url in config.yaml)") from exc
    translate_errors(engine)
    return engine


def upgrade_schema(engine: Engine) -> int:
    """Create or upgrade the schema. Two processes starting at once may race: the loser re-reads."""
    for attempt in range(3):
        try:
            with engine.begin() as connection:
                return schema.upgrade(connection)
        except IntegrityError:
            if attempt == 2:
                raise
    raise StoreError("schema upgrade did not settle")
