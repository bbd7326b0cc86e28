"""Atom and RSS feeds: parsed back with feedparser and lxml, validated against RFC 4287's schema."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedgen.entry
import feedgen.feed
import feedparser
import pytest
from lxml import etree

from publisher.config import FeedSettings, SiteSettings
from publisher.models import Article, FeedFile, StoredArticle
from publisher.render.feeds.build import build_feed, build_feed_files
from publisher.render.feeds.model import EMPTY_FEED_UPDATED, atom_id
from tests.support.golden import assert_golden

ATOM = "{http://www.w3.org/2005/Atom}"
GOLDEN = Path(__file__).parent / "golden" / "feeds"
ATOM_RNG = Path(__file__).parent / "fixtures" / "atom.rng"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")

SITE = SiteSettings(
    name="Levant Today",
    base_url="https://news.example.org",
    secret="0123456789abcdef-test",
    logo_url="https://news.example.org/static/logo.png",
)
FEEDS = FeedSettings(
    base_url="https://news.example.org/feeds",
    entries=50,
    websub_hubs=["https://hub.example.net/", "https://pubsubhubbub.example.com/"],
)


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def english() -> list[Article]:
    """Newest first, as the store hands them over."""
    return [
        StoredArticle(
            id="https://news.example.org/en/2026/11/20/ceasefire",
            url="https://news.example.org/en/2026/11/20/ceasefire",
            title="Ceasefire talks resume in Amman",
            language="en",
            published_at=_at(20, 8),
            updated_at=_at(20, 10),
            source_name="newsroom",
            summary="Negotiators return to the table; AT&T-style <tags> stay text.",
            content_html="<p>Talks <b>resumed</b> on Friday &amp; continued.</p>",
            section="politics",
            author="Rana Haddad",
            image_url="https://news.example.org/img/amman.jpg",
            image_type="image/jpeg",
            image_length=48213,
            image_alt="Delegates in Amman",
            first_seen_at=_at(20, 8),
        ),
        Article(
            id="/en/2026/11/19/markets",  # relative-looking: not an IRI
            url="https://news.example.org/en/2026/11/19/markets",
            title="Markets steady after rate decision",
            language="en",
            published_at=_at(19, 15),
            updated_at=_at(19, 15),
            source_name="newsroom",
            summary="The central bank held rates.",
            content_html="<p>Markets were steady.</p>",
            section="economy",
            author="Omar Said",
        ),
        Article(
            id="urn:uuid:5f0c3e1a-8f2b-4c35-9e61-0d6a1f7b2c44",
            url="https://news.example.org/en/2026/11/18/festival",
            title="Film festival opens",
            language="en",
            published_at=_at(18, 9),
            updated_at=_at(18, 9),
            source_name="newsroom",
            summary="",
            content_html="<p>The festival opened with a premiere.</p>",
            section="culture",
            image_url="https://news.example.org/img/festival.png",  # no type, no length
        ),
    ]


def arabic() -> list[Article]:
    return [
        Article(
            id="ar-2026-11-20-0042",
            url="https://news.example.org/ar/2026/11/20/talks",
            title="استئناف محادثات وقف إطلاق النار في عمّان",
            language="ar",
            published_at=_at(20, 7),
            updated_at=_at(20, 7),
            source_name="newsroom",
            summary="عاد المفاوضون إلى الطاولة.",
            content_html='<p dir="rtl">استؤنفت المحادثات يوم الجمعة.</p>',
            section="politics",
            author="رنا حداد",
            image_url="https://news.example.org/img/amman-ar.jpg",
            image_type="image/jpeg",
            image_length=51000,
        ),
        Article(
            id="https://news.example.org/ar/2026/11/19/markets",
            url="https://news.example.org/ar/2026/11/19/markets",
            title="استقرار الأسواق",
            language="ar",
            published_at=_at(19, 14),
            updated_at=_at(19, 16),
            source_name="newsroom",
            summary="أبقى المصرف المركزي على أسعار الفائدة.",
            section="economy",
        ),
    ]


def build(
    articles: list[Article],
    language: str = "en",
    feeds: FeedSettings = FEEDS,
    home_url: str | None = None,
) -> dict[str, FeedFile]:
    files = build_feed_files(articles, site=SITE, feeds=feeds, language=language, home_url=home_url)
    return {file.name: file for file in files}


def atom_root(file: FeedFile) -> etree._Element:
    return etree.fromstring(file.content)


# --- files --------------------------------------------------------------------------------------


def test_one_file_per_configured_format_with_its_media_type() -> None:
    files = build_feed_files(english(), site=SITE, feeds=FEEDS, language="en")
    assert [(f.name, f.media_type) for f in files] == [
        ("en.atom.xml", "application/atom+xml"),
        ("en.rss.xml", "application/rss+xml"),
    ]
    only_rss = build_feed_files(
        arabic(), site=SITE, feeds=FEEDS.model_copy(update={"formats": ["rss"]}), language="ar"
    )
    assert [f.name for f in only_rss] == ["ar.rss.xml"]


def test_unusable_language_is_refused() -> None:
    with pytest.raises(ValueError, match="BCP 47"):
        build_feed_files(english(), site=SITE, feeds=FEEDS, language="../en")


# --- Atom, parsed back --------------------------------------------------------------------------


def test_atom_entries_parse_back_with_every_field() -> None:
    parsed = feedparser.parse(build(english())["en.atom.xml"].content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.language == "en"
    ids = [entry.id for entry in parsed.entries]
    assert ids == [
        "https://news.example.org/en/2026/11/20/ceasefire",
        "tag:news.example.org,2026:/en/2026/11/19/markets",
        "urn:uuid:5f0c3e1a-8f2b-4c35-9e61-0d6a1f7b2c44",
    ]
    first, second, third = parsed.entries
    assert first.title == "Ceasefire talks resume in Amman"
    assert first.link == "https://news.example.org/en/2026/11/20/ceasefire"
    assert first.published_parsed[:5] == (2026, 11, 20, 8, 0)
    assert first.updated_parsed[:5] == (2026, 11, 20, 10, 0)
    assert first.author == "Rana Haddad"
    assert [tag.term for tag in first.tags] == ["politics"]
    assert first.summary == "Negotiators return to the table; AT&T-style <tags> stay text."
    assert first.summary_detail.type == "text/plain"
    assert first.content[0].type == "text/html"
    assert first.content[0].value == "<p>Talks <b>resumed</b> on Friday &amp; continued.</p>"
    assert [(e.href, e.type, e.length) for e in first.enclosures] == [
        ("https://news.example.org/img/amman.jpg", "image/jpeg", "48213")
    ]
    alternates = [link.href for link in first.links if link.rel == "alternate"]
    assert alternates == ["https://news.example.org/en/2026/11/20/ceasefire"]  # not the image too
    assert second.enclosures == []
    assert [tag.term for tag in second.tags] == ["economy"]
    assert "author" not in second or second.author == "Omar Said"
    assert third.enclosures[0].type == "image/png"  # guessed from the file name
    assert "length" not in third.enclosures[0]  # unknown: left out of Atom rather than invented
    assert "summary" not in third or third.summary == third.content[0].value  # no summary given


def test_atom_entry_links_carry_rel_type_and_length_in_the_xml() -> None:
    entry = atom_root(build(english())["en.atom.xml"]).find(f"{ATOM}entry")
    assert entry is not None
    links = [dict(link.attrib) for link in entry.findall(f"{ATOM}link")]
    assert links == [
        {"rel": "alternate", "type": "text/html", "href": "https://news.example.org/en/2026/11/20/ceasefire"},
        {
            "rel": "enclosure",
            "type": "image/jpeg",
            "length": "48213",
            "href": "https://news.example.org/img/amman.jpg",
            "title": "Delegates in Amman",
        },
    ]
    content = entry.find(f"{ATOM}content")
    assert content is not None and content.get("type") == "html"
    assert b"CDATA" not in build(english())["en.atom.xml"].content


def test_entries_are_newest_first_and_limited_to_the_setting() -> None:
    few = FEEDS.model_copy(update={"entries": 2})
    parsed = feedparser.parse(build(english(), feeds=few)["en.atom.xml"].content)
    assert [e.link for e in parsed.entries] == [a.url for a in english()[:2]]
    rss = feedparser.parse(build(english(), feeds=few)["en.rss.xml"].content)
    assert [e.link for e in rss.entries] == [a.url for a in english()[:2]]


def test_arabic_feed_declares_its_language_and_keeps_the_text() -> None:
    files = build(arabic(), language="ar")
    root = atom_root(files["ar.atom.xml"])
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "ar"
    atom = feedparser.parse(files["ar.atom.xml"].content)
    rss = feedparser.parse(files["ar.rss.xml"].content)
    assert atom.feed.language == rss.feed.language == "ar"
    assert [e.title for e in atom.entries] == [a.title for a in arabic()]
    assert atom.entries[0].author == "رنا حداد"
    assert atom.entries[0].id == "tag:news.example.org,2026:ar-2026-11-20-0042"
    home = [link.href for link in atom.feed.links if link.rel == "alternate"]
    assert home == ["https://news.example.org/ar/"]


def test_articles_of_another_language_and_repeated_ids_are_left_out() -> None:
    mixed = [english()[0], arabic()[0], english()[0], english()[1]]
    parsed = feedparser.parse(build(mixed)["en.atom.xml"].content)
    assert [e.link for e in parsed.entries] == [english()[0].url, english()[1].url]


# --- RSS, parsed back ---------------------------------------------------------------------------


def test_rss_items_parse_back_with_every_field() -> None:
    parsed = feedparser.parse(build(english())["en.rss.xml"].content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "rss20"
    assert parsed.feed.language == "en"
    assert parsed.feed.link == "https://news.example.org/en/"  # the site, not the feed itself
    first, second, third = parsed.entries
    assert first.id == "https://news.example.org/en/2026/11/20/ceasefire"
    assert second.id == "tag:news.example.org,2026:/en/2026/11/19/markets"
    assert first.published_parsed[:5] == (2026, 11, 20, 8, 0)
    assert first.author == "Rana Haddad"  # dc:creator: RSS <author> must be an e-mail address
    assert [tag.term for tag in first.tags] == ["politics"]
    assert first.summary == "Negotiators return to the table; AT&amp;T-style &lt;tags&gt; stay text."
    assert first.content[0].value == "<p>Talks <b>resumed</b> on Friday &amp; continued.</p>"
    assert [(e.href, e.type, e.length) for e in first.enclosures] == [
        ("https://news.example.org/img/amman.jpg", "image/jpeg", "48213")
    ]
    assert second.enclosures == []
    # RSS requires length on an enclosure: 0 when the size is unknown
    assert [(e.type, e.length) for e in third.enclosures] == [("image/png", "0")]


def test_rss_guid_is_a_permalink_only_when_it_is_the_article_url() -> None:
    items = etree.fromstring(build(english())["en.rss.xml"].content).findall("channel/item")
    assert [item.findtext("guid") for item in items] == [
        "https://news.example.org/en/2026/11/20/ceasefire",
        "tag:news.example.org,2026:/en/2026/11/19/markets",
        "urn:uuid:5f0c3e1a-8f2b-4c35-9e61-0d6a1f7b2c44",
    ]
    assert [item.xpath("string(guid/@isPermaLink)") for item in items] == ["true", "false", "false"]


def test_rss_description_is_escaped_html_of_the_plain_summary() -> None:
    channel = etree.fromstring(build(english())["en.rss.xml"].content).find("channel")
    assert channel is not None
    description = channel.find("item/description")
    assert description is not None
    # as HTML, this text reads exactly as the plain summary did
    assert description.text == "Negotiators return to the table; AT&amp;T-style &lt;tags&gt; stay text."


# --- links --------------------------------------------------------------------------------------


def _feed_links(name: str, file: FeedFile) -> list[dict[str, str]]:
    root = etree.fromstring(file.content)
    parent = root if name.endswith(".atom.xml") else root.find("channel")
    assert parent is not None
    return [dict(link.attrib) for link in parent.findall(f"{ATOM}link")]


@pytest.mark.parametrize("language", ["en", "ar"])
def test_exactly_one_self_link_per_format_pointing_at_its_own_url(language: str) -> None:
    files = build(english() + arabic(), language=language)
    assert len(files) == 2
    for name, file in files.items():
        selves = [link for link in _feed_links(name, file) if link.get("rel") == "self"]
        assert len(selves) == 1, name
        assert selves[0]["href"] == f"https://news.example.org/feeds/{name}"
        assert selves[0]["type"] == file.media_type


def test_every_websub_hub_is_linked_in_both_formats() -> None:
    for name, file in build(english()).items():
        hubs = [link["href"] for link in _feed_links(name, file) if link.get("rel") == "hub"]
        assert hubs == list(FEEDS.websub_hubs), name
    bare = build(english(), feeds=FEEDS.model_copy(update={"websub_hubs": []}))
    for name, file in bare.items():
        assert not [link for link in _feed_links(name, file) if link.get("rel") == "hub"], name


def test_site_alternate_link_can_be_given() -> None:
    files = build(english(), home_url="https://news.example.org/english")
    atom = feedparser.parse(files["en.atom.xml"].content)
    assert [link.href for link in atom.feed.links if link.rel == "alternate"] == [
        "https://news.example.org/english"
    ]
    assert feedparser.parse(files["en.rss.xml"].content).feed.link == "https://news.example.org/english"


# --- dates and stability ------------------------------------------------------------------------


def test_feed_updated_is_the_newest_entry_update_not_now() -> None:
    files = build(english())
    atom = feedparser.parse(files["en.atom.xml"].content)
    newest = max(a.updated_at for a in english())
    assert atom.feed.updated == newest.isoformat()
    channel = etree.fromstring(files["en.rss.xml"].content).find("channel")
    assert channel is not None
    assert parsedate_to_datetime(channel.findtext("lastBuildDate") or "") == newest


class _DatetimeLike(type):
    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, datetime)


class _OtherClock(metaclass=_DatetimeLike):
    """feedgen's `datetime` on a later run: now() has moved, isinstance() checks still pass."""

    @staticmethod
    def now(tz: object = None) -> datetime:
        return datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_rebuilding_with_nothing_new_is_byte_identical_even_later(monkeypatch: pytest.MonkeyPatch) -> None:
    first = build(english())
    monkeypatch.setattr(feedgen.feed, "datetime", _OtherClock)
    monkeypatch.setattr(feedgen.entry, "datetime", _OtherClock)
    assert feedgen.feed.datetime.now(UTC).year == 2031
    again = build(english())
    assert {n: f.content for n, f in again.items()} == {n: f.content for n, f in first.items()}
    assert b"2031" not in again["en.atom.xml"].content


