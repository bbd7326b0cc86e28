"""Archived feeds (RFC 5005): the subscription feed keeps the newest entries and links prev-archive to
complete archive documents (fh:archive) that never change once written. Read back with feedparser,
walked over HTTP from the served subscription feed back to the first entry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from publisher.config import Config, load_config
from publisher.models import Article
from publisher.pipeline import collect, publish_feeds
from publisher.store import Store
from publisher.web import create_app
from tests.test_syndication_formats import feeds_config
from tests.test_web import TestClient

FH = "{http://purl.org/syndication/history/1.0}"
ATOM = "{http://www.w3.org/2005/Atom}"
ATOM_RNG = Path(__file__).parent / "fixtures" / "atom.rng"
BASE = "http://127.0.0.1:8080/feeds"
AN_HOUR_AGO = (datetime.now(UTC) - timedelta(hours=1)).timestamp()


class Archived:
    def __init__(self, directory: Path) -> None:
        self.config: Config = load_config(feeds_config(
            directory, "formats: [atom, rss, json]\nentries: 3\narchive: true\narchive_entries: 2\nmeasure_images: false"
        ))
        self.store = Store.open(self.config.store_url)
        self.directory = self.config.path(self.config.feeds.directory)

    def publish(self) -> None:
        assert publish_feeds(self.config, self.store).errors == []

    def add(self, count: int, start: int) -> list[Article]:
        template = self.store.articles.latest("en", 1)[0]
        new = [
            replace(
                template,
                id=f"https://news.example.org/en/late/{n}",
                url=f"https://news.example.org/en/late/{n}",
                canonical_url=f"https://news.example.org/en/late/{n}",  # a story of its own, not the template's
                title=f"Later story {n}",
                published_at=datetime(2024, 12, 3, 6, n, tzinfo=UTC),
                updated_at=datetime(2024, 12, 3, 6, n, tzinfo=UTC),
            )
            for n in range(start, start + count)
        ]
        self.store.articles.upsert([Article(**{k: getattr(a, k) for k in Article.__dataclass_fields__}) for a in new])
        return new


@pytest.fixture
def archived(tmp_path: Path) -> Iterator[Archived]:
    site = Archived(tmp_path)
    try:
        collect(site.config, site.store)
        site.publish()
        yield site
    finally:
        site.store.close()


def links(parsed: feedparser.FeedParserDict) -> dict[str, str]:
    return {link.rel: link.href for link in parsed.feed.links if link.rel in ("prev-archive", "current", "self")}


def walk(client: TestClient, url: str) -> list[tuple[str, list[str], bool]]:
    """Follow prev-archive from `url` to the end: (url, entry ids, is an archive) per document."""
    documents = []
    seen: set[str] = set()
    while url and url not in seen:
        seen.add(url)
        answer = client.get(url.removeprefix("http://127.0.0.1:8080"))
        assert answer.status_code == 200, url
        parsed = feedparser.parse(answer.content)
        assert not parsed.bozo, parsed.get("bozo_exception")
        root = etree.fromstring(answer.content)
        parent = root if root.tag == f"{ATOM}feed" else root.find("channel")
        assert parent is not None
        documents.append((url, [e.id for e in parsed.entries], parent.find(f"{FH}archive") is not None))
        url = links(parsed).get("prev-archive", "")
    return documents


def test_the_subscription_feed_links_its_newest_complete_archive(archived: Archived) -> None:
    assert archived.store.articles.count_in("en") == 6  # three full pages of two
    for suffix in (".atom.xml", ".rss.xml"):
        feed = feedparser.parse((archived.directory / f"en{suffix}").read_bytes())
        assert len(feed.entries) == 3
        assert links(feed) == {"self": f"{BASE}/en{suffix}", "prev-archive": f"{BASE}/en.archive/3{suffix}"}
        for page in (1, 2, 3):
            document = feedparser.parse((archived.directory / "en.archive" / f"{page}{suffix}").read_bytes())
            expected = {"self": f"{BASE}/en.archive/{page}{suffix}", "current": f"{BASE}/en{suffix}"}
            if page > 1:
                expected["prev-archive"] = f"{BASE}/en.archive/{page - 1}{suffix}"
            assert links(document) == expected
            assert len(document.entries) == 2
    assert not (archived.directory / "en.archive" / "1.json").exists()  # JSON Feed has no archives
    assert "prev-archive" not in (archived.directory / "en.json").read_text()


def test_archive_documents_are_marked_and_valid_and_subscription_feeds_are_not_marked(archived: Archived) -> None:
    schema = etree.RelaxNG(etree.parse(str(ATOM_RNG)))
    for page in (1, 2, 3):
        root = etree.parse(str(archived.directory / "en.archive" / f"{page}.atom.xml")).getroot()
        assert root.find(f"{FH}archive") is not None
        assert schema.validate(root), schema.error_log
        assert not [link for link in root.findall(f"{ATOM}link") if link.get("rel") == "hub"]
        channel = etree.parse(str(archived.directory / "en.archive" / f"{page}.rss.xml")).getroot().find("channel")
        assert channel is not None and channel.find(f"{FH}archive") is not None
    subscription = etree.parse(str(archived.directory / "en.atom.xml")).getroot()
    assert subscription.find(f"{FH}archive") is None
    assert schema.validate(subscription), schema.error_log


@pytest.mark.parametrize("suffix", [".atom.xml", ".rss.xml"])
def test_walking_the_chain_reaches_the_first_entry_and_every_entry(archived: Archived, suffix: str) -> None:
    with TestClient(create_app(lambda: archived.config, archived.store), base_url="http://127.0.0.1:8080") as client:
        documents = walk(client, f"{BASE}/en{suffix}")
    assert [url for url, _, _ in documents] == [f"{BASE}/en{suffix}"] + [
        f"{BASE}/en.archive/{page}{suffix}" for page in (3, 2, 1)
    ]
    assert [is_archive for _, _, is_archive in documents] == [False, True, True, True]
    seen = {entry for _, ids, _ in documents for entry in ids}
    stored = archived.store.articles.arrived("en", offset=0, limit=100)
    assert seen == {a.id for a in stored}
    assert stored[0].id in documents[-1][1]  # the first article ever stored is in the oldest document


def test_archives_never_change_and_a_reader_back_after_a_while_catches_up(archived: Archived) -> None:
    archive = archived.directory / "en.archive"
    for path in archive.iterdir():
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime) for p in archive.iterdir()}
    known = {e.id for e in feedparser.parse((archived.directory / "en.atom.xml").read_bytes()).entries}
    # an article of the first page is edited, and five new ones arrive while the reader is away
    first = archived.store.articles.arrived("en", offset=0, limit=1)[0]
    edited = replace(first, title="Edited title", updated_at=first.updated_at + timedelta(hours=1))
    archived.store.articles.upsert([Article(**{k: getattr(edited, k) for k in Article.__dataclass_fields__})])
    missed = archived.add(5, start=1)
    archived.publish()

    after = {p.name: (p.read_bytes(), p.stat().st_mtime) for p in archive.iterdir()}
    assert {n: v for n, v in after.items() if n in before} == before  # not one byte, not even touched
    assert sorted(set(after) - set(before)) == ["4.atom.xml", "4.rss.xml", "5.atom.xml", "5.rss.xml"]
    assert b"Edited title" not in (archive / "1.atom.xml").read_bytes()
    subscription = feedparser.parse((archived.directory / "en.atom.xml").read_bytes())
    assert links(subscription)["prev-archive"] == f"{BASE}/en.archive/5.atom.xml"

    # RFC 5005 section 4: read the feed, follow prev-archive until a document holds a known entry
    with TestClient(create_app(lambda: archived.config, archived.store), base_url="http://127.0.0.1:8080") as client:
        caught_up: set[str] = set()
        for _, ids, _ in walk(client, f"{BASE}/en.atom.xml"):
            caught_up.update(ids)
            if known & set(ids):
                break
    assert {a.id for a in missed} <= caught_up

    archived.publish()  # and again with nothing new: nothing moves
    assert {p.name: (p.read_bytes(), p.stat().st_mtime) for p in archive.iterdir()} == after


def test_without_archive_nothing_links_history(tmp_path: Path) -> None:
    config = load_config(feeds_config(tmp_path, "measure_images: false"))
    store = Store.open(config.store_url)
    try:
        collect(config, store)
        publish_feeds(config, store)
    finally:
        store.close()
    directory = config.path(config.feeds.directory)
    assert not (directory / "en.archive").exists()
    assert "prev-archive" not in links(feedparser.parse((directory / "en.atom.xml").read_bytes()))
