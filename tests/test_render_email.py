"""The digest renderer: Jinja2 -> MJML -> inlined HTML, plain text, RTL, dark mode, overrides, goldens.

Golden files live in tests/golden/email/, compared by tests.support.golden.assert_golden (after an
intended change: UPDATE_GOLDEN=1 rewrites and fails; review the diff, run again; refused under CI).
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from publisher.config import EditionSettings, SiteSettings
from publisher.errors import TemplateError
from publisher.models import Article
from publisher.render.email import DigestRenderer
from publisher.render.slots import Slot, fill_slots, token
from publisher.render.templates import PACKAGED_TEMPLATES, autoescape_for, make_environment
from tests.support.golden import assert_golden

GOLDEN = Path(__file__).parent / "golden" / "email"
DAY = date(2024, 12, 2)
SITE = SiteSettings(
    name="Levant Today",
    base_url="https://news.example.org",
    timezone="Asia/Damascus",
    logo_url="/static/logo.png",
    public_url="https://news.example.org",
    secret="test-secret-0123456789",
    unsubscribe_mailto="unsubscribe@news.example.org",
)
EDITIONS = {
    "en": EditionSettings.model_validate(
        {
            "id": "en",
            "language": "en",
            "title": "Levant Today — Morning Digest",
            "subject": "{site}: the day's news, {date}",
            "from": "Levant Today <digest@news.example.org>",
            "reply_to": "newsroom@news.example.org",
            "sections": ["politics", "economy", "culture", "sports"],
        }
    ),
    "ar": EditionSettings.model_validate(
        {
            "id": "ar",
            "language": "ar",
            "title": "ليفانت اليوم — النشرة الصباحية",
            "subject": "{site}: أخبار اليوم، {date} ({count})",
            "from": "ليفانت اليوم <digest@news.example.org>",
            "reply_to": "newsroom@news.example.org",
            "sections": ["politics", "economy", "culture", "sports"],
        }
    ),
}


def load_articles(language: str) -> list[Article]:
    rows = json.loads((GOLDEN / "articles.json").read_text(encoding="utf-8"))[language]
    return [
        Article(
            **{
                **row,
                "published_at": datetime.fromisoformat(row["published_at"]),
                "updated_at": datetime.fromisoformat(row["updated_at"]),
            }
        )
        for row in rows
    ]


def renderer(language: str, operator_dir: Path | None = None) -> DigestRenderer:
    return DigestRenderer(make_environment(operator_dir), SITE, EDITIONS[language])


class Collector(HTMLParser):
    """Tags with their attributes, and the visible text, of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Collector:
    collector = Collector()
    collector.feed(html)
    return collector


def check_golden(name: str, actual: str) -> None:
    assert_golden(GOLDEN / name, actual)


# --- environment ----------------------------------------------------------------------------------


def test_autoescape_covers_mjml_and_html_but_not_text() -> None:
    assert autoescape_for("email/digest.mjml.j2")
    assert autoescape_for("web/page.html.j2")
    assert autoescape_for("web/page.html")
    assert autoescape_for("feeds/x.xml")
    assert not autoescape_for("email/digest.txt.j2")
    env = make_environment(None)
    assert env.from_string("{{ t }}").render(t="<b>") == "&lt;b&gt;"


def test_localized_date_filter_in_arabic() -> None:
    env = make_environment(None)
    rendered = env.from_string('{{ d | format_date("full", locale="ar") }}').render(d=DAY)
    assert "ديسمبر" in rendered and "2024" in rendered


def test_operator_template_wins_over_packaged(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    packaged = (PACKAGED_TEMPLATES / "email" / "digest.txt.j2").read_text(
        encoding="utf-8"
    )
    (tmp_path / "email" / "digest.txt.j2").write_text("OPERATOR COPY\n" + packaged, encoding="utf-8")
    digest = renderer("en", tmp_path).render(load_articles("en"), DAY, archive_url=None)
    assert digest.text.startswith("OPERATOR COPY")
    # the HTML template was not overridden: still the packaged one
    assert "OPERATOR COPY" not in digest.html and "More headlines" in digest.html


def test_operator_strings_override_key_by_key(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "strings.yaml").write_text("en:\n  read_more: Continue reading\n", encoding="utf-8")
    digest = renderer("en", tmp_path).render(load_articles("en"), DAY, archive_url=None)
    assert "Continue reading" in digest.html and "Read more" not in digest.html
    assert "Unsubscribe" in digest.html  # keys the operator did not touch keep their default
    arabic = renderer("ar", tmp_path).render(load_articles("ar"), DAY, archive_url=None)
    assert "اقرأ المزيد" in arabic.html


def test_missing_operator_dir_falls_back_to_packaged(tmp_path: Path) -> None:
    digest = renderer("en", tmp_path / "absent").render(load_articles("en"), DAY, archive_url=None)
    assert "Read more" in digest.html


def test_template_without_unsubscribe_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "digest.txt.j2").write_text("{{ edition.title }}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="unsubscribe"):
        renderer("en", tmp_path).render(load_articles("en"), DAY, archive_url=None)


def test_undefined_variable_in_operator_template_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "digest.txt.j2").write_text("{{ no_such_thing }} {{ slots.unsubscribe_url }}\n")
    with pytest.raises(TemplateError, match="no_such_thing"):
        renderer("en", tmp_path).render(load_articles("en"), DAY, archive_url=None)