def test_a_newer_article_adds_one_entry_and_moves_only_the_feed_date() -> None:
    few = FEEDS.model_copy(update={"entries": 3})
    before = build(english(), feeds=few)
    newer = replace(
        english()[1],
        id="https://news.example.org/en/2026/11/21/rain",
        url="https://news.example.org/en/2026/11/21/rain",
        title="First rain of the season",
        published_at=_at(21, 6),
        updated_at=_at(21, 6),
    )
    after = build([newer, *english()], feeds=few)
    old_entries = atom_root(before["en.atom.xml"]).findall(f"{ATOM}entry")
    new_entries = atom_root(after["en.atom.xml"]).findall(f"{ATOM}entry")
    assert new_entries[0].findtext(f"{ATOM}id") == newer.id
    # the kept entries are byte for byte what they were: no reader sees them as new or changed
    assert [etree.tostring(e, with_tail=False) for e in new_entries[1:]] == [
        etree.tostring(e, with_tail=False) for e in old_entries[:2]
    ]
    assert atom_root(after["en.atom.xml"]).findtext(f"{ATOM}updated") == "2026-11-21T06:00:00+00:00"
    old_items = etree.fromstring(before["en.rss.xml"].content).findall("channel/item")
    new_items = etree.fromstring(after["en.rss.xml"].content).findall("channel/item")
    assert [etree.tostring(i, with_tail=False) for i in new_items[1:]] == [
        etree.tostring(i, with_tail=False) for i in old_items[:2]
    ]


