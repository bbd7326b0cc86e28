"""The run's stages with an in-memory transport: selection, resumability, retries, skips.

The transports themselves and the end-to-end runs are tested against real servers elsewhere.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest

from publisher.delivery.mail import InMemoryTransport
from publisher.models import Article, SubscriberStatus
from publisher.pipeline import collect, run_digests
from publisher.store import Store

DAY = date(2024, 12, 2)
DAMASCUS = ZoneInfo("Asia/Damascus")


@pytest.fixture
def world(config_factory, tmp_path):  # type: ignore[no-untyped-def]
    config = config_factory(store_url=f"sqlite:///{tmp_path / 'store.db'}")
    store = Store.open(config.store_url)
    for i in range(6):
        store.subscribers.upsert(f"en{i}@example.org", name=f"Reader {i}", language="en")
    for i in range(4):
        store.subscribers.upsert(f"ar{i}@example.org", name=f"قارئ {i}", language="ar")
    store.subscribers.upsert("gone@example.org", language="en", status=SubscriberStatus.UNSUBSCRIBED)
    report = collect(config, store)
    assert not report.errors, report.errors
    yield config, store
    store.close()


def sent_to(transport: InMemoryTransport, prefix: str) -> list[str]:
    return sorted(r for r in transport.recipients if r.startswith(prefix))


def test_each_edition_goes_to_its_language_once(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    transport = InMemoryTransport()
    outcomes = run_digests(config, store, DAY, transport=transport)
    assert {o.edition: o.send.sent for o in outcomes if o.send} == {"en": 6, "ar": 4}
    assert "gone@example.org" not in transport.recipients
    assert sorted(transport.recipients) == sorted(set(transport.recipients))
    again = run_digests(config, store, DAY, transport=transport)
    assert all(o.send and o.send.sent == 0 for o in again)  # nothing twice
    assert len(transport.accepted) == 10


def test_digest_holds_only_that_local_day_in_section_order(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    run_digests(config, store, DAY, transport=InMemoryTransport())
    for edition in config.editions:
        record = store.digests.find(edition.id, DAY)
        assert record is not None
        articles = store.articles.in_digest(record.id)
        assert articles, edition.id
        assert all(a.published_at.astimezone(DAMASCUS).date() == DAY for a in articles)
        assert all(a.language == edition.language for a in articles)
        ranks = [edition.sections.index(a.section) if a.section in edition.sections else 99 for a in articles]
        assert ranks == sorted(ranks)
        assert len(articles) <= edition.max_articles


def test_crash_mid_send_then_rerun_finishes_exactly_once(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    transport = InMemoryTransport()
    transport.crash_after(3)
    [crashed] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert crashed.error and "SimulatedCrash" in crashed.error  # one edition's crash is contained
    assert len(transport.accepted) == 3
    run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert sent_to(transport, "en") == [f"en{i}@example.org" for i in range(6)]


def test_temporary_failure_is_retried_permanent_is_recorded(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    transport = InMemoryTransport()
    transport.fail("en1@example.org", temporary=True, times=1)
    transport.fail("en2@example.org", temporary=False)
    [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert outcome.send is not None
    # first_delay is 0 in the test config: the retry is due at once, and taken within the same run
    assert (outcome.send.sent, outcome.send.failed, outcome.send.deferred, outcome.send.retried) == (5, 1, 0, 1)
    record = store.digests.find("en", DAY)
    assert record is not None
    [again] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert again.send is not None and again.send.sent == 0
    assert store.deliveries.counts(record.id) == {"pending": 0, "sent": 5, "failed": 1, "skipped": 0}
    assert store.digests.find("en", DAY).status == "done"  # type: ignore[union-attr]
    assert "en2@example.org" not in transport.recipients
    # "550 5.1.1 no such user": the mailbox is gone, so the subscriber is marked bounced and not tried again
    assert store.subscribers.by_email("en2@example.org").status is SubscriberStatus.BOUNCED  # type: ignore[union-attr]
    assert store.subscribers.by_email("en1@example.org").status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_unsubscribed_before_their_turn_is_skipped(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    transport = InMemoryTransport()
    transport.crash_after(1)
    run_digests(config, store, DAY, editions=["en"], transport=transport)
    subscriber = store.subscribers.by_email("en5@example.org")
    store.subscribers.set_status(subscriber.id, SubscriberStatus.UNSUBSCRIBED)
    [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert outcome.send.skipped == 1
    assert "en5@example.org" not in transport.recipients


def test_empty_day_sends_nothing_and_says_so(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    transport = InMemoryTransport()
    outcomes = run_digests(config, store, date(2024, 12, 20), transport=transport)
    assert transport.accepted == []
    assert all("no articles" in o.note for o in outcomes)
    assert store.digests.find("en", date(2024, 12, 20)) is None


def test_late_article_goes_into_the_next_digest_only(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    run_digests(config, store, DAY, editions=["en"], transport=InMemoryTransport())
    late = Article(
        id="late-one",
        url="https://news.example.org/en/late-one",
        title="Filed late on the 2nd",
        language="en",
        published_at=datetime(2024, 12, 2, 22, 0, tzinfo=DAMASCUS).astimezone(UTC),
        updated_at=datetime(2024, 12, 2, 22, 0, tzinfo=DAMASCUS).astimezone(UTC),
        source_name="test",
    )
    store.articles.upsert([late], now=datetime.now(UTC) + timedelta(seconds=1))
    transport = InMemoryTransport()
    run_digests(config, store, date(2024, 12, 3), editions=["en"], transport=transport)
    record = store.digests.find("en", date(2024, 12, 3))
    assert record is not None
    assert [a.id for a in store.articles.in_digest(record.id)] == ["late-one"]
    first = store.digests.find("en", DAY)
    assert "late-one" not in [a.id for a in store.articles.in_digest(first.id)]  # type: ignore[union-attr]
    message = message_from_bytes(transport.accepted[0].data, policy=policy.default)
    assert "Filed late on the 2nd" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_transport_down_keeps_everything_pending(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    transport = InMemoryTransport()
    transport.unavailable = "cannot connect to 127.0.0.1:1 (hint: check mail.transport.host in config.yaml)"
    [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert outcome.send is not None and "mail.transport.host" in (outcome.send.error or "")
    record = store.digests.find("en", DAY)
    assert store.deliveries.counts(record.id)["pending"] == 6  # type: ignore[union-attr]
    transport.unavailable = None
    run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert len(sent_to(transport, "en")) == 6


def test_subscriber_with_chosen_sections_gets_only_those(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    culture = store.subscribers.by_email("en0@example.org")
    store.subscribers.set_preferences(culture.id, sections=["culture"])
    nothing = store.subscribers.by_email("en1@example.org")
    store.subscribers.set_preferences(nothing.id, sections=["astrology"])
    transport = InMemoryTransport()
    [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert outcome.send is not None and outcome.send.skipped == 1  # no astrology that day: no empty digest
    record = store.digests.find("en", DAY)
    all_titles = {a.title: a.section for a in store.articles.in_digest(record.id)}
    by_recipient = {m.recipient: message_from_bytes(m.data, policy=policy.default) for m in transport.accepted}
    text = by_recipient["en0@example.org"].get_body(("plain",)).get_content()
    shown = {title for title in all_titles if title in text}
    assert shown and all(all_titles[t] == "culture" for t in shown)
    full = by_recipient["en2@example.org"].get_body(("plain",)).get_content()
    assert all(title in full for title in all_titles)


def test_one_refusal_for_everyone_stops_and_fails_nobody(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    transport = InMemoryTransport()
    for i in range(6):
        transport.fail(f"en{i}@example.org", temporary=False, error="554 5.7.1 Relay access denied")
    [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert outcome.send is not None and "Relay access denied" in (outcome.send.error or "")
    record = store.digests.find("en", DAY)
    assert store.deliveries.counts(record.id) == {"pending": 6, "sent": 0, "failed": 0, "skipped": 0}
    assert len(transport.batches) == 1  # relay denied is about us: stopped at once, not after a count


def test_past_the_retry_deadline_pending_becomes_failed_even_if_the_server_is_down(world) -> None:  # type: ignore[no-untyped-def]
    from publisher.store.schema import digests

    config, store = world
    transport = InMemoryTransport()
    transport.unavailable = "cannot connect (hint: check mail.transport.host in config.yaml)"
    run_digests(config, store, DAY, editions=["en"], transport=transport)
    record = store.digests.find("en", DAY)
    long_ago = datetime.now(UTC) - timedelta(hours=config.mail.retry.deadline_hours + 1)
    with store.engine.begin() as connection:
        connection.execute(digests.update().where(digests.c.id == record.id).values(started_at=long_ago))
    run_digests(config, store, DAY, editions=["en"], transport=transport)
    counts = store.deliveries.counts(record.id)
    assert counts["pending"] == 0 and counts["failed"] == 6
    assert store.digests.find("en", DAY).status == "done"  # type: ignore[union-attr]


def test_section_aliases_map_other_names_to_the_editions_sections(config_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from publisher.pipeline.collect import section_alias_map, with_canonical_sections

    config = config_factory(extra="").model_copy(
        update={"site": config_factory().site.model_copy(update={"section_aliases": {"culture": ["ثقافة", "Arts"]}})}
    )
    aliases = section_alias_map(config)
    base = Article(
        id="a", url="https://news.example.org/a", title="t", language="ar",
        published_at=datetime(2024, 12, 2, tzinfo=UTC), updated_at=datetime(2024, 12, 2, tzinfo=UTC), source_name="s",
    )
    mapped = with_canonical_sections(
        [replace(base, section="ثقافة"), replace(base, section="arts "), replace(base, section="sports")], aliases
    )
    assert [a.section for a in mapped] == ["culture", "culture", "sports"]


def test_refusals_after_the_stop_in_the_same_batch_are_deferred_too(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    transport = InMemoryTransport(max_batch=6)  # one request carries the whole list, as with Postmark
    for i in range(6):
        transport.fail(f"en{i}@example.org", temporary=False, error="554 5.7.1 Relay access denied")
    run_digests(config, store, DAY, editions=["en"], transport=transport)
    record = store.digests.find("en", DAY)
    assert store.deliveries.counts(record.id) == {"pending": 6, "sent": 0, "failed": 0, "skipped": 0}


def test_a_policy_refusal_fails_the_delivery_but_does_not_bounce_the_subscriber(world) -> None:  # type: ignore[no-untyped-def]
    config, store = world
    transport = InMemoryTransport()
    transport.fail("en3@example.org", temporary=False, error="550 5.7.1 Message rejected as spam")
    [outcome] = run_digests(config, store, DAY, editions=["en"], transport=transport)
    assert outcome.send is not None and (outcome.send.failed, outcome.send.bounced) == (1, 0)
    assert store.subscribers.by_email("en3@example.org").status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]
