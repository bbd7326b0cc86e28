"""Collecting into the store on both backends: matches by id or canonical URL, corrected copies,
undated items, and what the collect report tells the operator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from publisher.config import Config, load_config
from publisher.models import Article
from publisher.pipeline import collect
from publisher.store import Store
from tests.conftest import write_config
from tests.fixtures.sources.loopback import LoopbackHttpServer

FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Levant Today</title><link>https://news.example.org/ar/</link><language>ar</language>
<item><title>تصعيد عسكري في الشمال</title><link>https://news.example.org/ar/politics/north</link>
<guid isPermaLink="false">tag:news.example.org,2024:ar-1</guid><pubDate>Mon, 02 Dec 2024 09:30:00 +0300</pubDate>
<description>قالت مصادر محلية إن القصف تجدد.</description></item>
</channel></rss>"""


@pytest.fixture
def server() -> Iterator[LoopbackHttpServer]:
    with LoopbackHttpServer() as running:
        yield running


def _article(**changes: object) -> Article:
    base = Article(
        id="tag:news.example.org,2024:ar-1",
        url="https://news.example.org/ar/politics/north",
        title="ÊÕÚíÏ ÚÓßÑí Ýí ÇáÔãÇá",
        language="ar",
        published_at=datetime(2024, 12, 2, 6, 30, tzinfo=UTC),
        updated_at=datetime(2024, 12, 2, 6, 30, tzinfo=UTC),
        source_name="site-ar",
        summary="ÞÇáÊ ãÕÇÏÑ",
        canonical_url="https://news.example.org/ar/politics/north",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_correct_copy_replaces_a_garbled_stored_one(tmp_path: Path, store_url: str, server: LoopbackHttpServer) -> None:
    """A store filled by an older version holds the mojibake copy; the same id with readable text
    and the same date, from the same source, replaces it."""
    url = server.route("/ar.xml", FEED, content_type="application/rss+xml")
    config = load_config(
        write_config(tmp_path, store_url=store_url, sources=f"  - kind: feed\n    name: site-ar\n    url: {url}\n")
    )
    store = Store.open(config.store_url)
    try:
        assert store.articles.upsert([_article()]).new == 1
        report = collect(config, store)
        outcome = report.sources[0]
        assert (outcome.new, outcome.updated, outcome.skipped) == (0, 1, [])
        [stored] = store.articles.latest("ar", 10)
        assert stored.title == "تصعيد عسكري في الشمال" and stored.summary.startswith("قالت مصادر")
        assert stored.source_credit == "Levant Today"  # the feed's own title, never "site-ar"
        assert collect(config, store).sources[0].updated == 0  # and it stays: nothing changes twice
    finally:
        store.close()


def test_matching_by_canonical_url_keeps_the_stored_id_and_the_newer_text(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        first = _article(title="تصعيد", summary="")
        other_source = _article(
            id="https://news.example.org/ar/politics/north",
            url="https://news.example.org/ar/politics/north/?utm_source=x",
            title="تصعيد عسكري",
            source_name="partner",
            updated_at=datetime(2024, 12, 2, 8, 0, tzinfo=UTC),
        )
        older = replace(other_source, title="قديم", updated_at=datetime(2024, 12, 2, 6, 0, tzinfo=UTC))
        assert store.articles.upsert([first]).new == 1
        counts = store.articles.upsert([other_source, older])
        assert (counts.new, counts.updated) == (0, 1)
        [stored] = store.articles.latest("ar-SY", 10)  # an edition's region subtag reads its language
        assert stored.id == first.id and stored.title == "تصعيد عسكري"
    finally:
        store.close()


def test_an_undated_article_keeps_its_first_seen_time_when_its_text_changes(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        seen = datetime(2024, 12, 2, 6, 0, tzinfo=UTC)
        store.articles.upsert([_article(title="ساعات العمل", undated=True, published_at=seen, updated_at=seen)])
        later = datetime(2024, 12, 3, 6, 0, tzinfo=UTC)
        changed = _article(title="ساعات العمل الجديدة", undated=True, published_at=later, updated_at=later)
        assert store.articles.upsert([changed]).updated == 1
        assert store.articles.upsert([changed]).updated == 0
        [stored] = store.articles.latest("ar", 10)
        assert stored.title == "ساعات العمل الجديدة"
        assert (stored.published_at, stored.updated_at) == (seen, seen)
    finally:
        store.close()


def test_an_unchanged_feed_is_not_modified_until_its_bytes_or_the_config_change(
    tmp_path: Path, store_url: str, server: LoopbackHttpServer
) -> None:
    """No ETag from the server: the second collect of the same bytes is "not modified" (nothing new,
    nothing updated), a new credit in config.yaml is applied to the stored article at the next
    collect, and so are new bytes."""
    url = server.route("/ar.xml", FEED, content_type="application/rss+xml")

    def configured(credit: str) -> Config:
        sources = f"  - kind: feed\n    name: site-ar\n    url: {url}\n    credit: {credit}\n"
        return load_config(write_config(tmp_path, store_url=store_url, sources=sources))

    store = Store.open(store_url)
    try:
        first = collect(configured("Levant Agency"), store).sources[0]
        assert (first.new, first.not_modified) == (1, False)
        assert store.sources.get("site-ar").content_digest
        again = collect(configured("Levant Agency"), store).sources[0]
        assert (again.new, again.updated, again.not_modified, again.error) == (0, 0, True, None)
        assert len(server.requests) == 2
        recredited = collect(configured("Levant News Agency"), store).sources[0]
        assert (recredited.updated, recredited.not_modified) == (1, False)
        [stored] = store.articles.latest("ar", 10)
        assert stored.source_credit == "Levant News Agency"
        server.route("/ar.xml", FEED.replace("القصف تجدد", "القصف تجدد صباحا"), content_type="application/rss+xml")
        changed = collect(configured("Levant News Agency"), store).sources[0]
        assert (changed.updated, changed.not_modified) == (1, False)
        [stored] = store.articles.latest("ar", 10)
        assert stored.summary == "قالت مصادر محلية إن القصف تجدد صباحا."
    finally:
        store.close()