def test_naive_and_fractional_datetimes_give_the_same_feed() -> None:
    """A store on SQLite hands back naive UTC datetimes, some without microseconds."""
    exact = english()
    blurred = [
        replace(
            article,
            published_at=article.published_at.replace(tzinfo=None),
            updated_at=article.updated_at.replace(microsecond=250_000),
        )
        for article in exact
    ]
    assert build(blurred)["en.atom.xml"].content == build(exact)["en.atom.xml"].content


def test_other_zones_are_written_in_utc_and_updated_never_precedes_published() -> None:
    damascus = timezone(timedelta(hours=3))
    article = replace(
        english()[1],
        published_at=datetime(2026, 11, 19, 21, 0, tzinfo=damascus),
        updated_at=datetime(2026, 11, 19, 12, 0, tzinfo=UTC),  # before published: bad source data
    )
    entry = build_feed([article], site=SITE, feeds=FEEDS, language="en").entries[0]
    assert entry.published == datetime(2026, 11, 19, 18, 0, tzinfo=UTC)
    assert entry.updated == entry.published
    assert entry.published.utcoffset() == timedelta(0)


def test_ids_that_are_not_iris_become_stable_tag_uris() -> None:
    assert atom_id("https://news.example.org/a?b=1", "news.example.org") == "https://news.example.org/a?b=1"
    assert atom_id("urn:isbn:0451450523", "news.example.org") == "urn:isbn:0451450523"
    assert atom_id("42", "news.example.org") == "tag:news.example.org,2026:42"
    assert atom_id("a b/ج", "news.example.org") == "tag:news.example.org,2026:a%20b/%D8%AC"
    assert atom_id("https:/missing-host", "h") == "tag:h,2026:https:/missing-host"
    assert atom_id("42", "news.example.org") == atom_id(" 42 ", "news.example.org")


