"""Ledger rows held by one broker task at a time: PostgreSQL session advisory locks.

Two tasks can name the same rows (a broker redelivers a task whose worker is only slow, a coordinator
run again enqueues rows an earlier run's tasks still name). Each task locks its rows on a connection
of its own before it reads them; a row locked elsewhere is left to the task holding it. The lock lives
as long as that connection: a worker killed mid-task loses its connection and so its locks, and the
redelivered task can take the rows at once (a machine that vanished: once the server's keepalives
give up on it, ~25 s). Locks are keyed (LOCK_SPACE, delivery id).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Engine

from publisher.errors import StoreError

LOCK_SPACE = 0x50554231  # "PUB1": the first key of every delivery lock

_TRY = text(
    "SELECT id FROM unnest(CAST(:ids AS int4[])) AS id WHERE pg_try_advisory_lock(:space, id) ORDER BY id"
)


@contextmanager
def held_rows(engine: Engine, ids: Sequence[int]) -> Iterator[list[int]]:
    """Lock what can be locked of `ids` for the block; yields the ids this block holds."""
    if engine.dialect.name != "postgresql":
        raise StoreError("a broker's workers need the PostgreSQL store (store.url: postgresql+psycopg://...)")
    with engine.connect() as connection:
        # a worker machine that loses power sends no FIN: the server's keepalives end its session (and
        # free its rows) within ~25 s instead of the system default of hours
        for setting, value in (("tcp_keepalives_idle", 10), ("tcp_keepalives_interval", 5), ("tcp_keepalives_count", 3)):
            connection.execute(text(f"SET {setting} = {value}"))
        mine = [int(row[0]) for row in connection.execute(_TRY, {"ids": list(ids), "space": LOCK_SPACE})]
        connection.commit()
        try:
            yield mine
        finally:
            connection.execute(text("SELECT pg_advisory_unlock_all()"))
            connection.execute(text("RESET ALL"))
            connection.commit()
