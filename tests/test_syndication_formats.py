"""The feed-format registry and JSON Feed 1.1, through the real path: collect the sample day,
publish_feeds into a directory, read the files back, validate them, and serve them."""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path

import feedparser
import jsonschema
import pytest
from lxml import etree

from publisher.config import Config, load_config
from publisher.config.loader import ConfigError
from publisher.pipeline import collect, publish_feeds
from publisher.render.feeds import formats as registry
from publisher.render.feeds.formats import FORMATS, feed_format, format_of_file
from publisher.render.feeds.model import utc
from publisher.sources.jsonfeed import parse_json_feed
from publisher.store import Store
from publisher.web.archive import feed_links
from publisher.web.feeds import media_type
from tests.conftest import write_config

FIXTURES = Path(__file__).parent / "fixtures"
JSONFEED_SCHEMA = json.loads((FIXTURES / "jsonfeed-1.1.schema.json").read_text(encoding="utf-8"))
ATOM_RNG = FIXTURES / "atom.rng"


def feeds_config(directory: Path, feeds: str, *, sources: str | None = None) -> Path:
    """The test config with extra lines under `feeds:` (indented two spaces in the file)."""
    path = write_config(directory, sources=sources)
    text = path.read_text(encoding="utf-8")
    marker = "feeds:\n  directory: feeds\n"
    assert marker in text
    extra = textwrap.indent(textwrap.dedent(feeds).strip() + "\n", "  ")
    path.write_text(text.replace(marker, marker + extra), encoding="utf-8")
    return path


@pytest.fixture
def published(tmp_path: Path) -> Iterator[tuple[Config, Path]]:
    """The sample day collected and its feeds written in all three formats."""
    config = load_config(feeds_config(tmp_path, "formats: [atom, rss, json]\nmeasure_images: false"))
    store = Store.open(config.store_url)
    try:
        collect(config, store)
        report = publish_feeds(config, store)
        assert report.errors == []
        yield config, config.path(config.feeds.directory)
    finally:
        store.close()


def validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(JSONFEED_SCHEMA)
    return jsonschema.Draft202012Validator(JSONFEED_SCHEMA, format_checker=jsonschema.FormatChecker())


# --- the registry -------------------------------------------------------------------------------


def test_every_format_module_is_registered_once_with_a_distinct_suffix() -> None:
    assert set(FORMATS) == {"atom", "rss", "json"}
    assert {(s.suffix, s.media_type) for s in FORMATS.values()} == {
        (".atom.xml", "application/atom+xml"),
        (".rss.xml", "application/rss+xml"),
        (".json", "application/feed+json"),
    }
    for spec in FORMATS.values():
        assert format_of_file(spec.file_name("ar/politics")) is spec
        assert media_type(spec.file_name("en")) == f"{spec.media_type}; charset=utf-8"
    assert format_of_file("en.xml") is None and format_of_file(".json") is None
    with pytest.raises(ValueError, match="known formats: atom, json, rss"):
        feed_format("opml")


