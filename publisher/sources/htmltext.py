"""HTML from outside made safe for email and feeds, and turned into plain text for titles and summaries."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import nh3

# What an article body needs in an email or a feed reader, and nothing that runs, styles or embeds.
ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "p", "br", "hr", "div", "span",
        "h2", "h3", "h4",
        "a", "img", "figure", "figcaption",
        "ul", "ol", "li", "dl", "dt", "dd",
        "blockquote", "q", "cite",
        "em", "strong", "b", "i", "u", "s", "small", "sub", "sup", "code", "pre", "abbr",
        "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
    }
)  # fmt: skip

# Dropped with everything inside them; any other unknown tag is unwrapped and its text kept.
DROPPED_WITH_CONTENT: frozenset[str] = frozenset(
    {"script", "style", "iframe", "object", "embed", "applet", "frame", "frameset", "template",
     "form", "button", "select", "textarea", "svg", "math", "noscript", "audio", "video", "canvas"}
)  # fmt: skip

ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"lang", "dir", "title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "abbr": set(),
}

# Only these may appear in href/src; javascript:, data:, vbscript:, file: ... are removed.
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})

SUMMARY_LIMIT = 300

_WHITESPACE = re.compile(r"\s+")
# h1 is the page title's level, h5/h6 are rare: keep them as headings the allowed set knows.
_H1 = re.compile(r"<(/?)h1\b", re.IGNORECASE)
_H56 = re.compile(r"<(/?)h[56]\b", re.IGNORECASE)
# nh3's output is normalized (double-quoted attributes), so this cannot be fooled by odd quoting.
_IMG_WITHOUT_SRC = re.compile(r"<img(?![^>]*\ssrc=\")[^>]*>")

_BLOCK_TAGS = frozenset(
    {"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "figure",
     "figcaption", "table", "tr", "td", "th", "pre", "hr", "dt", "dd", "section", "article", "header",
     "footer", "caption"}
)  # fmt: skip
_INVISIBLE_TAGS = frozenset({"script", "style", "template", "noscript", "svg", "math", "head", "title"})


def sanitize_html(fragment: str, *, base_url: str) -> str:
    """A safe HTML fragment: allowed tags only, absolute http(s)/mailto URLs, links rel=noopener."""
    if not fragment or not fragment.strip():
        return ""
    fragment = _H56.sub(r"<\1h4", _H1.sub(r"<\1h2", fragment))
    cleaned = nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener",
        strip_comments=True,
        url_relative=("rewrite_with_base", base_url),
    )
    return _IMG_WITHOUT_SRC.sub("", cleaned).strip()


class _TextCollector(HTMLParser):
    """Visible text of an HTML fragment, with a space wherever a block ends."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE_TAGS:
            self._hidden_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE_TAGS:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.parts.append(data)


def collapse_whitespace(text: str) -> str:
    """One space between words; no CR, LF or tabs left (headers and subjects depend on it)."""
    return _WHITESPACE.sub(" ", text).strip()


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: tags stripped, entities decoded, whitespace collapsed."""
    if not fragment:
        return ""
    collector = _TextCollector()
    collector.feed(fragment)
    collector.close()
    return collapse_whitespace("".join(collector.parts))


def clean_title(value: str, *, is_html: bool) -> str:
    """A title as plain text on one line. Entities are decoded even in 'plain' titles:
    feeds routinely double-escape them."""
    if is_html:
        return html_to_text(value)
    return collapse_whitespace(html.unescape(value))


def truncate_at_word(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """Cut at the last word boundary before `limit` characters and mark the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:  # a very long "word" (a URL) is cut mid-word rather than dropped
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—،؛") + "…"


def make_summary(summary_html: str | None, content_html: str | None, limit: int = SUMMARY_LIMIT) -> str:
    """Plain-text summary: from the given summary, else from the body; capped at a word boundary."""
    text = html_to_text(summary_html or "") or html_to_text(content_html or "")
    return truncate_at_word(text, limit)
