"""Normalization shared by every source: safe HTML, absolute URLs, stable ids, plain text, UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.models import Article
from publisher.sources.htmltext import (
    clean_title,
    html_to_text,
    make_summary,
    sanitize_html,
    truncate_at_word,
)
from publisher.sources.normalize import (
    ItemSkipped,
    RawItem,
    build_article,
    canonical_url,
    coerce_datetime,
    keep_newest,
    normalize_items,
    normalize_language,
    parse_datetime,
    stable_id,
    to_utc,
)

HOSTILE = (Path(__file__).parent / "fixtures" / "sources" / "feeds" / "hostile.html").read_text(
    encoding="utf-8"
)
ARTICLE_URL = "https://news.example.org/en/politics/story-1"
DAMASCUS = ZoneInfo("Asia/Damascus")
NOW = datetime(2024, 12, 2, 12, 0, tzinfo=UTC)


# --- sanitizing --------------------------------------------------------------------------------


def test_hostile_html_is_defused() -> None:
    clean = sanitize_html(HOSTILE, base_url=ARTICLE_URL).lower()
    for banned in ("<script", "<style", "<iframe", "<object", "<embed", "<form", "<input", "<svg", "<button"):
        assert banned not in clean, banned
    for banned in ("javascript:", "data:", "onerror", "onclick", "onmouseover", "onload", "style=", "class=",
                   "alert(", "display: none", "target="):  # fmt: skip
        assert banned not in clean, banned
    for dropped_text in ("iframe fallback text", "object fallback", "log in"):
        assert dropped_text not in clean


def test_sanitizing_keeps_the_article() -> None:
    clean = sanitize_html(HOSTILE, base_url=ARTICLE_URL)
    assert "<strong>bold</strong>" in clean
    assert (
        '<a href="https://news.example.org/en/world/story?id=7" rel="noopener">a relative link</a>' in clean
    )
    assert '<img src="https://news.example.org/en/politics/photos/lead.jpg" alt="Lead photo">' in clean
    assert 'href="https://cdn.example.net/file.pdf"' in clean
    assert "<h2>Heading one</h2>" in clean  # h1 is the page's title level
    assert (
        '<figure><img src="https://news.example.org/media/figure.jpg" alt="Figure"><figcaption>Caption text</figcaption></figure>'
        in clean
    )
    assert "<th>Team</th><td>Points</td>" in clean
    assert "javascript link</a>" in clean  # the text stays, the href goes
    assert "data image" not in clean  # an <img> whose only src was data: is removed whole


def test_every_link_gets_rel_noopener_and_only_safe_schemes_survive() -> None:
    clean = sanitize_html(
        '<a href="mailto:desk@news.example.org">mail</a><a href="ftp://x.example/f">ftp</a>'
        '<a href="vbscript:msgbox(1)">vb</a><img src="file:///etc/passwd">',
        base_url=ARTICLE_URL,
    )
    assert clean == (
        '<a href="mailto:desk@news.example.org" rel="noopener">mail</a><a rel="noopener">ftp</a>'
        '<a rel="noopener">vb</a>'
    )


def test_arabic_and_direction_survive_sanitizing() -> None:
    clean = sanitize_html('<p dir="rtl" lang="ar">مرحباً <b>بالعالم</b></p>', base_url=ARTICLE_URL)
    assert clean == '<p dir="rtl" lang="ar">مرحباً <b>بالعالم</b></p>'


# --- plain text --------------------------------------------------------------------------------


def test_titles_are_one_line_with_entities_decoded() -> None:
    assert clean_title("Talks\r\n  resume &amp; \tcontinue", is_html=False) == "Talks resume & continue"
    assert clean_title("5 &lt; 6 <em>really</em>\n", is_html=True) == "5 < 6 really"
    assert (
        clean_title("&#1593;&#1605;&#1617;&#1575;&#1606; &quot;today&quot;", is_html=False) == 'عمّان "today"'
    )


def test_html_to_text_separates_blocks_and_hides_scripts() -> None:
    text = html_to_text("<p>One</p><p>Two<br>three</p><script>var x;</script><ul><li>a</li><li>b</li></ul>")
    assert text == "One Two three a b"


def test_summary_is_capped_at_a_word_boundary() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    summary = make_summary(f"<p>{words}</p>", None)
    assert len(summary) <= 300 and summary.endswith("…")
    assert summary[:-1].split(" ")[-1].startswith("word")  # no half word before the ellipsis
    assert words.startswith(summary[:-1])


def test_summary_comes_from_the_body_when_there_is_none() -> None:
    assert make_summary(None, "<h2>Head</h2><p>Body  text\n here.</p>") == "Head Body text here."
    assert make_summary("", "") == ""


def test_arabic_summary_is_cut_between_words() -> None:
    sentence = "أعادت مدينة حلب افتتاح خان الحرير التاريخي بعد أعمال ترميم استمرت أربع سنوات، "
    summary = truncate_at_word(sentence * 10, 120)
    assert len(summary) <= 120 and summary.endswith("…")
    assert (sentence * 10).startswith(summary[:-1])
    assert (sentence * 10)[len(summary) - 1] in " ،"


# --- URLs and ids ------------------------------------------------------------------------------


def test_tracking_parameters_are_removed_from_ids() -> None:
    url = (
        "HTTPS://News.Example.org:443/ar/politics/story?id=12&utm_source=fb&utm_medium=social&fbclid=IwAR"
        "&gclid=abc&mc_cid=1&mc_eid=2&ref=home&lang=ar#comments"
    )
    assert canonical_url(url) == "https://news.example.org/ar/politics/story?id=12&lang=ar"
    assert stable_id(None, url, source_name="s") == "https://news.example.org/ar/politics/story?id=12&lang=ar"


def test_guids_win_over_urls_and_are_stable() -> None:
    url = "https://news.example.org/a?utm_source=x"
    assert stable_id("tag:news.example.org,2024:1", url, source_name="s") == "tag:news.example.org,2024:1"
    assert stable_id("urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427", url, source_name="s").startswith(
        "urn:uuid:"
    )
    assert (
        stable_id("https://news.example.org/p/9?utm_campaign=rss", url, source_name="s")
        == "https://news.example.org/p/9"
    )
    assert stable_id("9", url, source_name="site-ar") == "site-ar:9"
    assert stable_id("  ", url, source_name="s") == "https://news.example.org/a"


def test_canonical_url_keeps_meaningful_parameters_and_encodes_unicode_paths() -> None:
    assert canonical_url("https://news.example.org/?p=12&page=2") == "https://news.example.org/?p=12&page=2"
    assert canonical_url("http://news.example.org:8080/x") == "http://news.example.org:8080/x"
    assert (
        canonical_url("https://news.example.org/ar/خبر") == "https://news.example.org/ar/%D8%AE%D8%A8%D8%B1"
    )


# --- languages and dates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("en-US", "en"),
        ("AR", "ar"),
        ("ar_SY", "ar"),
        ("en", "en"),
        ("", None),
        (None, None),
        ("not a tag", None),
    ],
)
def test_language_is_the_lower_case_primary_tag(tag: str | None, expected: str | None) -> None:
    assert normalize_language(tag) == expected


def test_dates_with_and_without_zones() -> None:
    assert parse_datetime("Mon, 02 Dec 2024 07:05:00 +0300") == datetime(2024, 12, 2, 4, 5, tzinfo=UTC)
    assert parse_datetime("Mon, 02 Dec 2024 07:05:00 GMT") == datetime(2024, 12, 2, 7, 5, tzinfo=UTC)
    assert parse_datetime("2024-12-02T07:05:00Z") == datetime(2024, 12, 2, 7, 5, tzinfo=UTC)
    naive = parse_datetime("Mon, 02 Dec 2024 07:05:00")
    assert naive == datetime(2024, 12, 2, 7, 5) and naive.tzinfo is None
    assert parse_datetime("yesterday") is None


def test_naive_times_are_site_time_and_everything_ends_in_utc() -> None:
    assert to_utc(datetime(2024, 12, 2, 0, 10), DAMASCUS) == datetime(2024, 12, 1, 21, 10, tzinfo=UTC)
    aware = datetime(2024, 12, 2, 0, 10, tzinfo=timezone(timedelta(hours=2)))
    assert to_utc(aware, DAMASCUS) == datetime(2024, 12, 1, 22, 10, tzinfo=UTC)
    assert to_utc(aware, DAMASCUS).tzinfo is UTC


def test_front_matter_values_become_datetimes() -> None:
    assert coerce_datetime(date(2024, 12, 2)) == datetime(2024, 12, 2, 0, 0)
    assert coerce_datetime("2024-12-02 09:15") == datetime(2024, 12, 2, 9, 15)
    assert coerce_datetime(None) is None
    with pytest.raises(ValueError, match="not a date"):
        coerce_datetime("next Tuesday")


# --- building articles -------------------------------------------------------------------------


def raw(**fields: object) -> RawItem:
    values: dict[str, object] = {
        "where": "entry 1",
        "url": ARTICLE_URL,
        "title": "A title",
        "published": datetime(2024, 12, 2, 9, 0),
        "language": "en-GB",
    }
    values.update(fields)
    return RawItem(**values)  # type: ignore[arg-type]


def build(item: RawItem, fallback: str | None = None) -> tuple[Article, list[str]]:
    return build_article(
        item, source_name="src", zone=DAMASCUS, now=NOW, fallback_language=fallback, language_hint="set it"
    )


def test_an_undated_item_is_stamped_now_and_flagged() -> None:
    article, warnings = build(raw(published=None, where="entry 7 'Late news'"))
    assert article.undated is True
    assert article.published_at == NOW == article.updated_at
    assert warnings == [f"entry 7 'Late news' has no date; using the time first seen ({NOW.isoformat()})"]


def test_updated_never_precedes_published_and_image_is_absolute() -> None:
    article, warnings = build(
        raw(
            updated=datetime(2024, 12, 1, 9, 0),
            image_url="../media/a.jpg",
            image_caption=" Caption\n",
            image_length=0,
        )
    )
    assert warnings == []
    assert article.published_at == article.updated_at == datetime(2024, 12, 2, 6, 0, tzinfo=UTC)
    assert article.image_url == "https://news.example.org/en/media/a.jpg"
    assert article.image_caption == "Caption"
    assert article.image_length is None


def test_unsafe_image_urls_are_dropped_with_their_caption() -> None:
    article, _ = build(raw(image_url="javascript:alert(1)", image_caption="c", image_alt="a"))
    assert (article.image_url, article.image_caption, article.image_alt) == (None, None, None)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"url": None}, "has no link"),
        ({"url": "javascript:alert(1)"}, "has no link"),
        ({"title": " \n "}, "has no title"),
        ({"title": "<p></p>", "title_is_html": True}, "has no title"),
        ({"language": None}, r"language is unknown \(set it\)"),
    ],
)
def test_unusable_items_are_skipped_with_a_reason(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(ItemSkipped, match=reason):
        build(raw(**fields))


def test_fallback_language_applies_only_when_the_item_has_none() -> None:
    assert build(raw(language=None), fallback="AR")[0].language == "ar"
    assert build(raw(language="en"), fallback="ar")[0].language == "en"


def test_within_one_fetch_the_newest_version_of_an_id_wins() -> None:
    items = [
        raw(guid="g1", title="old", updated=datetime(2024, 12, 2, 10, 0)),
        raw(guid="g2", title="other"),
        raw(guid="g1", title="new", updated=datetime(2024, 12, 2, 11, 0)),
        raw(guid="g1", title="stale", updated=datetime(2024, 12, 2, 9, 30)),
    ]
    articles, warnings = normalize_items(
        items, source_name="src", zone=DAMASCUS, now=NOW, fallback_language=None, language_hint="x"
    )
    assert [(a.id, a.title) for a in articles] == [("src:g1", "new"), ("src:g2", "other")]
    # the versions not kept are reported, never dropped silently
    assert len(warnings) == 2 and all(": skipped: it is an older version of" in w for w in warnings)
    assert keep_newest(articles) == articles
