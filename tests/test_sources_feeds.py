"""Feed sources against a real HTTP server on 127.0.0.1: formats, conditional GET, broken feeds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from publisher.config import FeedSourceSettings
from publisher.errors import SourceError
from publisher.models import SourceState
from publisher.sources import build_source
from publisher.sources.feeds import FeedSource
from tests.fixtures.sources.loopback import LoopbackHttpServer, refused_url

FEEDS = Path(__file__).parent / "fixtures" / "sources" / "feeds"
ZONE = ZoneInfo("Asia/Damascus")
NOW = datetime(2024, 12, 2, 20, 0, tzinfo=UTC)
RSS = "application/rss+xml; charset=utf-8"


@pytest.fixture
def server() -> Iterator[LoopbackHttpServer]:
    with LoopbackHttpServer() as running:
        yield running


def feed_source(
    url: str, *, name: str = "site-feed", default_language: str | None = None, **settings: Any
) -> FeedSource:
    return FeedSource(
        FeedSourceSettings(kind="feed", name=name, url=url, **settings),
        site_timezone=ZONE,
        default_language=default_language,
        clock=lambda: NOW,
    )


def fetch(source: FeedSource, **state: Any) -> Any:
    return source.fetch(SourceState(name=source.name, **state))


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- formats -----------------------------------------------------------------------------------


def test_rss2_entries_become_articles(server: LoopbackHttpServer) -> None:
    url = server.route("/ar/rss.xml", (FEEDS / "rss2.xml").read_bytes(), content_type=RSS)
    result = fetch(feed_source(url, section="economy"))

    titles = [a.title for a in result.articles]
    assert titles == [
        "انطلاق محادثات إقليمية حول المياه في عمّان & جولة ثانية الشهر المقبل",
        "تراجع صادرات زيت الزيتون",
        "خبر بلا تاريخ",
    ]
    talks, olive, undated = result.articles
    # a URL-shaped GUID loses its tracking parameters
    assert talks.id == "https://news.example.org/ar/politics/water-talks"
    assert talks.language == "ar"  # <language>ar-SY</language>
    assert talks.section == "politics"  # the first category, lower-cased
    assert talks.author == "رنا حداد"
    assert talks.published_at == utc(2024, 12, 2, 4, 5)
    assert talks.published_at.tzinfo is UTC
    assert talks.image_url == "https://news.example.org/media/2024/12/02/king-talal-dam.jpg"
    assert talks.image_type == "image/jpeg" and talks.image_length == 184320
    assert talks.image_caption == "بحيرة سد الملك طلال وقد انحسرت مياهها"
    assert (
        talks.summary == "تبدأ اليوم في عمّان جولة محادثات تضمّ وفوداً من أربع دول لبحث تقاسم مياه حوض اليرموك."
    )
    assert "<script" not in talks.content_html and "tracker" not in talks.content_html
    assert 'src="https://news.example.org/media/2024/12/02/dam.jpg"' in talks.content_html
    assert 'href="https://news.example.org/ar/politics/background"' in talks.content_html

    # relative link resolved against the feed's address; bare GUID qualified by the source name
    assert olive.url == server.url("/ar/economy/olive-oil?fbclid=IwAR0abc&page=2")
    assert olive.id == f"{url}:ar-1002"  # a bare GUID is unique within its feed, whatever the source is called
    assert olive.section == "economy"  # no category: the configured section
    assert olive.image_url == "https://news.example.org/media/2024/12/02/olive-harvest.jpg"
    assert olive.image_length == 99840
    assert olive.summary == "تراجعت الصادرات بنحو الربع."

    assert undated.undated is True and undated.published_at == NOW == undated.updated_at
    assert talks.undated is False


def test_rss2_item_problems_are_warnings_naming_the_item(server: LoopbackHttpServer) -> None:
    url = server.route("/ar/rss.xml", (FEEDS / "rss2.xml").read_bytes(), content_type=RSS)
    result = fetch(feed_source(url))
    warnings = "\n".join(result.warnings)
    assert "entry 3 'خبر بلا رابط': skipped: it has no link" in warnings
    assert "entry 4 'https://news.example.org/ar/culture/untitled': skipped: it has no title" in warnings
    assert "entry 5 'خبر بلا تاريخ' has no date; using the time first seen" in warnings
    assert len(result.warnings) == 3


def test_atom_entries_with_xml_base_language_and_dedup(server: LoopbackHttpServer) -> None:
    url = server.route("/en/atom.xml", (FEEDS / "atom.xml").read_bytes(), content_type="application/atom+xml")
    result = fetch(feed_source(url))

    assert [a.id for a in result.articles] == [
        "tag:news.example.org,2024:en-2001",
        "tag:news.example.org,2024:ar-2002",
    ]
    fuel, calligraphy = result.articles
    assert fuel.title == "Fuel prices rise at midnight"  # type="html": tags stripped
    assert fuel.url == "https://news.example.org/en/economy/fuel-prices"
    assert fuel.published_at == utc(2024, 12, 1, 21, 10)  # 00:10 in Damascus is the previous UTC day
    assert fuel.updated_at == utc(2024, 12, 1, 22, 0)  # the newer copy of the duplicated id won
    assert fuel.summary == "Petrol and diesel prices went up at midnight."
    assert fuel.section == "economy"
    assert fuel.author == "Omar Nasser"
    assert fuel.image_url == "https://news.example.org/media/2024/12/02/fuel-station-queue.jpg"
    assert fuel.image_length == 120000
    assert 'src="https://news.example.org/media/2024/12/02/pump.jpg"' in fuel.content_html

    assert calligraphy.language == "ar"  # the entry's xml:lang beats the feed's
    assert fuel.language == "en"
    assert calligraphy.published_at == utc(2024, 12, 2, 9, 40)  # only <updated> given
    assert calligraphy.image_url == "https://news.example.org/media/2024/12/02/calligraphy-thumb.jpg"
    assert calligraphy.image_caption == "لوحات بخط الثلث"
    assert calligraphy.summary == "يُفتتح مساء اليوم معرض «حبر وضوء»."
    # the older copy of the duplicated entry is reported by name, not dropped silently
    assert result.warnings == [
        "entry 2 'Fuel prices: first version': skipped: it is an older version of entry 1 "
        "'Fuel prices rise <em>at midnight</em>' (same GUID and link), which is kept"
    ]


def test_rdf_rss1_feed(server: LoopbackHttpServer) -> None:
    url = server.route("/en/rdf", (FEEDS / "rdf.xml").read_bytes(), content_type="application/rdf+xml")
    result = fetch(feed_source(url, section="culture"))
    marathon, film = result.articles
    assert marathon.title == "Record 9,000 runners expected at Friday's marathon"
    assert marathon.id == "https://news.example.org/en/sports/marathon"
    assert marathon.language == "en"  # dc:language en-GB
    assert marathon.section == "sports"  # dc:subject
    assert marathon.author == "Tariq Hamdan"
    assert marathon.published_at == utc(2024, 12, 2, 15, 15)
    assert film.section == "culture"
    assert film.published_at == utc(2024, 12, 2, 11, 30)


def test_json_feed_1_1(server: LoopbackHttpServer) -> None:
    url = server.route(
        "/ar/sports/feed.json", (FEEDS / "feed-1.1.json").read_bytes(), content_type="application/feed+json"
    )
    result = fetch(feed_source(url))
    derby, marathon = result.articles
    assert derby.id == "https://news.example.org/ar/sports/derby"  # utm_campaign and gclid removed
    assert derby.title == "الجيش يحسم ديربي العاصمة أمام الوحدة"  # no CR/LF left
    assert derby.language == "ar"
    assert derby.section == "sports"
    assert derby.author == "مهنّد الأحمد"
    assert derby.published_at == utc(2024, 12, 2, 13, 0)
    assert derby.updated_at == utc(2024, 12, 2, 13, 45)
    assert derby.image_url == "https://news.example.org/media/2024/12/02/damascus-derby.jpg"
    assert "onerror" not in derby.content_html
    assert 'src="https://news.example.org/media/2024/12/02/goal.jpg"' in derby.content_html
    assert derby.summary == "قلب الجيش تأخّره بهدف إلى فوز بهدفين لهدف."

    assert marathon.id == f"{url}:en-3002"
    assert marathon.language == "en"  # the item's en-US beats the feed's ar
    assert marathon.author == "قسم الرياضة"  # the feed's authors
    assert marathon.image_url == "https://news.example.org/media/2024/12/02/marathon.jpg"
    assert marathon.image_type == "image/jpeg" and marathon.image_length == 204800
    assert marathon.image_caption == "Runners downtown"
    assert "Roads will close &lt;early&gt;." in marathon.content_html  # content_text is escaped, not parsed
    assert marathon.summary == "Organisers expect about 9,000 runners. Roads will close <early>."
    assert result.warnings == [
        "item 3 'An item without any URL': skipped: it has no link (an absolute http(s) URL is required)"
    ]


def test_json_feed_1_0_detected_by_content(server: LoopbackHttpServer) -> None:
    # served as text/plain: recognized by its first byte, not by the header
    url = server.route("/feed", (FEEDS / "feed-1.0.json").read_bytes(), content_type="text/plain")
    (article,) = fetch(feed_source(url, language="en")).articles
    assert article.author == "Culture desk"
    assert article.language == "en"  # from the settings: the feed names none
    assert article.published_at == utc(2024, 12, 2, 17, 50)


# --- languages ---------------------------------------------------------------------------------


def test_language_falls_back_to_settings_then_default_then_skips(server: LoopbackHttpServer) -> None:
    body = (FEEDS / "rdf.xml").read_text(encoding="utf-8").replace("<dc:language>en-GB</dc:language>", "")
    url = server.route("/rdf", body)
    assert {a.language for a in fetch(feed_source(url, language="EN-us")).articles} == {"en"}
    assert {a.language for a in fetch(feed_source(url, default_language="ar")).articles} == {"ar"}
    result = fetch(feed_source(url, name="nolang"))
    assert result.articles == []
    assert all("language is unknown" in w and "sources[nolang]" in w for w in result.warnings)


# --- conditional GET ---------------------------------------------------------------------------


def test_etag_and_last_modified_are_sent_back_and_304_is_not_modified(server: LoopbackHttpServer) -> None:
    last_modified = "Mon, 02 Dec 2024 09:00:00 GMT"
    url = server.route(
        "/en/atom.xml", (FEEDS / "atom.xml").read_bytes(), etag='"v42"', last_modified=last_modified
    )
    source = feed_source(url)

    first = fetch(source)
    assert first.not_modified is False and len(first.articles) == 2
    assert (first.etag, first.last_modified) == ('"v42"', last_modified)
    assert "if-none-match" not in server.requests[0].headers

    second = fetch(source, etag=first.etag, last_modified=first.last_modified)
    received = server.requests[1].headers
    assert received["if-none-match"] == '"v42"'
    assert received["if-modified-since"] == last_modified
    assert second.not_modified is True
    assert second.articles == []
    assert (second.etag, second.last_modified) == ('"v42"', last_modified)


def test_a_changed_feed_is_fetched_again(server: LoopbackHttpServer) -> None:
    url = server.route("/en/atom.xml", (FEEDS / "atom.xml").read_bytes(), etag='"v2"')
    result = fetch(feed_source(url), etag='"v1"')
    assert server.requests[0].headers["if-none-match"] == '"v1"'
    assert result.not_modified is False and result.etag == '"v2"' and len(result.articles) == 2


def test_the_same_bytes_under_the_same_settings_are_not_parsed_again(
    server: LoopbackHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server without validators sends the whole feed again: the same bytes are recognized by their
    digest and answered like a 304; other bytes or other settings are read in full."""
    body = (FEEDS / "atom.xml").read_bytes()
    url = server.route("/en/atom.xml", body)
    first = fetch(feed_source(url))
    assert len(first.articles) == 2 and first.content_digest

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the feed was parsed again")

    with monkeypatch.context() as patched:
        patched.setattr("publisher.sources.feeds.parse_xml_feed", no_parse)
        again = fetch(feed_source(url), content_digest=first.content_digest)
    assert len(server.requests) == 2  # fetched, not cached: only the parse was spared
    assert again.not_modified is True and again.articles == [] and again.content_digest == first.content_digest

    other_settings = fetch(feed_source(url, section="economy"), content_digest=first.content_digest)
    assert other_settings.not_modified is False and len(other_settings.articles) == 2
    assert other_settings.content_digest not in (None, first.content_digest)
    server.route("/en/atom.xml", body.replace(b"</title>", b" (corrected)</title>", 1))
    changed = fetch(feed_source(url), content_digest=first.content_digest)
    assert changed.not_modified is False and len(changed.articles) == 2
    assert changed.content_digest not in (None, first.content_digest)