# --- content --------------------------------------------------------------------------------------


def test_english_digest_content() -> None:
    articles = load_articles("en")
    digest = renderer("en").render(articles, DAY, archive_url="/archive/en/2024-12-02")
    assert digest.subject == "Levant Today: the day's news, December 2, 2024"
    assert (digest.language, digest.direction) == ("en", "ltr")
    page = parse(digest.html)
    html_tag = next(attrs for tag, attrs in page.tags if tag == "html")
    assert (html_tag.get("lang"), html_tag.get("dir")) == ("en", "ltr")
    hrefs = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert hrefs.count(articles[0].url) == 3  # the lead: photo, headline, read more (&amp; decoded)
    for article in articles:
        assert hrefs.count(article.url) >= 1
    assert "https://news.example.org/archive/en/2024-12-02" in hrefs
    assert token(Slot.UNSUBSCRIBE_URL) in hrefs and token(Slot.PREFERENCES_URL) in hrefs
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    # the logo is decorative: the text masthead (the one h1) names the site, images on or off
    assert images[0]["src"] == "https://news.example.org/static/logo.png" and images[0]["alt"] == ""
    assert re.findall(r"<h1\b[^>]*>.*?</h1>", digest.html, re.S)[0].count("Levant Today") == 1
    assert digest.html.count("<h1") == 1
    photos = [img for img in images if "/media/" in img["src"]]
    shown = [a for a in articles[:6] if a.image_url]  # the lead and the secondary stories
    assert [img["src"] for img in photos] == [f"https://news.example.org{a.image_url}" for a in shown]
    assert photos[0]["width"] == "544" and all(img["width"] == "168" for img in photos[1:])
    for img in photos:
        assert img["alt"] and "max-width:" in img["style"]
    text = "".join(page.text)
    assert "More headlines" in text and "Photo: Regime forces near Aleppo" in text
    assert "Source: Levant - Agencies" in text and "By Rania Haddad" in text
    # section headings where the section changes, in order; the unsectioned last one as "More news"
    headings = re.findall(r'<p class="pub-label"[^>]*>([^<]+)</p>', digest.html)
    assert headings == ["Politics", "Economy", "Culture", "More headlines"]
    assert digest.preheader.startswith(articles[0].title)
    assert digest.preheader in digest.html
    assert digest.text.count("Read more: ") == 6  # the lead and five secondary stories; then a list
    assert "View in browser: https://news.example.org/archive/en/2024-12-02" in digest.text


def test_arabic_digest_is_right_to_left_everywhere() -> None:
    digest = renderer("ar").render(load_articles("ar"), DAY, archive_url=None)
    assert (digest.language, digest.direction) == ("ar", "rtl")
    assert digest.subject == "Levant Today: أخبار اليوم، 2 ديسمبر 2024 (10)"
    assert re.search(r'<html[^>]*\blang="ar"[^>]*\bdir="rtl"', digest.html)
    page = parse(digest.html)
    wrapper = next(
        attrs for tag, attrs in page.tags if tag == "div" and attrs.get("aria-roledescription") == "email"
    )
    assert (wrapper.get("lang"), wrapper.get("dir")) == ("ar", "rtl")
    section_cells = [a["style"] for t, a in page.tags if t == "td" and "direction" in a.get("style", "")]
    assert section_cells and all("direction: rtl" in s or "direction:rtl" in s for s in section_cells)
    texts = [a["style"] for t, a in page.tags if t == "div" and "font-family" in a.get("style", "")]
    assert texts and all("text-align:right" in s.replace(" ", "") for s in texts)
    assert "letter-spacing" not in digest.html  # breaks Arabic letter joining
    assert "اقرأ المزيد" in digest.html and "إلغاء الاشتراك" in digest.html
    assert "View in browser" not in digest.html and "عرض في المتصفح" not in digest.html  # no archive_url


