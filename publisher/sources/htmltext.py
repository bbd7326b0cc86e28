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

# nh3 takes mutable sets: built once, not for every article (nh3 only reads them)
_NH3_TAGS = set(ALLOWED_TAGS)
_NH3_DROPPED = set(DROPPED_WITH_CONTENT)
_NH3_ATTRIBUTES = {tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()}
_NH3_SCHEMES = set(URL_SCHEMES)

# h1 is the page title's level, h5/h6 are rare: keep them as headings the allowed set knows (one pass).
_HEADING = re.compile(r"<(/?)h([156])\b", re.IGNORECASE)
# nh3's output is normalized (double-quoted attributes), so this cannot be fooled by odd quoting.
_IMG_WITHOUT_SRC = re.compile(r"<img(?![^>]*\ssrc=\")[^>]*>")

_BLOCK_TAGS = frozenset(
    {"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "figure",
     "figcaption", "table", "tr", "td", "th", "pre", "hr", "dt", "dd", "section", "article", "header",
     "footer", "caption"}
)  # fmt: skip
_INVISIBLE_TAGS = frozenset({"script", "style", "template", "noscript", "svg", "math", "head", "title"})

# html_to_text's fast path. A fragment made only of text without "<" and of plain tags (what feeds
# send nearly always) is read with one regex; html.parser (pure Python, ~100 µs for a short feed
# description) reads everything else: comments, doctypes, a "<" in text, unquoted values with "/" or
# right before "/>" (html.parser reads <svg x=1/> as a start tag, not a self-closing one), and the
# tags whose content some parser version reads raw (script, style, textarea, title, ...). Both give
# the same text (tests/test_sources_fast_paths.py compares them on generated fragments). Not lxml:
# libxml2 decodes fewer entities than html.unescape (HTML5 names, &#128; as in windows-1252) and
# moves text around in broken markup, so summaries would change.
_SIMPLE_TAG = re.compile(
    r"""<(?:([A-Za-z][A-Za-z0-9]*)(?:\s+[A-Za-z_:][-A-Za-z0-9_:.]*"""
    r"""(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`/]+(?=[\s>])))?)*\s*(/?)|/([A-Za-z][A-Za-z0-9]*)\s*)>"""
)
_RAW_TEXT_TAGS = frozenset(
    {"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"}
)


def sanitize_html(fragment: str, *, base_url: str) -> str:
    """A safe HTML fragment: allowed tags only, absolute http(s)/mailto URLs, links rel=noopener."""
    if not fragment or not fragment.strip():
        return ""
    fragment = _HEADING.sub(_allowed_heading, fragment)
    # not one nh3.Cleaner: relative URLs resolve against each article's own base, and a callback
    # joining them in Python would not join them as ammonia does (WHATWG URL rules)
    cleaned = nh3.clean(
        fragment,
        tags=_NH3_TAGS,
        clean_content_tags=_NH3_DROPPED,
        attributes=_NH3_ATTRIBUTES,
        url_schemes=_NH3_SCHEMES,
        link_rel="noopener",
        strip_comments=True,
        url_relative=("rewrite_with_base", base_url),
    )
    # nh3 writes tag names in lower case: no "<img", nothing to remove
    return (_IMG_WITHOUT_SRC.sub("", cleaned) if "<img" in cleaned else cleaned).strip()


def _allowed_heading(found: re.Match[str]) -> str:
    return f"<{found.group(1)}h{'2' if found.group(2) == '1' else '4'}"


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
    """One space between words; no CR, LF or tabs left (headers and subjects depend on it).

    str.split() splits at what the regex \\s+ matches (both ask Py_UNICODE_ISSPACE), 3-4x faster."""
    return " ".join(text.split())


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: tags stripped, entities decoded, whitespace collapsed."""
    if not fragment:
        return ""
    parts = _simple_text_parts(fragment)
    if parts is None:
        collector = _TextCollector()
        collector.feed(fragment)
        collector.close()
        parts = collector.parts
    return collapse_whitespace("".join(parts))


def _simple_text_parts(fragment: str) -> list[str] | None:
    """What _TextCollector collects, for a fragment of plain tags and "<"-free text; None for any
    other fragment."""
    parts: list[str] = []
    hidden = 0
    position, end = 0, len(fragment)
    while position < end:
        opening = fragment.find("<", position)
        if opening < 0:
            opening = end
        if opening > position:
            if not hidden:
                parts.append(html.unescape(fragment[position:opening]))
            if opening == end:
                break
        tag = _SIMPLE_TAG.match(fragment, opening)
        if tag is None:
            return None
        start_name, self_closing, end_name = tag.groups()
        name = (start_name or end_name).lower()
        if name in _RAW_TEXT_TAGS:
            return None
        if end_name is not None or not self_closing:  # a start or an end tag
            if name in _INVISIBLE_TAGS:
                hidden = max(0, hidden - 1) if end_name is not None else hidden + 1
            elif name in _BLOCK_TAGS:
                parts.append(" ")
        elif name in _BLOCK_TAGS:  # <br/>: an invisible one hides nothing
            parts.append(" ")
        position = tag.end()
    return parts


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