def test_a_read_that_held_an_item_back_is_read_again_when_its_day_comes(server: LoopbackHttpServer) -> None:
    feed = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title><language>en</language>'
        "<item><title>Tomorrow's story</title><link>https://news.example.org/en/tomorrow</link>"
        "<pubDate>Wed, 04 Dec 2024 09:00:00 +0000</pubDate></item></channel></rss>"
    )
    url = server.route("/en/rss.xml", feed, content_type=RSS)
    held = fetch(feed_source(url))  # NOW is the 2nd, 20:00 UTC: more than a day ahead
    assert held.articles == [] and any("held back" in w for w in held.warnings)
    assert held.content_digest is None  # nothing recorded: the same bytes must be read again
    later = FeedSource(
        FeedSourceSettings(kind="feed", name="site-feed", url=url),
        site_timezone=ZONE,
        clock=lambda: datetime(2024, 12, 4, 9, 0, tzinfo=UTC),
    )
    taken = fetch(later, content_digest=held.content_digest)
    assert [a.title for a in taken.articles] == ["Tomorrow's story"] and taken.content_digest


def test_every_request_has_a_timeout_and_our_user_agent(server: LoopbackHttpServer) -> None:
    url = server.route("/en/atom.xml", (FEEDS / "atom.xml").read_bytes())
    fetch(feed_source(url))
    assert server.requests[0].headers["user-agent"].startswith("publisher/")
    assert "application/atom+xml" in server.requests[0].headers["accept"]