def test_control_characters_from_sources_do_not_break_the_xml() -> None:
    broken = replace(
        english()[1], title="Markets\x0b steady", summary="bell\x07", content_html="<p>x\x00</p>"
    )
    files = build([broken])
    for file in files.values():
        etree.fromstring(file.content)  # well-formed
    assert feedparser.parse(files["en.atom.xml"].content).entries[0].title == "Markets steady"


def test_an_empty_feed_is_valid_and_stable() -> None:
    files = build([])
    root = atom_root(files["en.atom.xml"])
    assert root.findtext(f"{ATOM}updated") == EMPTY_FEED_UPDATED.isoformat()
    assert not root.findall(f"{ATOM}entry")
    assert build([])["en.rss.xml"].content == files["en.rss.xml"].content
    assert _relax_ng().validate(root), _relax_ng().error_log


# --- validation ---------------------------------------------------------------------------------


def _relax_ng() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(ATOM_RNG)))


@pytest.mark.parametrize("language", ["en", "ar"])
def test_atom_validates_against_the_rfc_4287_schema(language: str) -> None:
    schema = _relax_ng()
    root = atom_root(build(english() + arabic(), language=language)[f"{language}.atom.xml"])
    assert schema.validate(root), schema.error_log


def test_the_schema_rejects_what_feedgen_alone_would_get_wrong() -> None:
    """The schema check is worth something: it catches a missing id and a bad date."""
    schema = _relax_ng()
    root = atom_root(build(english())["en.atom.xml"])
    entry = root.find(f"{ATOM}entry")
    assert entry is not None
    identifier = entry.find(f"{ATOM}id")
    assert identifier is not None
    entry.remove(identifier)
    assert not schema.validate(root)
    root = atom_root(build(english())["en.atom.xml"])
    updated = root.find(f"{ATOM}updated")
    assert updated is not None
    updated.text = "Fri, 20 Nov 2026 10:00:00 +0000"
    assert not schema.validate(root)


