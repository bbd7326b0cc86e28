"""The digest (and the web pages' buttons) in headless Chromium: no horizontal overflow on a 375 px
phone, and every piece of text, link, image alt text (images blocked) and button at a WCAG contrast
of at least 4.5:1, in light and in dark mode, in both languages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from publisher.render.slots import fill_slots
from publisher.render.templates import make_environment
from tests.support.chromium import start_chromium
from tests.support.digests import render

pytestmark = pytest.mark.browser

VALUES = {"UNSUBSCRIBE": "https://news.example.org/u/t", "PREFERENCES": "https://news.example.org/p/t",
          "NAME": "Sam", "EMAIL": "sam@example.com"}

# Every element with its own text: its color against the first opaque background behind it.
# (Images are blocked here: every host but 127.0.0.1 fails to resolve, so alt text is what shows.)
CONTRAST_JS = """
function rgb(value) {
  const m = value.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
  const p = m[1].split(',').map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
}
function lum(c) {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
}
function background(el) {
  for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c;
  }
  return {r: 255, g: 255, b: 255, a: 1};
}
const worst = [];
for (const el of document.body.querySelectorAll('*')) {
  const style = getComputedStyle(el);
  if (style.display === 'none' || style.visibility === 'hidden' || el.closest('.pub-preheader')) continue;
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.replace(/[\\s\\u00a0\\u034f\\u200c]/g, '').length);
  const alt = el.tagName === 'IMG' && el.alt && !el.complete || (el.tagName === 'IMG' && el.alt && el.naturalWidth === 0);
  if (!own && !alt) continue;
  const rect = el.getBoundingClientRect(); if (rect.width === 0 || rect.height === 0) continue;
  const fg = rgb(style.color), bg = background(el);
  const l1 = lum(fg), l2 = lum(bg);
  const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  worst.push([ratio, el.tagName + '.' + el.className + ': ' + (el.alt || el.textContent).trim().slice(0, 40), style.color, getComputedStyle(el).backgroundColor]);
}
worst.sort((a, b) => a[0] - b[0]);
return worst.slice(0, 5);
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), "--hide-scrollbars")
    try:
        yield driver
    finally:
        driver.quit()


def show(driver: Any, path: Path, width: int, scheme: str) -> None:
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 500})
    driver.get(path.as_uri())


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("digests")
    made = {}
    for language in ("en", "ar"):
        path = folder / f"{language}.html"
        path.write_text(fill_slots(render(language).html, VALUES, escape_html=True), encoding="utf-8")
        made[language] = path
    return made


@pytest.mark.parametrize("language", ["en", "ar"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_horizontal_overflow_on_a_phone(browser: Any, pages: dict[str, Path], language: str, scheme: str) -> None:
    show(browser, pages[language], 375, scheme)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 375
    wide = browser.execute_script(
        "return [...document.querySelectorAll('img, table, div')].filter(e => e.getBoundingClientRect().right > 376"
        " || e.getBoundingClientRect().left < -1).map(e => e.tagName + '.' + e.className).slice(0, 5)"
    )
    assert wide == []


@pytest.mark.parametrize("language", ["en", "ar"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [640, 375])
def test_text_and_alt_text_contrast(browser: Any, pages: dict[str, Path], language: str, scheme: str, width: int) -> None:
    show(browser, pages[language], width, scheme)
    worst = browser.execute_script(CONTRAST_JS)
    assert worst, "no text found"
    assert worst[0][0] >= 4.5, worst
    alt = browser.execute_script("return [...document.images].filter(i => i.alt).length")
    assert alt >= 6  # images are blocked here: their alt text was among what was measured


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("language", ["en", "ar"])
def test_web_page_buttons_contrast(browser: Any, tmp_path: Path, scheme: str, language: str) -> None:
    env = make_environment(None)
    page = env.from_string(
        '{% extends "web/base.html.j2" %}{% block content %}<h1>Title</h1><p>Text <a href="#">link</a></p>'
        '<button type="submit">Confirm</button><button class="secondary">Delete</button>{% endblock %}'
    ).render(lang=language, dir="rtl" if language == "ar" else "ltr", feeds=[], strings={},
             site={"name": "Levant Today", "url": "https://news.example.org"}, switch_languages=False)
    path = tmp_path / "page.html"
    path.write_text(page, encoding="utf-8")
    show(browser, path, 375, scheme)
    worst = browser.execute_script(CONTRAST_JS)
    assert [w for w in worst if w[0] < 4.5] == [], worst
    assert any("BUTTON" in w[1] for w in browser.execute_script(CONTRAST_JS.replace("slice(0, 5)", "slice(0, 50)")))