def test_a_shared_session_is_used_and_left_open(server: LoopbackHttpServer) -> None:
    url = server.route("/en/atom.xml", (FEEDS / "atom.xml").read_bytes())
    with requests.Session() as session:
        session.headers["User-Agent"] = "publisher-test (+https://news.example.org)"
        source = build_source(
            FeedSourceSettings(kind="feed", name="shared", url=url),
            site_base_url="https://news.example.org",
            site_timezone="Asia/Damascus",
            session=session,
        )
        source.fetch(SourceState(name="shared"))
        source.fetch(SourceState(name="shared"))
    assert [r.headers["user-agent"] for r in server.requests] == [
        "publisher-test (+https://news.example.org)"
    ] * 2


# --- broken sources ----------------------------------------------------------------------------


def test_http_500_names_the_source_and_the_remedy(server: LoopbackHttpServer) -> None:
    url = server.route("/feed.xml", "<h1>Internal Server Error</h1>", status=500, content_type="text/html")
    with pytest.raises(SourceError) as caught:
        fetch(feed_source(url, name="site-english"))
    assert caught.value.source == "site-english"
    assert f"HTTP 500 from {url}" in caught.value.reason
    assert "retry later" in caught.value.reason and "sources[site-english].url" in caught.value.reason
    assert "site-english" in str(caught.value)


