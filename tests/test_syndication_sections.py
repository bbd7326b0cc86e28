"""Feeds per language and section (`feeds.sections: true`), listed in an OPML file per language that
feed readers import: written by publish_feeds, served by the web face, imported and read by newsboat."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from publisher.config import Config, load_config
from publisher.pipeline import collect, publish_feeds
from publisher.render.feeds.build import section_slug
from publisher.store import Store
from publisher.web import create_app
from publisher.web.server import WebServer
from tests.conftest import require
from tests.test_syndication_formats import feeds_config
from tests.test_web import TestClient

ATOM_RNG = Path(__file__).parent / "fixtures" / "atom.rng"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Site:
    def __init__(self, directory: Path, *, port: int = 8080, formats: str = "[atom, rss, json]") -> None:
        path = feeds_config(directory, f"formats: {formats}\nsections: true\nmeasure_images: false")
        text = path.read_text(encoding="utf-8").replace(
            "base_url: http://127.0.0.1:8080/feeds", f"base_url: http://127.0.0.1:{port}/feeds"
        )
        path.write_text(text, encoding="utf-8")
        self.config: Config = load_config(path)
        self.store = Store.open(self.config.store_url)
        self.directory = self.config.path(self.config.feeds.directory)

    def publish(self) -> None:
        collect(self.config, self.store)
        report = publish_feeds(self.config, self.store)
        assert report.errors == []


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    built = Site(tmp_path)
    try:
        built.publish()
        yield built
    finally:
        built.store.close()


def test_one_feed_per_language_and_section_in_every_format(site: Site) -> None:
    for language in ("ar", "en"):
        sections = site.store.articles.sections(language)
        assert sections, language
        names = sorted(p.name for p in (site.directory / language).iterdir())
        assert names == sorted(f"{section_slug(s)}{suffix}" for s in sections for suffix in (".atom.xml", ".json", ".rss.xml"))
        for section in sections:
            stored = site.store.articles.latest(language, 50, section=section)
            stem = site.directory / language / section_slug(section)
            atom = feedparser.parse((stem.parent / f"{stem.name}.atom.xml").read_bytes())
            assert not atom.bozo
            assert [e.link for e in atom.entries] == [a.url for a in stored]
            assert {t.term for e in atom.entries for t in e.tags} == {section}
            assert atom.feed.title == f"Levant Today — {section}"
            assert atom.feed.language == language
            rss = feedparser.parse((stem.parent / f"{stem.name}.rss.xml").read_bytes())
            assert [e.link for e in rss.entries] == [a.url for a in stored]
            document = json.loads((stem.parent / f"{stem.name}.json").read_bytes())
            assert [item["url"] for item in document["items"]] == [a.url for a in stored]
            selves = [link.href for link in atom.feed.links if link.rel == "self"]
            assert selves == [f"http://127.0.0.1:8080/feeds/{language}/{section_slug(section)}.atom.xml"]


def test_section_feeds_have_their_own_ids_but_share_entry_ids_with_the_language_feed(site: Site) -> None:
    main = feedparser.parse((site.directory / "en.atom.xml").read_bytes())
    ids = {main.feed.id}
    entry_ids: set[str] = set()
    for path in sorted((site.directory / "en").glob("*.atom.xml")):
        parsed = feedparser.parse(path.read_bytes())
        ids.add(parsed.feed.id)
        entry_ids.update(e.id for e in parsed.entries)
    assert len(ids) == 1 + len(site.store.articles.sections("en"))
    assert entry_ids == {e.id for e in main.entries}  # the same article is the same entry everywhere
    schema = etree.RelaxNG(etree.parse(str(ATOM_RNG)))
    for path in (site.directory / "en").glob("*.atom.xml"):
        assert schema.validate(etree.parse(str(path))), (path, schema.error_log)


def test_the_opml_file_lists_each_section_feed_once(site: Site) -> None:
    root = etree.parse(str(site.directory / "ar.opml")).getroot()
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "Levant Today (ar)"
    outlines = root.findall("body/outline")
    sections = site.store.articles.sections("ar")
    # the edition's section order first: politics, economy, culture, sports
    order = [s for s in ["politics", "economy", "culture", "sports"] if s in sections]
    assert [o.get("xmlUrl") for o in outlines] == [
        f"http://127.0.0.1:8080/feeds/ar/{section_slug(s)}.atom.xml" for s in order
    ]
    assert {o.get("type") for o in outlines} == {"rss"}
    assert [o.get("text") for o in outlines] == [f"Levant Today — {s}" for s in order]
    assert {o.get("htmlUrl") for o in outlines} == {"https://news.example.org/ar/"}


def test_republishing_changes_nothing(site: Site) -> None:
    files = sorted(p for p in site.directory.rglob("*") if p.is_file() and ".cache" not in p.parts)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    report = publish_feeds(site.config, site.store)
    assert report.published and not [p for p in report.published if p.changed]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before


def test_section_feeds_and_opml_are_served(site: Site) -> None:
    client = TestClient(create_app(lambda: site.config, site.store), base_url="http://127.0.0.1:8080")
    with client:
        answer = client.get("/feeds/ar/politics.atom.xml")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/atom+xml; charset=utf-8"
        assert answer.content == (site.directory / "ar" / "politics.atom.xml").read_bytes()
        opml = client.get("/feeds/ar.opml")
        assert opml.status_code == 200 and opml.headers["content-type"] == "text/x-opml; charset=utf-8"
        assert client.get("/feeds/ar/politics.json").headers["content-type"] == "application/feed+json; charset=utf-8"
        for bad in ("ar/../config.yaml", "ar/x/politics.atom.xml", "ar/.politics.atom.xml", ".cache/image-sizes.json"):
            assert client.get(f"/feeds/{bad}").status_code == 404, bad


def test_newsboat_imports_the_opml_and_reads_every_section_feed(tmp_path: Path) -> None:
    require(shutil.which("newsboat") is not None, "newsboat is not installed (apt-get install newsboat)")
    port = free_port()
    site = Site(tmp_path, port=port, formats="[atom, rss]")
    server = None
    try:
        site.publish()
        server = WebServer(create_app(lambda: site.config, site.store), "127.0.0.1", port).start()
        home = tmp_path / "home"
        home.mkdir()
        env = {"HOME": str(home), "PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "TERM": "dumb"}
        urls, cache, conf = home / "urls", home / "cache.db", home / "config"
        urls.write_text("", encoding="utf-8")
        conf.write_text("", encoding="utf-8")
        flags = ["-u", str(urls), "-c", str(cache), "-C", str(conf)]
        imported = subprocess.run(
            ["newsboat", *flags, "-i", str(site.directory / "en.opml")],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert imported.returncode == 0, imported.stderr
        listed = [line.split()[0] for line in urls.read_text(encoding="utf-8").splitlines() if line.strip()]
        sections = site.store.articles.sections("en")
        assert sorted(listed) == sorted(
            f"http://127.0.0.1:{port}/feeds/en/{section_slug(s)}.atom.xml" for s in sections
        )
        read = subprocess.run(
            ["newsboat", *flags, "-x", "reload", "print-unread"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert read.returncode == 0, read.stderr
        unread = int(read.stdout.strip().split()[0])
        assert unread == len(site.store.articles.latest("en", 50)) == 6
    finally:
        if server is not None:
            server.stop()
        site.store.close()
