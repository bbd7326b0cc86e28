"""The send engine's hot-path writer: the results of a send, committed in groups.

Each result is kept until `flush`, which writes the group in one transaction (the acceptances as one
statement) and commits. A group of acceptances alone (the common case) goes straight to the driver's
connection: through SQLAlchemy a commit of ~11 rows cost ~0.35 ms of Python on SQLite (the BEGIN
event, result set-up, ~40 µs a message, more than the statement) and more on PostgreSQL. The driver's
errors are translated here exactly as the engine's `handle_error` hook translates the others
(publisher.store.failures): a StoreError with the remedy, the rows of the group still pending.
"""

from __future__ import annotations

import time
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Connection

from publisher.models import DeliveryStatus
from publisher.store.failures import store_error
from publisher.store.schema import deliveries

__all__ = ["LedgerWriter", "sqlite_time"]

_SENT_VALUE, _PENDING_VALUE = DeliveryStatus.SENT.value, DeliveryStatus.PENDING.value

_SENT = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("delivery_id"), deliveries.c.status == _PENDING_VALUE)
    .values(
        status=_SENT_VALUE,
        provider_message_id=bindparam("provider_id"),
        sent_at=bindparam("now"),
        updated_at=bindparam("now"),
        attempts=deliveries.c.attempts + 1,
        last_error=None,
    )
)
_SENT_POSTGRESQL = (
    "UPDATE deliveries AS d SET status = %(sent)s, provider_message_id = v.pid, sent_at = v.at, updated_at = v.at,"
    " attempts = d.attempts + 1, last_error = NULL"
    " FROM unnest(%(ids)s::integer[], %(pids)s::text[], %(ats)s::timestamptz[]) AS v(id, pid, at)"
    " WHERE d.id = v.id AND d.status = %(pending)s"
)
_SENT_SQLITE = (
    f"UPDATE deliveries SET status = '{_SENT_VALUE}', provider_message_id = ?1, sent_at = ?2, updated_at = ?2,"
    f" attempts = attempts + 1, last_error = NULL WHERE id = ?3 AND status = '{_PENDING_VALUE}'"
)

_Sent = tuple[int, str | None, datetime]  # (delivery id, provider's message id, when)