def test_http_404_says_to_check_the_url(server: LoopbackHttpServer) -> None:
    with pytest.raises(SourceError, match=r"HTTP 404 .*moved or removed.*sources\[gone\]\.url"):
        fetch(feed_source(server.url("/missing.xml"), name="gone"))


def test_a_slow_server_times_out_at_the_configured_timeout(server: LoopbackHttpServer) -> None:
    # the server holds its answer until the test releases it: only the client's timeout ends the wait
    url = server.route("/slow.xml", (FEEDS / "atom.xml").read_bytes(), hold=True)
    with pytest.raises(SourceError) as caught:
        fetch(feed_source(url, name="slow", timeout=0.5))
    assert server.completed == {}, "the client gave up before any answer"
    assert caught.value.source == "slow"
    assert "within 0.5 s" in caught.value.reason and "sources[slow].timeout" in caught.value.reason


def test_connection_refused() -> None:
    url = refused_url()
    with pytest.raises(SourceError) as caught:
        fetch(feed_source(url, name="down", timeout=2))
    assert caught.value.source == "down"
    assert f"cannot connect to {url}" in caught.value.reason
    assert "refused" in caught.value.reason.lower()


def test_malformed_xml_without_entries_is_a_source_error(server: LoopbackHttpServer) -> None:
    url = server.route(
        "/broken.xml", '<?xml version="1.0"?><rss version="2.0"><channel><title>x</title></chan'
    )
    with pytest.raises(SourceError) as caught:
        fetch(feed_source(url, name="broken"))
    assert caught.value.source == "broken"
    assert "not well-formed XML" in caught.value.reason and "line 1" in caught.value.reason


def test_malformed_xml_with_entries_is_kept_with_a_warning(server: LoopbackHttpServer) -> None:
    body = (FEEDS / "rss2.xml").read_text(encoding="utf-8").replace("</channel>\n</rss>", "</channel>")
    body = body.replace(
        "<title>تراجع صادرات زيت الزيتون</title>", "<title>تراجع صادرات زيت الزيتون & المزيد</title>"
    )
    url = server.route("/sloppy.xml", body, content_type=RSS)
    result = fetch(feed_source(url))
    assert len(result.articles) >= 2
    assert "the feed is not well-formed" in result.warnings[0]


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/rss+xml"])
def test_an_html_page_instead_of_a_feed_is_a_source_error(
    server: LoopbackHttpServer, content_type: str
) -> None:
    page = (
        "<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>"
        "<body><h1>Checking your browser</h1><p>Please enable JavaScript.</p></body></html>"
    )
    url = server.route("/feed", page, content_type=content_type)
    with pytest.raises(SourceError) as caught:
        fetch(feed_source(url, name="walled"))
    assert caught.value.source == "walled"
    assert "HTML page, not a feed" in caught.value.reason


