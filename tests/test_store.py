"""The store, on SQLite and on PostgreSQL: the same code, the same answers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from publisher.models import Article, DeliveryStatus, SubscriberStatus
from publisher.selection import day_bounds
from publisher.store import DigestConflict, Store, schema

DAMASCUS = ZoneInfo("Asia/Damascus")


def article(uid: str, published: datetime, *, language: str = "en", updated: datetime | None = None, title: str = "T") -> Article:
    return Article(
        id=uid,
        url=f"https://news.example.org/{uid}",
        title=title,
        language=language,
        published_at=published,
        updated_at=updated or published,
        source_name="test",
    )


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 12, day, hour, minute, tzinfo=DAMASCUS).astimezone(UTC)


def schema_versions(store: Store) -> list[int]:
    with store.engine.connect() as connection:
        return [row[0] for row in connection.execute(select(schema.schema_version.c.version).order_by("version"))]


def test_schema_upgrade_is_idempotent(store: Store, store_url: str) -> None:
    newest = len(schema.MIGRATIONS)
    assert schema_versions(store) == list(range(1, newest + 1))
    store.subscribers.upsert("kept@example.org", language="en")
    for _ in range(2):  # a second and a third open must not fail, migrate again or duplicate the version row
        again = Store.open(store_url)
        try:
            with again.engine.begin() as connection:
                assert schema.upgrade(connection) == newest
            assert schema_versions(again) == list(range(1, newest + 1))
        finally:
            again.close()
    assert store.ping()
    assert store.subscribers.by_email("kept@example.org") is not None, "reopening kept the data"


def test_upsert_deduplicates_and_newer_version_replaces(store: Store) -> None:
    first = article("a1", local(2, 9), title="Old title")
    counts = store.articles.upsert([first, article("a2", local(2, 10))])
    assert (counts.new, counts.updated) == (2, 0)
    newer = article("a1", local(2, 9), updated=local(2, 11), title="New title")
    counts = store.articles.upsert([newer, first])  # the same article from another source, older
    assert (counts.new, counts.updated, counts.unchanged) == (0, 1, 1)
    [stored] = [a for a in store.articles.latest("en", 10) if a.id == "a1"]
    assert stored.title == "New title"
    assert stored.published_at == local(2, 9) and stored.published_at.tzinfo is not None


def test_day_boundary_in_site_timezone(store: Store) -> None:
    # 00:10 in Damascus on the 2nd is still the 1st in UTC; 23:30 on the 1st is the 1st everywhere
    store.articles.upsert([article("early", local(2, 0, 10)), article("late-evening", local(1, 23, 30))])
    start, end = day_bounds(date(2024, 12, 2), DAMASCUS)
    assert local(2, 0, 10).date() == date(2024, 12, 1)  # UTC says the 1st...
    found = store.articles.candidates(edition="en", language="en", day_start=start, day_end=end, late_since=None)
    assert [a.id for _, a in found] == ["early"]  # ...the site's day says the 2nd


def test_article_is_never_in_two_digests_of_one_edition(store: Store) -> None:
    store.articles.upsert([article("x", local(2, 9))])
    start, end = day_bounds(date(2024, 12, 2), DAMASCUS)
    [(pk, _)] = store.articles.candidates(edition="en", language="en", day_start=start, day_end=end, late_since=None)
    store.digests.create("en", date(2024, 12, 2), "en", [pk])
    with pytest.raises(DigestConflict):
        store.digests.create("en", date(2024, 12, 3), "en", [pk])
    assert store.digests.find("en", date(2024, 12, 3)) is None  # the failed create left nothing behind
    # another edition may carry it
    store.digests.create("en-weekly", date(2024, 12, 2), "en", [pk])


def test_late_article_goes_to_the_next_digest(store: Store) -> None:
    store.articles.upsert([article("on-time", local(2, 9))], now=local(2, 9, 5))
    start, end = day_bounds(date(2024, 12, 2), DAMASCUS)
    [(pk, _)] = store.articles.candidates(edition="en", language="en", day_start=start, day_end=end, late_since=None)
    created = store.digests.create("en", date(2024, 12, 2), "en", [pk], now=local(3, 7))
    # published on the 2nd, but reached us after the digest of the 2nd was made
    store.articles.upsert([article("late", local(2, 22))], now=local(3, 8))
    start3, end3 = day_bounds(date(2024, 12, 3), DAMASCUS)
    late_since = store.digests.previous_created_at("en", date(2024, 12, 3))
    assert late_since == created.created_at
    found = store.articles.candidates(edition="en", language="en", day_start=start3, day_end=end3, late_since=late_since)
    assert [a.id for _, a in found] == ["late"]


def test_import_never_reactivates_sticky_statuses(store: Store) -> None:
    assert store.subscribers.upsert("A@Example.org", name="A", language="en") == "added"
    subscriber = store.subscribers.by_email("a@example.org")
    assert subscriber is not None and subscriber.status is SubscriberStatus.ACTIVE
    store.subscribers.set_status(subscriber.id, SubscriberStatus.UNSUBSCRIBED)
    assert store.subscribers.upsert("a@example.org", name="A", language="en") == "kept"
    assert store.subscribers.by_email("a@example.org").status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    assert store.subscribers.remove("a@example.org")
    assert store.subscribers.upsert("a@example.org", name="A", language="en") == "suppressed"
    assert store.subscribers.by_email("a@example.org") is None


def test_ledger_enqueues_once_and_streams_in_batches(store: Store) -> None:
    for i in range(7):
        store.subscribers.upsert(f"s{i}@example.org", language="en")
    store.subscribers.upsert("arabic@example.org", language="ar")
    store.subscribers.upsert("gone@example.org", language="en", status=SubscriberStatus.UNSUBSCRIBED)
    store.articles.upsert([article("x", local(2, 9))])
    digest = store.digests.create("en", date(2024, 12, 2), "en", [])
    assert store.deliveries.enqueue(digest.id, "en") == 7
    assert store.deliveries.enqueue(digest.id, "en") == 0  # a second run adds nobody twice
    first = store.deliveries.due(digest.id, after_id=0, limit=3)
    second = store.deliveries.due(digest.id, after_id=first[-1].id, limit=3)
    assert len(first) == 3 and len(second) == 3 and first[-1].id < second[0].id
    with store.deliveries.writer(group=10) as writer:  # the engine's one write path, grouped
        writer.sent(first[0].id, "queue-1")
        writer.failed(first[1].id, "550 no such user")
        writer.retry_at(first[2].id, "451 try later", datetime.now(UTC) + timedelta(hours=1))
        assert writer.unflushed == 3
        writer.flush()
    counts = store.deliveries.counts(digest.id)
    assert counts == {"pending": 5, "sent": 1, "failed": 1, "skipped": 0}
    # the deferred one is not due yet; sent and failed are never due again
    due_ids = {d.id for d in store.deliveries.due(digest.id, after_id=0, limit=100)}
    assert first[0].id not in due_ids and first[1].id not in due_ids and first[2].id not in due_ids
    with store.deliveries.writer() as writer:
        writer.sent(first[0].id, "again")  # a sent row is final: no second transition
    assert store.deliveries.counts(digest.id)[DeliveryStatus.SENT.value] == 1


def test_lease_has_one_holder_until_it_expires(store: Store) -> None:
    digest = store.digests.create("en", date(2024, 12, 2), "en", [])
    now = datetime.now(UTC)
    assert store.digests.claim(digest.id, "proc-a", timedelta(minutes=2), now=now)
    assert not store.digests.claim(digest.id, "proc-b", timedelta(minutes=2), now=now + timedelta(seconds=30))
    assert store.digests.claim(digest.id, "proc-a", timedelta(minutes=2), now=now + timedelta(seconds=60))  # renew
    assert store.digests.claim(digest.id, "proc-b", timedelta(minutes=2), now=now + timedelta(minutes=5))  # expired
    store.digests.release(digest.id, "proc-a")  # not the holder: no effect
    assert store.digests.lease_holder(digest.id)[0] == "proc-b"


def test_job_slot_is_taken_once(store: Store) -> None:
    slot = datetime(2024, 12, 3, 5, 0, tzinfo=UTC)
    assert store.jobs.start("digest:en", slot, "a")
    assert not store.jobs.start("digest:en", slot, "b")
    store.jobs.finish("digest:en", slot, "done")
    assert store.jobs.recent(1)[0].status == "done"


def test_two_writers_collecting_the_same_articles_at_once(store_url: str) -> None:
    """Two services collecting the same feed at the same moment: no error, each article stored once."""
    import threading

    batch = [article(f"race-{i}", local(2, 9)) for i in range(150)]
    errors: list[BaseException] = []
    stores = [Store.open(store_url), Store.open(store_url)]
    barrier = threading.Barrier(2)

    def collect(target: Store) -> None:
        barrier.wait()
        try:
            target.articles.upsert(batch)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=collect, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert stores[0].articles.count() == 150
    for opened in stores:
        opened.close()


def test_subscribers_leave_room_for_hot_updates_after_an_upgrade(store_url: str) -> None:
    """A store made before the fillfactor migration gets it when opened; a no-op on SQLite."""
    from sqlalchemy import delete, text

    store = Store.open(store_url)
    store.subscribers.upsert("kept@example.org", language="en")
    postgres = store.engine.dialect.name == "postgresql"
    with store.engine.begin() as connection:  # the schema as the previous version left it
        if postgres:
            connection.execute(text("ALTER TABLE subscribers RESET (fillfactor)"))
        connection.execute(delete(schema.schema_version).where(schema.schema_version.c.version == len(schema.MIGRATIONS)))
    store.close()
    again = Store.open(store_url)
    try:
        assert schema_versions(again) == list(range(1, len(schema.MIGRATIONS) + 1))
        if postgres:
            with again.engine.connect() as connection:
                options = connection.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'subscribers'")).scalar()
            assert options == [f"fillfactor={schema.SUBSCRIBERS_FILLFACTOR}"]
        assert again.subscribers.by_email("kept@example.org") is not None
    finally:
        again.close()