@pytest.mark.parametrize("language", ["en", "ar"])
def test_atom_meets_rfc_4287_requirements(language: str) -> None:
    root = atom_root(build(english() + arabic(), language=language)[f"{language}.atom.xml"])
    assert root.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated"):
        assert len(root.findall(f"{ATOM}{name}")) == 1, name
    assert RFC3339.match(root.findtext(f"{ATOM}updated") or "")
    feed_has_author = root.find(f"{ATOM}author/{ATOM}name") is not None
    entries = root.findall(f"{ATOM}entry")
    assert entries
    ids = []
    for entry in entries:
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"{ATOM}{name}")) == 1, name
        ids.append(entry.findtext(f"{ATOM}id") or "")
        assert re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", ids[-1]), ids[-1]  # an absolute IRI
        for name in ("updated", "published"):
            assert RFC3339.match(entry.findtext(f"{ATOM}{name}") or ""), name
        links = entry.findall(f"{ATOM}link")
        alternates = [link for link in links if link.get("rel", "alternate") == "alternate"]
        assert len(alternates) == 1  # one per type and hreflang; ours: exactly one
        assert feed_has_author or entry.find(f"{ATOM}author/{ATOM}name") is not None
        for link in links:
            if link.get("rel") == "enclosure":
                assert link.get("type") and link.get("href")
    assert len(set(ids)) == len(ids)
    updated = [entry.findtext(f"{ATOM}updated") for entry in entries]
    assert root.findtext(f"{ATOM}updated") == max(
        updated, key=lambda text: datetime.fromisoformat(text or "")
    )


