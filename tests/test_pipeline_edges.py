"""The send and feed stages where they give up, lose their lease or cannot build a message.

In-memory transport, a real store (SQLite); the lease is observed in the store itself.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import publisher.pipeline.send as send
from publisher.config import Config
from publisher.delivery.mail import InMemoryTransport
from publisher.models import OutgoingMessage, SendReport
from publisher.pipeline import collect, run_day, run_digests
from publisher.store import Store
from publisher.store.schema import deliveries, digests

DAY = date(2024, 12, 2)
READERS = [f"en{i}@example.org" for i in range(6)]


@pytest.fixture
def world(config_factory: Any, tmp_path: Path) -> Iterator[tuple[Config, Store]]:
    config: Config = config_factory(store_url=f"sqlite:///{tmp_path / 'store.db'}")
    store = Store.open(config.store_url)
    for email in READERS:
        store.subscribers.upsert(email, language="en")
    report = collect(config, store)
    assert not report.errors, report.errors
    yield config, store
    store.close()


def with_mail(config: Config, **changes: Any) -> Config:
    retry = changes.pop("retry", None)
    mail = config.mail.model_copy(update=changes)
    if retry:
        mail = mail.model_copy(update={"retry": mail.retry.model_copy(update=retry)})
    return config.model_copy(update={"mail": mail})


def ledger(store: Store, digest_id: int) -> dict[str, tuple[str, str | None]]:
    """email -> (status, last error) for one digest, read from the table itself."""
    from publisher.store.schema import subscribers

    query = (
        select(subscribers.c.email, deliveries.c.status, deliveries.c.last_error)
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.digest_id == digest_id)
    )
    with store.engine.connect() as connection:
        return {row.email: (row.status, row.last_error) for row in connection.execute(query)}


def digest_id(store: Store) -> int:
    record = store.digests.find("en", DAY)
    assert record is not None
    return record.id


# --- retries ------------------------------------------------------------------------------------


def test_a_temporary_failure_is_given_up_after_max_attempts(world: tuple[Config, Store]) -> None:
    config, store = world
    config = with_mail(config, retry={"max_attempts": 3, "first_delay": 0})
    transport = InMemoryTransport()
    transport.fail("en1@example.org", temporary=True, error="451 4.3.0 try again later")
    outcomes = []
    for _ in range(3):
        [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
        assert outcome.send is not None
        outcomes.append((outcome.send.deferred, outcome.send.failed))
    # attempt 1 and 2 in the first run (a due retry is tried again within the run while others were
    # accepted), attempt 3 in the second: given up; the third run has nothing left to do
    assert outcomes == [(1, 0), (0, 1), (0, 0)], "deferred, then given up at the third attempt"
    status, error = ledger(store, digest_id(store))["en1@example.org"]
    assert status == "failed"
    assert error == "gave up after 3 attempts: 451 4.3.0 try again later"
    assert store.digests.find("en", DAY).status == "done"  # type: ignore[union-attr]
    # a fourth run tries nobody again
    [after] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert after.send is not None and (after.send.sent, after.send.failed) == (0, 0)
    assert transport.recipients.count("en1@example.org") == 0
    assert sorted(transport.recipients) == [r for r in READERS if r != "en1@example.org"]


# --- the lease ----------------------------------------------------------------------------------


class HookedTransport(InMemoryTransport):
    """Calls `before_each(number)` before each send() (1-based), inside the send loop."""

    def __init__(self, before_each: Any) -> None:
        super().__init__()
        self.before_each = before_each
        self.calls = 0

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport:
        self.calls += 1
        self.before_each(self.calls)
        return super().send(batch)


def steal_lease(store: Store, record_id: int) -> None:
    """Another machine's process takes the lease (as after this one's lease had run out)."""
    with store.engine.begin() as connection:
        connection.execute(
            digests.update()
            .where(digests.c.id == record_id)
            .values(lease_owner="elsewhere.example:4242:1", lease_until=datetime.now(UTC) + timedelta(hours=1))
        )


def test_the_lease_is_renewed_during_a_long_batch(world: tuple[Config, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    config, store = world
    # a lease of 3 microseconds: every message of the batch outlives a third of it, so each one renews
    monkeypatch.setattr(send, "LEASE", timedelta(microseconds=3))
    seen: list[tuple[str | None, datetime | None]] = []
    transport = HookedTransport(lambda _n: seen.append(store.digests.lease_holder(digest_id(store))))
    [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert outcome.send is not None and outcome.send.sent == len(READERS) and outcome.send.error is None
    owners = {owner for owner, _ in seen}
    assert len(owners) == 1 and None not in owners and f":{os.getpid()}:" in str(owners)
    untils = [until for _, until in seen]
    assert all(u is not None for u in untils)
    assert untils == sorted(untils) and len(set(untils)) == len(untils), "renewed before every message"
    assert store.digests.lease_holder(digest_id(store)) == (None, None), "released at the end"


def test_a_lease_lost_mid_batch_stops_the_send_and_leaves_the_rest_pending(
    world: tuple[Config, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, store = world
    monkeypatch.setattr(send, "LEASE", timedelta(microseconds=3))  # renewal checked before each message

    def before(number: int) -> None:
        if number == 2:
            steal_lease(store, digest_id(store))

    transport = HookedTransport(before)
    [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert outcome.send is not None
    assert outcome.send.error == "lost the sending lease to another process; stopping"
    assert len(transport.accepted) == 2  # the one sent while the lease was taken still counts as sent
    rows = ledger(store, digest_id(store))
    assert sorted(status for status, _ in rows.values()) == ["pending"] * 4 + ["sent"] * 2
    assert store.digests.lease_holder(digest_id(store))[0] == "elsewhere.example:4242:1", "not released: not ours"


def test_a_lease_lost_between_batches_stops_before_the_next_batch(world: tuple[Config, Store]) -> None:
    config, store = world
    config = with_mail(config, batch_size=2)

    def before(number: int) -> None:
        if number == 2:  # the second message of the first batch of two
            steal_lease(store, digest_id(store))

    transport = HookedTransport(before)
    [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert outcome.send is not None
    assert outcome.send.error == "lost the sending lease to another process; stopping"
    assert len(transport.accepted) == 2
    assert store.digests.find("en", DAY).status == "sending"  # type: ignore[union-attr]
    # the other holder is on another machine: a second run here does not take it over
    [again] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert again.send is not None and again.send.held_by == "elsewhere.example:4242:1"
    assert len(transport.accepted) == 2


# --- a message that cannot be built ---------------------------------------------------------------


def test_a_message_that_cannot_be_personalized_fails_alone(world: tuple[Config, Store]) -> None:
    config, store = world
    injected = "reader@example.org\r\nbcc: everyone@example.net"  # a header injection from a bad import
    store.subscribers.upsert(injected, language="en")
    transport = InMemoryTransport()
    [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert outcome.send is not None and (outcome.send.sent, outcome.send.failed) == (len(READERS), 1)
    status, error = ledger(store, digest_id(store))[injected]
    assert status == "failed" and (error or "").startswith("cannot build message: ")
    assert sorted(transport.recipients) == READERS
    assert all(b"everyone@example.net" not in m.data for m in transport.accepted)


# --- feeds through the pipeline -------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_feed_directory_that_cannot_be_written_is_reported_and_the_mail_still_goes(
    world: tuple[Config, Store], tmp_path: Path
) -> None:
    config, store = world
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the feeds directory should be", encoding="utf-8")
    config = config.model_copy(update={"feeds": config.feeds.model_copy(update={"directory": str(blocker / "feeds")})})
    transport = InMemoryTransport()
    summary = run_day(config, store, DAY, transport=transport)
    assert summary.feeds is not None and summary.feeds.published == []
    assert [e.split(":", 1)[0] for e in summary.feeds.errors] == ["cannot write feeds for en", "cannot write feeds for ar"]
    assert summary.ok is False
    assert sorted(transport.recipients) == READERS  # the digests did not depend on the feeds


def test_a_websub_hub_that_fails_is_reported_after_the_feeds_are_written(world: tuple[Config, Store]) -> None:
    config, store = world
    hub = f"http://127.0.0.1:{closed_port()}/hub"
    config = config.model_copy(update={"feeds": config.feeds.model_copy(update={"websub_hubs": [hub], "timeout": 5})})
    summary = run_day(config, store, DAY, transport=InMemoryTransport())
    assert summary.feeds is not None
    assert sorted(p.name for p in config.path(config.feeds.directory).iterdir()) == [
        "ar.atom.xml", "ar.rss.xml", "en.atom.xml", "en.rss.xml",
    ]
    errors = summary.feeds.errors
    assert len(errors) == 4, errors  # one per changed feed (two languages, two formats)
    assert all(e.startswith(f"WebSub hub {hub}: ") and "ConnectionError" in e for e in errors)
    assert summary.ok is False
    # the feeds did not change since: a second run pings nobody and reports nothing
    again = run_day(config, store, DAY, transport=InMemoryTransport())
    assert again.feeds is not None and again.feeds.errors == [] and again.ok
