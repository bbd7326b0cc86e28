"""Our compiled digest against the official MJML compiler (npm mjml 5): every alt, title and
aria-label equal, character for character, for a digest full of shadda, tanween, format characters
and decomposed Latin accents; and the same pixel widths for Outlook's tables.

mjml-python 1.4 (mrml) writes combining marks of attribute values as literal "\\u{651}" text; the
render path works around it (htmlmail.protect_attributes). Needs MJML_CLI (the official compiler):
    npm install --prefix .venv/mjml mjml@5 && export MJML_CLI=$PWD/.venv/mjml/node_modules/.bin/mjml
"""

from __future__ import annotations

import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mjml import mjml2html

from publisher.render.email import DigestRenderer
from publisher.render.templates import make_environment
from tests.conftest import require
from tests.support.digests import DAY, EDITIONS, SITE, heavy_articles

pytestmark = pytest.mark.slow

MARKED = {
    "ar": "حبّات القمح تُباعُ غداً بسعرٍ أعلى، أكِّد اشتراكك‌ الآن",  # shadda, damma, tanween, kasra, ZWNJ
    "en": "Cafe\u0301 cre\u0300me: Zoe\u0308 and the na\u0131\u0308ve ﬁnale",  # decomposed accents
}
WATCHED = ("alt", "title", "aria-label")


class Attributes(HTMLParser):
    """alt, title and aria-label values in document order (entities decoded), and every width."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in WATCHED:
                self.values.append((tag, name, value or ""))


def attributes(html: str) -> list[tuple[str, str, str]]:
    parser = Attributes()
    parser.feed(html)
    return parser.values


def widths(html: str) -> list[str]:
    """Pixel widths of tables and cells, Outlook's conditional comments included."""
    return sorted(re.findall(r'\bwidth="(\d+)(?:px)?"', html))


def official(source: str, tmp_path: Path) -> str:
    cli = os.environ.get("MJML_CLI", "")
    require(bool(cli) and Path(cli).exists(), "MJML_CLI (the official mjml 5 compiler) is not set")
    path = tmp_path / "digest.mjml"
    path.write_text(source, encoding="utf-8")
    result = subprocess.run(
        [cli, str(path), "-s", "--config.validationLevel=strict", "--config.minify=false"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def marked_digest(language: str) -> tuple[DigestRenderer, list]:
    renderer = DigestRenderer(make_environment(None), SITE, EDITIONS[language])
    articles = [
        article.__class__(**{**article.__dict__, "title": f"{MARKED[language]} {n}", "image_alt": MARKED[language]})
        for n, article in enumerate(heavy_articles(language, 10))
    ]
    return renderer, articles


@pytest.mark.parametrize("language", ["ar", "en"])
def test_attributes_equal_the_official_compilers(language: str, tmp_path: Path) -> None:
    renderer, articles = marked_digest(language)
    source = renderer.render_mjml(articles, DAY, archive_url="https://news.example.org/archive")
    ours = renderer.compile(source)
    theirs = official(source, tmp_path)
    assert attributes(ours) == attributes(theirs)
    assert any(value == MARKED[language] for _, name, value in attributes(ours) if name == "alt")
    assert "\\u{" not in ours
    # the engine alone still has the bug: the workaround is what makes the difference
    assert "\\u{" in mjml2html(source)


@pytest.mark.parametrize("language", ["ar", "en"])
def test_outlook_widths_equal_the_official_compilers(language: str, tmp_path: Path) -> None:
    renderer, articles = marked_digest(language)
    source = renderer.render_mjml(articles, DAY, archive_url="https://news.example.org/archive")
    assert widths(renderer.compile(source)) == widths(official(source, tmp_path))


def test_title_and_aria_label_of_every_kind_of_tag(tmp_path: Path) -> None:
    """What the digest does not use today but an operator's template may: title on mj-image and
    mj-button, aria-label and title on HTML inside mj-text, in both scripts."""
    marked = MARKED["ar"] + " / " + MARKED["en"]
    source = f"""<mjml lang="ar" dir="rtl"><mj-head><mj-title>{marked}</mj-title><mj-attributes><mj-all font-family="Tahoma, Arial, sans-serif" /></mj-attributes></mj-head><mj-body width="600px">
<mj-section><mj-column>
<mj-image src="https://news.example.org/a.jpg" alt="{marked}" title="{marked}" href="https://news.example.org/" />
<mj-button href="https://news.example.org/c" title="{marked}">{marked}</mj-button>
<mj-text><a href="https://news.example.org/" aria-label="{marked}" title="{marked}">{marked}</a>
<img src="https://news.example.org/b.jpg" alt="{marked}"></mj-text>
</mj-column></mj-section></mj-body></mjml>"""
    renderer = DigestRenderer(make_environment(None), SITE, EDITIONS["ar"])
    ours = attributes(renderer.compile(source))
    theirs = attributes(official(source, tmp_path))
    # every value we write is the official one, character for character (mrml writes no title on
    # mj-button nor on mj-image's link: missing there, never garbled; the digest uses neither)
    assert set(ours) <= set(theirs) and all(value == marked for _, _, value in ours)
    assert {name for _, name, _ in ours} == {"alt", "title", "aria-label"}
    assert len(ours) == 6