def test_dark_mode_survives_inlining() -> None:
    html = renderer("en").render(load_articles("en"), DAY, archive_url=None).html
    assert '<meta name="color-scheme" content="light dark"' in html
    assert '<meta name="supported-color-schemes" content="light dark"' in html
    media = re.search(r"<style[^>]*>[^<]*@media \(prefers-color-scheme: dark\)[^<]*</style>", html)
    assert media, "the dark-mode block must stay in a <style> after css-inline"
    assert "!important" in media.group(0)
    # light colors are inlined, so clients that drop <style> still get them
    assert re.search(r'class="pub-title"[^>]*style="[^"]*font-size', html)


def test_hostile_title_is_escaped_not_injected() -> None:
    hostile = "</mj-text><mj-raw><script>alert(1)</script></mj-raw><mj-text>"
    article = load_articles("en")[0]
    evil = Article(**{**article.__dict__, "title": hostile, "summary": "<img src=x onerror=alert(1)>"})
    digest = renderer("en").render([evil], DAY, archive_url=None)
    assert "<script" not in digest.html and "<mj-raw" not in digest.html and "<img src=x" not in digest.html
    assert "&lt;/mj-text&gt;&lt;mj-raw&gt;&lt;script&gt;" in digest.html
    assert hostile in "".join(parse(digest.html).text)  # shown as text, intact
    assert hostile in digest.text  # the plain-text part is not HTML: no entities there


def test_slot_tokens_in_article_content_are_defused() -> None:
    article = load_articles("en")[0]
    sneaky = Article(
        **{
            **article.__dict__,
            "title": "Win PUBSLOT0EMAIL0 PUBSLOT0IFNAME0",
            "summary": "PUBSLOT0UNSUBSCRIBE0",
            "url": "https://news.example.org/PUBSLOT0NAME0",
        }
    )
    digest = renderer("en").render([sneaky], DAY, archive_url=None)  # a stray conditional must not break it
    filled = fill_slots(digest.text, {"UNSUBSCRIBE": "U", "PREFERENCES": "P", "NAME": "N", "EMAIL": "E"})
    assert "Win PUBSLOT\u20600EMAIL0 PUBSLOT\u20600IFNAME0" in filled
    assert "https://news.example.org/PUBSLOT%30NAME0" in filled


def test_title_with_line_breaks_stays_on_one_line() -> None:
    article = load_articles("en")[0]
    digest = renderer("en").render(
        [Article(**{**article.__dict__, "title": "Breaking\r\nBcc: victim@example.com"})],
        DAY,
        archive_url=None,
    )
    assert "Breaking Bcc: victim@example.com" in digest.text
    assert "\nBcc:" not in digest.text


def test_summary_falls_back_to_content_and_is_shortened() -> None:
    article = load_articles("en")[0]
    long_html = "<p>" + " ".join(["word"] * 400) + "</p>"
    digest = renderer("en").render(
        [Article(**{**article.__dict__, "summary": "", "content_html": long_html})], DAY, archive_url=None
    )
    summary = re.search(r'<p class="pub-summary"[^>]*>([^<]+)</p>', digest.html)
    assert summary and summary.group(1).startswith("word word") and summary.group(1).endswith("…")
    assert len(summary.group(1)) <= 361


def test_fill_slots_for_the_archive_page_leaves_no_placeholder() -> None:
    digest = renderer("ar").render(load_articles("ar"), DAY, archive_url="https://news.example.org/a")
    neutral = {
        "UNSUBSCRIBE": "https://news.example.org/unsubscribe",
        "PREFERENCES": "https://news.example.org/preferences?a=1&b=2",
        "NAME": "",
        "EMAIL": "",
    }
    page = fill_slots(digest.html, neutral, escape_html=True)
    assert "PUBSLOT" not in page
    assert "مرحباً،" in page and "أُرسلت" not in page  # anonymous greeting, no "sent to"
    # a page speaks as a page: no "you receive this email", no unsubscribe, no view-in-browser to itself
    assert "تصلك هذه الرسالة" not in page and "إلغاء الاشتراك" not in page and "عرض في المتصفح" not in page
    assert "هذه النسخة الإلكترونية" in page and ">اشترك</a>" in page
    mail = fill_slots(digest.html, {**neutral, "EMAIL": "a@example.org"}, escape_html=True)
    assert 'href="https://news.example.org/preferences?a=1&amp;b=2"' in mail and "إلغاء الاشتراك" in mail
    with pytest.raises(ValueError, match="UNSUBSCRIBE"):
        fill_slots(digest.text, {"PREFERENCES": "x", "NAME": "", "EMAIL": ""})


# --- golden files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "ar"])
def test_golden_digest(language: str) -> None:
    digest = renderer(language).render(
        load_articles(language), DAY, archive_url=f"https://news.example.org/archive/{language}/2024-12-02"
    )
    check_golden(f"{language}.html", digest.html)
    check_golden(f"{language}.txt", digest.text)
