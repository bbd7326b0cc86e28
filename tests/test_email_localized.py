"""Fully localized editions: the edition's own site name everywhere (subject, masthead, footer),
greetings without an English word, the footer naming the site once, the postal address, optional
Arabic-Indic digits, a subject that may name the lead story, and no internal source name."""

from __future__ import annotations

import re

from publisher.config import EditionSettings
from publisher.render.email import DigestRenderer
from publisher.render.slots import fill_slots
from publisher.render.templates import make_environment
from tests.support.digests import DAY, SITE, heavy_articles

ARABIC = EditionSettings.model_validate(
    {"id": "ar", "language": "ar", "site_name": "ليفانت اليوم", "title": "النشرة الصباحية",
     "subject": "{site}: {lead} ({count})", "digits": "arabic", "from": "ليفانت اليوم <d@news.example.org>"}
)
ANONYMOUS = {"UNSUBSCRIBE": "https://news.example.org/u", "PREFERENCES": "https://news.example.org/p",
             "NAME": "", "EMAIL": "reader@example.org"}


def visible_text(html: str) -> str:
    body = re.sub(r"<style\b.*?</style>|<!--.*?-->|<[^>]+>", " ", html, flags=re.S)
    return " ".join(body.split())


def test_the_arabic_edition_speaks_arabic_throughout() -> None:
    articles = heavy_articles("ar", 10)
    digest = DigestRenderer(make_environment(None), SITE, ARABIC).render(articles, DAY, archive_url=None)
    assert digest.subject == f"ليفانت اليوم: {articles[0].title} (١٠)"
    html = fill_slots(digest.html, ANONYMOUS, escape_html=True)
    text = fill_slots(digest.text, ANONYMOUS)
    for body in (visible_text(html), text):
        assert "Levant Today" not in body and "Reader" not in body
        assert "مرحباً،" in body  # the anonymous greeting: no name, no English word
        assert "٢٠٢٤" in body and "2024" not in body.replace("2024/12/02", "")  # Arabic-Indic dates
        assert SITE.postal_address in body
        assert "internal-cms" not in body  # the source's internal name never reaches readers
    masthead = re.search(r"<h1\b[^>]*>(.*?)</h1>", html, re.S)
    assert masthead and visible_text(masthead.group(1)) == "ليفانت اليوم"
    footer = visible_text(html[html.rindex('class="pub-rule"'):])
    assert footer.count("ليفانت اليوم") == 1  # named once, not "... من ليفانت اليوم" again


def test_the_footer_names_the_site_once_when_the_title_repeats_it() -> None:
    edition = ARABIC.model_copy(update={"title": "ليفانت اليوم — النشرة الصباحية"})
    digest = DigestRenderer(make_environment(None), SITE, edition).render(heavy_articles("ar", 3), DAY, archive_url=None)
    html = fill_slots(digest.html, ANONYMOUS, escape_html=True)
    footer = visible_text(html[html.rindex('class="pub-rule"'):])
    assert footer.count("ليفانت اليوم") == 1 and "النشرة الصباحية" in footer
    masthead = visible_text(html[html.index("<h1"):html.index('class="pub-date"')])
    assert masthead.count("ليفانت اليوم") == 1 and "النشرة الصباحية" in masthead


def test_latin_digits_by_default_and_no_source_line_without_a_credit() -> None:
    edition = EditionSettings.model_validate({"id": "ar", "language": "ar", "from": "a@news.example.org"})
    articles = [a.__class__(**{**a.__dict__, "source_credit": None}) for a in heavy_articles("ar", 3)]
    digest = DigestRenderer(make_environment(None), SITE, edition).render(articles, DAY, archive_url=None)
    assert "2024" in digest.text and "٢٠٢٤" not in digest.text
    assert "المصدر:" not in digest.text and "internal-cms" not in digest.html + digest.text