def test_xml_that_is_not_a_feed_is_a_source_error(server: LoopbackHttpServer) -> None:
    sitemap = '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://news.example.org/</loc></url></urlset>'
    url = server.route("/sitemap.xml", sitemap)
    with pytest.raises(SourceError, match="not RSS, Atom or RDF"):
        fetch(feed_source(url))


def test_json_that_is_not_a_json_feed_is_a_source_error(server: LoopbackHttpServer) -> None:
    url = server.route("/api", '{"error": "rate limited"}', content_type="application/json")
    with pytest.raises(SourceError, match="not a JSON Feed"):
        fetch(feed_source(url))


def test_an_empty_but_valid_feed_gives_no_articles_and_no_error(server: LoopbackHttpServer) -> None:
    url = server.route(
        "/empty.xml", '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
    )
    result = fetch(feed_source(url))
    assert result.articles == [] and result.warnings == []


# --- local files -------------------------------------------------------------------------------


def test_local_path_and_file_url(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes((FEEDS / "atom.xml").read_bytes())
    by_path = fetch(feed_source(str(path)))
    by_url = fetch(feed_source(path.as_uri()))
    assert [a.id for a in by_path.articles] == [a.id for a in by_url.articles]
    assert len(by_path.articles) == 2 and by_path.warnings == by_url.warnings


def test_a_relative_local_path_resolves_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "feed.json").write_bytes((FEEDS / "feed-1.0.json").read_bytes())
    source = build_source(
        FeedSourceSettings(kind="feed", name="local", url="feeds/feed.json", language="en"),
        site_base_url="https://news.example.org",
        base_dir=tmp_path,
    )
    assert len(source.fetch(SourceState(name="local")).articles) == 1


def test_an_unchanged_local_file_is_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes((FEEDS / "rdf.xml").read_bytes())
    source = feed_source(str(path))
    first = fetch(source)
    assert first.last_modified and not first.not_modified
    assert fetch(source, last_modified=first.last_modified).not_modified is True
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 60))
    assert fetch(source, last_modified=first.last_modified).not_modified is False


def test_a_missing_local_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        fetch(feed_source(str(tmp_path / "nowhere.xml"), name="lost"))
    assert caught.value.source == "lost" and "no such file" in caught.value.reason


def test_a_feed_served_with_a_non_xml_content_type_is_fine(server: LoopbackHttpServer) -> None:
    url = server.route("/rdf.txt", (FEEDS / "rdf.xml").read_bytes(), content_type="text/plain")
    result = fetch(feed_source(url))
    assert len(result.articles) == 2 and result.warnings == []


def test_a_wrong_declared_encoding_is_a_warning_not_an_error(server: LoopbackHttpServer) -> None:
    body = (FEEDS / "rss2.xml").read_bytes().replace(b'encoding="utf-8"', b'encoding="us-ascii"')
    url = server.route("/ascii.xml", body, content_type="application/rss+xml")
    result = fetch(feed_source(url))
    assert len(result.articles) == 3
    assert result.warnings[0] == "the feed declares ascii but is UTF-8; read as UTF-8"


def test_bytes_that_are_not_xml_at_all_are_a_source_error(server: LoopbackHttpServer) -> None:
    url = server.route("/garbage", b"hello world\x00\xff", content_type="application/octet-stream")
    with pytest.raises(SourceError, match="not well-formed XML"):
        fetch(feed_source(url))


def test_a_body_naming_a_local_file_is_never_opened(server: LoopbackHttpServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes((FEEDS / "rdf.xml").read_bytes())
    url = server.route("/sneaky", str(secret), content_type="application/xml")
    with pytest.raises(SourceError):  # feedparser would read the file if handed the bytes directly
        fetch(feed_source(url))


def test_a_server_dripping_bytes_cannot_outlast_the_timeout(server: LoopbackHttpServer) -> None:
    # each piece arrives well within the read timeout, but the whole body would take over a minute
    body = (FEEDS / "rdf.xml").read_bytes() + b"<!--" + b" " * 40_000 + b"-->\n"
    url = server.route("/drip.xml", body, drip=0.03)
    with pytest.raises(SourceError, match=r"did not finish sending within 0\.5 s"):
        fetch(feed_source(url, timeout=0.5))
    assert server.completed == {}, "the client gave up while the body was still coming"