class LedgerWriter:
    """One connection, one prepared statement, and commits in groups for the hot path.

    At `group` rows it flushes by itself. The engine flushes (from its committer thread, with more
    than one sender) once a group is due, and before it touches the store any other way. Until then
    a crash loses at most the group: those rows stay pending and are sent again, never lost. One
    round trip per message cost PostgreSQL two thirds of its speed; a group costs one.
    """

    def __init__(self, connection: Connection, *, group: int = 1) -> None:
        self._connection = connection
        self.group = max(1, group)
        self._sent: list[_Sent] = []
        self._other: list[tuple[int, dict[str, Any]]] = []
        self._first: float | None = None  # when the oldest unflushed result came
        self._dialect = connection.dialect.name
        self._where = connection.engine.url.render_as_string(hide_password=True)

    @property
    def unflushed(self) -> int:
        return len(self._sent) + len(self._other)

    def sent(self, delivery_id: int, provider_message_id: str | None) -> None:
        self._sent.append((delivery_id, provider_message_id, datetime.now(UTC)))
        self._added()

    def retry_at(self, delivery_id: int, error: str, when: datetime, *, count_attempt: bool = True) -> None:
        """Still pending, due again at `when`; count_attempt=False when the refusal was not about this row."""
        values: dict[str, Any] = {"last_error": error[:2000], "next_attempt_at": when}
        if count_attempt:
            values["attempts"] = deliveries.c.attempts + 1
        self._update(delivery_id, values)

    def failed(self, delivery_id: int, error: str, *, count_attempt: bool = True) -> None:
        values: dict[str, Any] = {"status": DeliveryStatus.FAILED.value, "last_error": error[:2000]}
        if count_attempt:
            values["attempts"] = deliveries.c.attempts + 1
        self._update(delivery_id, values)

    def skipped(self, delivery_id: int, reason: str) -> None:
        self._update(delivery_id, {"status": DeliveryStatus.SKIPPED.value, "last_error": reason[:2000]})

    def _update(self, delivery_id: int, values: dict[str, Any]) -> None:
        self._other.append((delivery_id, {"updated_at": datetime.now(UTC), **values}))
        self._added()

    def _added(self) -> None:
        if self._first is None:
            self._first = time.monotonic()
        if len(self._sent) + len(self._other) >= self.group:
            self.flush()

    def flush(self) -> None:
        """Write and commit what is kept; a failure raises StoreError and the group stays pending."""
        if self._first is None:
            return
        sent, other = self._sent, self._other
        self._sent, self._other, self._first = [], [], None
        if sent and not other and self._dialect in ("sqlite", "postgresql") and not self._connection.in_transaction():
            self._commit_sent_directly(sent)
            return
        if sent:
            self._write_sent(sent)
        for delivery_id, values in other:
            self._connection.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id, deliveries.c.status == _PENDING_VALUE)
                .values(**values)
            )
        self._connection.commit()

    def _write_sent(self, sent: list[_Sent]) -> None:
        """The acceptances in one statement (PostgreSQL: one round trip for the group, ids as arrays),
        or one executemany the driver runs in C (SQLite); SQLAlchemy's executemany costs ~100 µs of
        Python a row, more than building the message."""
        connection = self._connection
        if self._dialect == "postgresql":
            connection.exec_driver_sql(_SENT_POSTGRESQL, _postgresql_parameters(sent))
        elif self._dialect == "sqlite":
            connection.exec_driver_sql(_SENT_SQLITE, _sqlite_rows(sent))
        else:
            connection.execute(_SENT, [{"delivery_id": d, "provider_id": p, "now": t} for d, p, t in sent])

    def _commit_sent_directly(self, sent: list[_Sent]) -> None:
        """The group as one transaction on the driver's own connection (SQLAlchemy holds none open
        on it now); the driver's error becomes the StoreError the engine's hook would have raised."""
        raw: Any = self._connection.connection.driver_connection
        try:
            if self._dialect == "sqlite":
                raw.execute("BEGIN IMMEDIATE")  # as the store's begin event does (isolation_level None)
                raw.executemany(_SENT_SQLITE, _sqlite_rows(sent))
                raw.commit()
            else:
                # the group is one statement, so it can be its own transaction: one round trip, where
                # psycopg's BEGIN and the COMMIT were two more (CPU per commit ~700 -> ~400 µs here),
                # and as durable (synchronous_commit applies to it as to any commit)
                raw.autocommit = True
                try:
                    raw.execute(_SENT_POSTGRESQL, _postgresql_parameters(sent))
                finally:
                    with suppress(Exception):  # a connection that broke mid-statement refuses the switch
                        raw.autocommit = False
        except Exception as exc:  # noqa: BLE001 - the driver's error, mapped once as failures.py does
            with suppress(Exception):  # the connection may be gone; the error below says so
                raw.rollback()
            raise store_error(self._where, exc) from exc


def _postgresql_parameters(sent: list[_Sent]) -> dict[str, Any]:
    return {"ids": [row[0] for row in sent], "pids": [row[1] for row in sent], "ats": [row[2] for row in sent],
            "sent": _SENT_VALUE, "pending": _PENDING_VALUE}


def _sqlite_rows(sent: list[_Sent]) -> list[tuple[str | None, str, int]]:
    return [(provider_id, sqlite_time(at), delivery_id) for delivery_id, provider_id, at in sent]


def sqlite_time(moment: datetime) -> str:
    """An instant as SQLAlchemy's SQLite DateTime stores it (naive UTC, microseconds always written)."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S}.{utc.microsecond:06d}"