def test_a_new_module_in_the_formats_package_is_a_new_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding a format is one module: discovery finds it with nothing else changed."""
    (tmp_path / "plaintext.py").write_text(
        "from publisher.render.feeds.spec import FeedFormatSpec\n"
        "FORMAT = FeedFormatSpec(name='text', suffix='.txt', media_type='text/plain', label='Text',\n"
        "                        render=lambda feed, url: '\\n'.join(e.title for e in feed.entries).encode())\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(registry, "__path__", [*registry.__path__, str(tmp_path)])
    found = registry._discover()
    assert set(found) == {"atom", "rss", "json", "text"}
    assert found["text"].suffix == ".txt"


def test_config_refuses_an_unknown_format_and_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown feed format 'atom10'; use one of atom, json, rss"):
        load_config(feeds_config(tmp_path, "formats: [atom10]"))
    assert load_config(feeds_config(tmp_path, "formats: [json]")).feeds.formats == ["json"]


def test_archive_pages_link_every_configured_format(published: tuple[Config, Path]) -> None:
    config, _ = published
    links = feed_links(config, {"ar": "العربية", "en": "English"}, ["ar"])
    assert [(link["type"], link["url"]) for link in links] == [
        ("application/atom+xml", "http://127.0.0.1:8080/feeds/ar.atom.xml"),
        ("application/rss+xml", "http://127.0.0.1:8080/feeds/ar.rss.xml"),
        ("application/feed+json", "http://127.0.0.1:8080/feeds/ar.json"),
    ]
    assert [link["title"].rsplit(" (", 1)[1] for link in links] == ["Atom)", "RSS)", "JSON Feed)"]


# --- JSON Feed 1.1 ------------------------------------------------------------------------------


def test_publish_writes_each_language_in_each_format(published: tuple[Config, Path]) -> None:
    _, directory = published
    assert sorted(p.name for p in directory.iterdir()) == [
        "ar.atom.xml", "ar.json", "ar.rss.xml", "en.atom.xml", "en.json", "en.rss.xml",
    ]
    for language in ("ar", "en"):
        atom = feedparser.parse((directory / f"{language}.atom.xml").read_bytes())
        document = json.loads((directory / f"{language}.json").read_bytes())
        assert [item["id"] for item in document["items"]] == [entry.id for entry in atom.entries]
        assert [item["title"] for item in document["items"]] == [entry.title for entry in atom.entries]


@pytest.mark.parametrize("language", ["ar", "en"])
def test_json_feed_validates_against_the_json_feed_1_1_schema(
    published: tuple[Config, Path], language: str
) -> None:
    _, directory = published
    document = json.loads((directory / f"{language}.json").read_bytes())
    errors = sorted(validator().iter_errors(document), key=str)
    assert errors == []
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["language"] == language
    assert document["feed_url"] == f"http://127.0.0.1:8080/feeds/{language}.json"
    assert document["home_page_url"] == f"https://news.example.org/{language}/"
    assert document["authors"] == [{"name": "Levant Today"}]
    assert document["icon"] == "https://news.example.org/static/logo.png"
    assert len(document["items"]) == 6


def test_the_schema_rejects_what_the_spec_forbids(published: tuple[Config, Path]) -> None:
    """The schema is worth something: each of these breaks one rule of the spec."""
    _, directory = published
    good = json.loads((directory / "en.json").read_bytes())
    item = good["items"][0]

    def broken(change: dict[str, object], *, in_item: bool = False, drop: str | None = None) -> dict[str, object]:
        document = json.loads(json.dumps(good))
        target = document["items"][0] if in_item else document
        target.update(change)
        if drop:
            target.pop(drop)
        return document

    cases = [
        broken({"version": "https://jsonfeed.org/version/1"}),
        broken({}, drop="title"),
        broken({"authors": [{}]}),
        broken({"date_published": "Mon, 02 Dec 2024 16:00:00 +0000"}, in_item=True),
        broken({"attachments": [{"url": item["url"]}]}, in_item=True),
        broken({"content_html": None}, in_item=True),
        broken({"surprise": 1}),
    ]
    for document in cases:
        assert not validator().is_valid(document), document
    no_content = broken({}, in_item=True, drop="content_html")
    no_content["items"][0].pop("content_text", None)
    assert not validator().is_valid(no_content)


def test_json_items_carry_language_authors_tags_and_image_attachments(published: tuple[Config, Path]) -> None:
    _, directory = published
    document = json.loads((directory / "ar.json").read_bytes())
    derby = next(item for item in document["items"] if "damascus-derby" in item.get("image", ""))
    assert derby["authors"] == [{"name": "مهنّد الأحمد"}]
    assert derby["tags"] == ["sports"]
    assert derby["image"] == "https://news.example.org/media/2024/12/02/damascus-derby.jpg"
    assert derby["attachments"] == [{
        "url": "https://news.example.org/media/2024/12/02/damascus-derby.jpg",
        "mime_type": "image/jpeg",
        "title": "لاعبو كرة قدم بقمصان حمراء يتعانقون على أرض الملعب",
    }]  # size unknown (not measured here): left out, never a made-up 0
    assert derby["date_published"] == "2024-12-02T13:00:00Z"  # 16:00 in Damascus
    assert derby["content_html"].startswith("<p>")
    assert derby["summary"].startswith("قلب الجيش")


def test_a_json_feed_reader_reads_back_what_was_published(published: tuple[Config, Path]) -> None:
    """Our own JSON Feed source (written against the spec, used for other sites' feeds)."""
    config, directory = published
    store = Store.open(config.store_url)
    try:
        stored = {a.url: a for a in store.articles.latest("ar", 50)}
    finally:
        store.close()
    parsed = parse_json_feed((directory / "ar.json").read_bytes(), url="http://127.0.0.1:8080/feeds/ar.json")
    assert parsed.language == "ar" and parsed.warnings == []
    assert len(parsed.items) == len(stored) == 6
    for item in parsed.items:
        article = stored[item.url or ""]
        assert (item.guid, item.title, item.author) == (article.url, article.title, article.author)
        assert item.image_url == article.image_url
        assert item.published is not None and utc(item.published) == utc(article.published_at)


def test_republishing_with_nothing_new_leaves_every_file_untouched(
    published: tuple[Config, Path], caplog: pytest.LogCaptureFixture
) -> None:
    config, directory = published
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}
    store = Store.open(config.store_url)
    try:
        with caplog.at_level(logging.INFO):
            report = publish_feeds(config, store)
    finally:
        store.close()
    assert [p.changed for p in report.published] == [False] * 6
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()} == before
    assert not [r for r in caplog.records if "written" in r.getMessage()]


def test_atom_and_rss_still_validate_next_to_json(published: tuple[Config, Path]) -> None:
    _, directory = published
    schema = etree.RelaxNG(etree.parse(str(ATOM_RNG)))
    for language in ("ar", "en"):
        root = etree.parse(str(directory / f"{language}.atom.xml")).getroot()
        assert schema.validate(root), schema.error_log
        rss = feedparser.parse((directory / f"{language}.rss.xml").read_bytes())
        assert not rss.bozo and rss.version == "rss20"
