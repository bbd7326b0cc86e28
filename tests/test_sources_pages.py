"""Article pages served by a real HTTP server on 127.0.0.1, extracted with trafilatura."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from publisher.config import PageSourceSettings
from publisher.errors import SourceError
from publisher.models import SourceResult, SourceState
from publisher.sources import build_source
from publisher.sources.pages import PageSource
from tests.fixtures.sources.loopback import LoopbackHttpServer, refused_url

PAGES = Path(__file__).parent / "fixtures" / "sources" / "pages"
HTML = "text/html; charset=utf-8"
NOW = datetime(2024, 12, 2, 20, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[LoopbackHttpServer]:
    with LoopbackHttpServer() as running:
        running.route(
            "/en/politics/water-talks-amman", (PAGES / "article-en.html").read_bytes(), content_type=HTML
        )
        running.route(
            "/ar/culture/khan-al-harir-reopens", (PAGES / "article-ar.html").read_bytes(), content_type=HTML
        )
        yield running


def page_source(urls: list[str], *, name: str = "pages", **settings: Any) -> PageSource:
    return PageSource(
        PageSourceSettings(kind="pages", name=name, urls=urls, **settings),
        site_timezone=ZoneInfo("Asia/Damascus"),
        clock=lambda: NOW,
    )


def fetch(source: PageSource) -> SourceResult:
    return source.fetch(SourceState(name=source.name))


def test_english_article_page(server: LoopbackHttpServer) -> None:
    result = fetch(page_source([server.url("/en/politics/water-talks-amman?utm_source=newsletter")]))
    assert result.warnings == []
    (article,) = result.articles
    assert article.title == "Regional Water Talks Open in Amman as Drought Deepens"
    assert article.url == "https://news.example.org/en/politics/water-talks-amman"  # rel=canonical
    assert article.id == article.url
    assert article.author == "Rana Haddad"
    assert article.language == "en"  # <html lang="en-GB">
    assert article.section == "politics"  # article:section, lower-cased
    assert article.published_at == datetime(2024, 12, 2, 5, 30, tzinfo=UTC)  # the exact instant, not the day
    assert article.updated_at == datetime(2024, 12, 2, 7, 5, tzinfo=UTC)
    assert article.image_url == "https://news.example.org/media/2024/12/02/amman-water-talks.jpg"
    assert article.image_alt == "Delegates walking into the conference hall in Amman"
    assert article.image_caption == "وفود الدول الأربع لدى وصولها إلى قاعة المؤتمرات في عمّان"
    assert article.summary.startswith("Delegations from four countries meet in Amman")

    body = article.content_html
    assert body.count("<p>") >= 6
    assert "Delegations from Jordan, Syria, Lebanon and Iraq opened two days of talks" in body
    assert "<h2>" not in body and "<h1>" not in body  # the title is not repeated in the body
    assert (
        'href="https://news.example.org/en/economy/canal-repairs?ref=inline"' in body
    )  # ../ from the article
    for chrome in (
        "Dark Mode",
        "Privacy policy",
        "Central bank holds",
        "Related",
        "All rights reserved",
        "gtag",
    ):
        assert chrome not in body, chrome
    assert "<script" not in body and "onclick" not in body


def test_arabic_article_page(server: LoopbackHttpServer) -> None:
    url = server.url("/ar/culture/khan-al-harir-reopens")
    (article,) = fetch(page_source([url])).articles
    assert article.title == "افتتاح خان الحرير في حلب بعد ترميمه مركزاً للحرف التقليدية"
    assert article.language == "ar"
    assert article.author == "ليلى العمر"  # from JSON-LD @graph
    assert article.published_at == datetime(2024, 12, 2, 9, 40, tzinfo=UTC)
    assert article.url == url  # a relative canonical resolves against where the page came from
    assert article.section == "ثقافة"
    assert article.image_caption == "الفناء الداخلي لخان الحرير بعد انتهاء أعمال الترميم"
    assert article.image_alt == "الفناء الداخلي لخان الحرير بعد الترميم"
    assert "أعادت مدينة حلب، يوم الاثنين، افتتاح خان الحرير التاريخي" in article.content_html
    assert f'href="{server.url("/ar/culture/old-souks")}"' in article.content_html
    assert "الوضع الليلي" not in article.content_html and "جميع الحقوق محفوظة" not in article.content_html
    assert article.summary.startswith("أعادت مدينة حلب افتتاح خان الحرير التاريخي")


def test_configured_section_and_language_apply(server: LoopbackHttpServer) -> None:
    url = server.url("/ar/culture/khan-al-harir-reopens")
    (article,) = fetch(page_source([url], section="culture")).articles
    assert article.section == "culture"

    bare = (
        (PAGES / "article-ar.html")
        .read_text(encoding="utf-8")
        .replace('<html lang="ar" dir="rtl">', "<html>")
    )
    server.route("/bare", bare, content_type=HTML)
    (article,) = fetch(page_source([server.url("/bare")], language="ar")).articles
    assert article.language == "ar"
    result = fetch(page_source([server.url("/bare")], name="nolang"))
    assert result.articles == [] and "sources[nolang]" in result.warnings[0]


def test_one_broken_page_is_a_warning(server: LoopbackHttpServer) -> None:
    good = server.url("/en/politics/water-talks-amman")
    missing = server.url("/en/gone")
    result = fetch(page_source([missing, good], name="picks"))
    assert [a.title for a in result.articles] == ["Regional Water Talks Open in Amman as Drought Deepens"]
    assert len(result.warnings) == 1
    assert f"HTTP 404 from {missing}" in result.warnings[0] and "sources[picks].urls[0]" in result.warnings[0]


def test_a_page_without_an_article_is_a_warning(server: LoopbackHttpServer) -> None:
    empty = server.route(
        "/empty",
        "<!doctype html><html><body><nav><a href='/'>Home</a></nav></body></html>",
        content_type=HTML,
    )
    result = fetch(page_source([empty, server.url("/en/politics/water-talks-amman")]))
    assert len(result.articles) == 1
    assert result.warnings == [f"{empty}: skipped: no article text found in the page"]


def test_every_page_failing_is_a_source_error(server: LoopbackHttpServer) -> None:
    slow = server.route("/slow", (PAGES / "article-en.html").read_bytes(), content_type=HTML, hold=True)
    with pytest.raises(SourceError) as caught:
        fetch(page_source([slow, refused_url("/x")], name="picks", timeout=0.5))
    assert server.completed == {}, "the held page timed out before any answer"
    assert caught.value.source == "picks"
    assert "no page could be read" in caught.value.reason
    assert "within 0.5 s" in caught.value.reason and "refused" in caught.value.reason.lower()


def test_build_source_makes_a_page_source(server: LoopbackHttpServer) -> None:
    source = build_source(
        PageSourceSettings(kind="pages", name="picks", urls=[server.url("/en/politics/water-talks-amman")]),
        site_base_url="https://news.example.org",
        site_timezone="Asia/Damascus",
    )
    result = source.fetch(SourceState(name="picks"))
    assert source.name == "picks" and len(result.articles) == 1
    assert server.requests[-1].headers["accept"].startswith("text/html")


def test_a_legacy_charset_named_only_in_the_page_is_honoured(server: LoopbackHttpServer) -> None:
    page = (
        (PAGES / "article-ar.html")
        .read_text(encoding="utf-8")
        .replace('<meta charset="utf-8">', '<meta charset="windows-1256">')
    )
    server.route("/cp1256", page.encode("windows-1256", errors="replace"), content_type="text/html")
    (article,) = fetch(page_source([server.url("/cp1256")])).articles
    assert article.title == "افتتاح خان الحرير في حلب بعد ترميمه مركزاً للحرف التقليدية"