def test_rss_meets_the_rss_2_0_requirements() -> None:
    channel = etree.fromstring(build(english())["en.rss.xml"].content).find("channel")
    assert channel is not None
    for name in ("title", "link", "description"):
        assert channel.findtext(name), name
    assert channel.findtext("language") == "en"
    for item in channel.findall("item"):
        assert item.findtext("title") or item.findtext("description")
        assert item.findtext("guid")
        parsedate_to_datetime(item.findtext("pubDate") or "")
        assert item.find("author") is None  # RSS <author> must be an e-mail address
        for enclosure in item.findall("enclosure"):
            assert enclosure.get("url") and enclosure.get("type")
            assert (enclosure.get("length") or "").isdigit()


# --- golden files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["en.atom.xml", "en.rss.xml", "ar.atom.xml", "ar.rss.xml"])
def test_golden_files(name: str) -> None:
    """After a deliberate change: UPDATE_GOLDEN=1 rewrites (and fails), then read the diff (tests.support.golden)."""
    language = name.split(".")[0]
    content = build(english() + arabic(), language=language)[name].content
    assert_golden(GOLDEN / name, content)


# --- subtitle -----------------------------------------------------------------------------------


def test_atom_subtitle_never_repeats_the_title() -> None:
    plain = atom_root(build(english())["en.atom.xml"])
    assert plain.find(f"{ATOM}subtitle") is None  # nothing to say beyond the title: nothing said
    same = FEEDS.model_copy(update={"subtitles": {"en": " levant today "}})
    assert atom_root(build(english(), feeds=same)["en.atom.xml"]).find(f"{ATOM}subtitle") is None
    told = FEEDS.model_copy(update={"subtitles": {"en": "News from the Levant, every hour"}})
    files = build(english(), feeds=told)
    assert atom_root(files["en.atom.xml"]).findtext(f"{ATOM}subtitle") == "News from the Levant, every hour"
    assert feedparser.parse(files["en.rss.xml"].content).feed.subtitle == "News from the Levant, every hour"
    assert _relax_ng().validate(atom_root(files["en.atom.xml"]))
    # RSS requires a description: without a subtitle it is the title
    channel = etree.fromstring(build(english())["en.rss.xml"].content).find("channel")
    assert channel is not None and channel.findtext("description") == "Levant Today"
