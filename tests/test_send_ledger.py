"""The ledger's fill: idempotent on the (digest, subscriber) key, in list order; and PostgreSQL keeps
its own synchronous_commit, so a delivery marked sent survives a database server crash."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select, text

from publisher.errors import StoreError
from publisher.models import SubscriberStatus
from publisher.store import PendingDelivery, Store
from publisher.store.schema import deliveries, subscribers


def make_digest(store: Store) -> int:
    return store.digests.create("en", date(2024, 12, 2), "en", []).id


def three_pending(store: Store) -> tuple[int, list[PendingDelivery]]:
    """Three subscribers, a digest, its ledger filled: the digest's id and its three pending rows."""
    for i in range(3):
        store.subscribers.upsert(f"r{i}@example.org", language="en")
    digest = make_digest(store)
    assert store.deliveries.enqueue(digest, "en") == 3
    return digest, store.deliveries.due(digest, after_id=0, limit=10)


def test_enqueue_adds_only_the_missing_rows_in_subscriber_order(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        for i in (4, 0, 5, 2, 1, 3):
            store.subscribers.upsert(f"r{i}@example.org", language="en")
        ids = sorted(store.subscribers.by_email(f"r{i}@example.org").id for i in range(6))  # type: ignore[union-attr]
        store.subscribers.upsert("gone@example.org", language="en", status=SubscriberStatus.UNSUBSCRIBED)
        digest = make_digest(store)
        with store.engine.begin() as connection:  # one row there already, as after a killed fill
            connection.execute(deliveries.insert().values(digest_id=digest, subscriber_id=ids[3], status="sent",
                                                          attempts=1, updated_at=datetime.now(UTC)))
        assert store.deliveries.enqueue(digest, "en") == 5
        assert store.deliveries.enqueue(digest, "en") == 0  # again: nothing added, nothing raised
        with store.engine.connect() as connection:
            rows = connection.execute(select(deliveries.c.subscriber_id, deliveries.c.status)
                                      .where(deliveries.c.digest_id == digest).order_by(deliveries.c.id)).all()
        assert [r.subscriber_id for r in rows] == [ids[3], *(i for i in ids if i != ids[3])]
        assert dict(rows)[ids[3]] == "sent"  # the existing row was left alone
    finally:
        store.close()


def test_postgres_store_keeps_the_servers_synchronous_commit(postgres_url: str) -> None:
    store = Store.open(postgres_url)
    plain = create_engine(postgres_url)
    try:
        with store.engine.connect() as ours, plain.connect() as theirs:
            setting = ours.execute(text("SHOW synchronous_commit")).scalar_one()
            assert setting == theirs.execute(text("SHOW synchronous_commit")).scalar_one()
    finally:
        store.close()
        plain.dispose()


def test_two_fills_racing_on_postgres_do_not_collide(postgres_url: str) -> None:
    """A fill that meets a row another transaction is inserting waits for it, then skips it (no unique violation)."""
    store = Store.open(postgres_url)
    try:
        for i in range(4):
            store.subscribers.upsert(f"r{i}@example.org", language="en")
        first = store.subscribers.by_email("r0@example.org")
        assert first is not None
        digest = make_digest(store)
        other = store.engine.connect()
        other.begin()
        other.execute(deliveries.insert().values(digest_id=digest, subscriber_id=first.id, status="pending",
                                                 attempts=0, updated_at=datetime.now(UTC)))
        result: dict[str, object] = {}

        def fill() -> None:
            try:
                result["added"] = store.deliveries.enqueue(digest, "en")
            except Exception as exc:  # what the test looks for
                result["error"] = exc

        thread = threading.Thread(target=fill)
        thread.start()
        waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
        with store.engine.connect() as watcher:

            def lock_waits() -> int:
                # pg_stat_activity is a snapshot per transaction: a fresh transaction for every look
                count = int(watcher.execute(waiting).scalar_one())
                watcher.rollback()
                return count

            deadline = time.monotonic() + 30
            while lock_waits() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert lock_waits() == 1, "the fill never waited for the other insert"
        other.commit()
        other.close()
        thread.join(30)
        assert result == {"added": 3}
    finally:
        store.close()


def test_a_group_of_acceptances_is_written_as_sent_with_its_ids_and_times(store_url: str) -> None:
    """The writer's one-statement path (arrays on PostgreSQL, the driver's executemany on SQLite) reads
    back through the same columns as any other write: status, provider id, aware sent_at, attempts;
    a row no longer pending is left alone."""
    store = Store.open(store_url)
    try:
        digest, rows = three_pending(store)
        with store.engine.begin() as connection:  # the third is already failed: a sent must not touch it
            connection.execute(deliveries.update().where(deliveries.c.id == rows[2].id).values(status="failed"))
        before = datetime.now(UTC)
        with store.deliveries.writer(group=10) as writer:
            writer.sent(rows[0].id, "queue-1")
            writer.sent(rows[1].id, None)
            writer.sent(rows[2].id, "queue-3")
        with store.engine.connect() as connection:
            found = {r.id: r for r in connection.execute(select(deliveries).where(deliveries.c.digest_id == digest))}
        first, second, third = (found[row.id] for row in rows)
        assert (first.status, first.provider_message_id, first.attempts, first.last_error) == ("sent", "queue-1", 1, None)
        assert (second.status, second.provider_message_id) == ("sent", None)
        assert first.sent_at is not None and before <= first.sent_at <= datetime.now(UTC)
        assert first.sent_at.tzinfo is not None and first.updated_at == first.sent_at
        assert (third.status, third.provider_message_id, third.attempts) == ("failed", None, 0)
        assert store.deliveries.counts(digest)["sent"] == 2
    finally:
        store.close()


def test_a_group_of_acceptances_the_store_refuses_is_a_store_error_and_stays_pending(store_url: str) -> None:
    """The acceptances alone go to the driver's connection directly (no SQLAlchemy per commit): the
    driver's error still reaches the engine as StoreError with its remedy, not the SQL or the ids,
    and nothing of the group is committed. PostgreSQL: the writer's server process is terminated;
    SQLite: the writer's connection turned read-only."""
    store = Store.open(store_url)
    try:
        digest, rows = three_pending(store)
        with pytest.raises(StoreError) as caught, store.deliveries.writer(group=10) as writer:
            connection = writer._connection  # noqa: SLF001 - the writer's own connection, broken on purpose
            if store_url.startswith("postgresql"):
                pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
                connection.commit()
                with store.engine.connect() as admin:
                    admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                    admin.commit()
            else:
                connection.connection.driver_connection.execute("PRAGMA query_only=1")  # type: ignore[union-attr]
            for row in rows:
                writer.sent(row.id, f"queue-{row.id}")
        message = str(caught.value)
        assert message.startswith("the store at ") and "hint:" in message
        assert "UPDATE" not in message and "queue-" not in message
        again = Store.open(store_url)  # a store of its own: the broken connection went back to the pool
        try:
            assert again.deliveries.counts(digest)["pending"] == 3
        finally:
            again.close()
    finally:
        store.close()


def test_due_reads_the_same_rows_on_the_driver_cursor_as_through_sqlalchemy(store_url: str) -> None:
    """`due` reads a digest's rows on the driver's own cursor (the claimer's hot path); a broker
    task's `ids` go through SQLAlchemy. Both give the same rows: retry times to come left out, a
    paused or bounced subscriber, chosen sections, the last error, non-ASCII names."""
    store = Store.open(store_url)
    try:
        for i in range(6):
            store.subscribers.upsert(f"r{i}@example.org", name=f"قارئ {i}", language="en",
                                     sections=("politics", "sport") if i == 1 else ())
        digest = make_digest(store)
        store.deliveries.enqueue(digest, "en")
        rows = store.deliveries.due(digest, after_id=0, limit=10)
        now = datetime.now(UTC)
        with store.engine.begin() as connection:
            connection.execute(deliveries.update().where(deliveries.c.id == rows[2].id)
                               .values(next_attempt_at=now + timedelta(hours=1), last_error="451 later"))
            connection.execute(deliveries.update().where(deliveries.c.id == rows[3].id)
                               .values(next_attempt_at=now - timedelta(minutes=1), last_error="451 greylisted", attempts=1))
            connection.execute(subscribers.update().where(subscribers.c.id == rows[4].subscriber_id).values(paused=True))
            connection.execute(subscribers.update().where(subscribers.c.id == rows[5].subscriber_id)
                               .values(status=SubscriberStatus.BOUNCED.value))
        direct = store.deliveries.due(digest, after_id=rows[0].id, limit=10, now=now)
        through = store.deliveries.due(digest, after_id=rows[0].id, limit=10, now=now, ids=[row.id for row in rows])
        assert direct == through
        assert [row.id for row in direct] == [rows[1].id, rows[3].id, rows[4].id, rows[5].id]
        second, retried, paused, bounced = direct
        assert second.sections == ("politics", "sport") and second.name == "قارئ 1"
        assert (retried.attempts, retried.last_error) == (1, "451 greylisted")
        assert paused.paused and not second.paused
        assert bounced.subscriber_status is SubscriberStatus.BOUNCED
        assert store.deliveries.due(digest, after_id=rows[0].id, limit=2, now=now) == direct[:2]
    finally:
        store.close()


def test_a_ledger_read_the_store_refuses_on_the_driver_cursor_is_a_store_error(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        store.subscribers.upsert("r@example.org", language="en")
        digest = make_digest(store)
        store.deliveries.enqueue(digest, "en")
        with store.engine.begin() as connection:
            connection.execute(text("ALTER TABLE subscribers RENAME TO subscribers_gone"))
        with pytest.raises(StoreError) as caught:
            store.deliveries.due(digest, after_id=0, limit=10)
        message = str(caught.value)
        assert message.startswith("the store at ") and "hint:" in message and "SELECT" not in message
    finally:
        store.close()


@pytest.mark.postgres
def test_a_group_of_acceptances_is_its_own_transaction_and_the_connection_is_transactional_again(postgres_url: str) -> None:
    """On PostgreSQL the group is one statement in autocommit (one round trip, not three); after it the
    writer's connection is back to transactions, so a mixed group (acceptances and a retry) is atomic."""
    store = Store.open(postgres_url)
    try:
        digest, rows = three_pending(store)
        with store.deliveries.writer(group=10) as writer:
            writer.sent(rows[0].id, "queue-1")
            writer.flush()
            raw = writer._connection.connection.driver_connection  # noqa: SLF001 - the writer's own connection
            assert raw is not None and raw.autocommit is False
            assert store.deliveries.counts(digest)["sent"] == 1  # committed: another connection sees it
            writer.sent(rows[1].id, "queue-2")
            writer.retry_at(rows[2].id, "451 later", datetime.now(UTC) + timedelta(minutes=5))
        counts = store.deliveries.counts(digest)
        assert (counts["sent"], counts["pending"]) == (2, 1)
    finally:
        store.close()
