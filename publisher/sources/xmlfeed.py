"""RSS 2.0, Atom 1.0 and RSS 1.0 (RDF) bytes -> RawItems, with feedparser doing the parsing only
(it never fetches: the bytes come from publisher.sources.fetching)."""

from __future__ import annotations

import html
import io
import re
import xml.etree.ElementTree as ElementTree
import xml.sax
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from publisher.sources.encoding import as_utf8_document, decode_body
from publisher.sources.normalize import SKIPPED, RawItem, absolute_http_url, parse_datetime, parse_int

MEDIA_NS = "http://search.yahoo.com/mrss/"
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")
# The first element after the prolog (declaration, comments, doctype): an XHTML doctype before
# <rss> or <feed> is a feed (feedparser's always_strip_doctype case); <html> is a page.
_ROOT = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:(?:<!--.*?-->|<!doctype[^>]*>)\s*)*<([A-Za-z][\w:.-]*)",
    re.IGNORECASE | re.DOTALL,
)
_GZIP_MAGIC = b"\x1f\x8b"
# feedparser's own get() maps key aliases and raises and catches a KeyError for every missing key: a
# third of reading 10,000 entries. The keys read here have no alias (enclosures is computed below).
_get = dict.get


class FeedParseError(Exception):
    """The bytes are not a feed at all; the message says what they are instead."""


@dataclass
class ParsedFeed:
    language: str | None
    items: list[RawItem]
    warnings: list[str]
    title: str | None = None  # the feed's own name, a reader-facing credit when config names none


def looks_like_html(body: bytes) -> bool:
    """An HTML page (an error page, a login wall, the site's home page) where a feed was expected."""
    root = _ROOT.match(body[:4096])
    if root is not None:
        return root.group(1).lower() == b"html"
    return bool(re.match(rb"^(?:\xef\xbb\xbf)?\s*<!doctype\s+html", body[:2048], re.IGNORECASE))


def parse_xml_feed(body: bytes, *, url: str, charset: str | None = None) -> ParsedFeed:
    """Parse RSS/Atom/RDF. Raises FeedParseError when nothing usable is there.

    `charset` is the one the HTTP Content-Type named, if any. The media type itself is not passed
    on: many servers say text/plain or octet-stream for a good feed, and the content was sniffed.
    """
    if body.startswith(_GZIP_MAGIC):
        raise FeedParseError(
            "it is gzip-compressed data (a .gz file) served without Content-Encoding: gzip; point the "
            "url at the uncompressed feed, or have the server send Content-Encoding: gzip"
        )
    if looks_like_html(body):
        raise FeedParseError("it sent an HTML page, not a feed")
    decoded = decode_body(body, charset)
    body = as_utf8_document(decoded)
    # No content-location: with it feedparser joins a base URL for every element (a third of its
    # time on a big feed); relative links and xml:base values are resolved against `url` by us.
    headers = {"content-type": "application/xml; charset=utf-8"}
    # A stream, never bytes or str: feedparser treats those as a file name or URL to open when they
    # look like one, and the body comes from a server we do not control.
    # Relative URLs in content are resolved by us, against the article (see _content_base), and
    # sanitizing is nh3's job.
    import feedparser  # imported when a feed is read, not by every command

    parsed = feedparser.parse(
        io.BytesIO(body), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )
    entries: list[Any] = list(parsed.get("entries") or [])
    exc = parsed.get("bozo_exception") if parsed.get("bozo") else None
    # Only a parse error means broken XML; the other "bozo" reasons (a text/plain Content-Type, a
    # wrong declared encoding, an undeclared namespace) leave a perfectly usable feed.
    malformed = isinstance(exc, xml.sax.SAXException)
    if not entries:
        if malformed:
            raise FeedParseError(f"it is not well-formed XML ({_describe(exc)})")
        if not parsed.get("version"):
            raise FeedParseError("it is XML but not RSS, Atom or RDF")
    warnings = [decoded.warning] if decoded.warning else []
    if exc is not None:
        warnings.append(
            f"the feed {'is not well-formed' if malformed else 'has a flaw'} ({_describe(exc)}); "
            f"{len(entries)} entries were read anyway: ask its publisher to fix it"
        )
    feed_language = parsed.feed.get("language") or _detail_language(parsed.feed.get("title_detail"))
    captions = _media_captions(body, expected=len(entries))
    items = [
        _raw_item(entry, index, url, captions.get(index), feed_language)
        for index, entry in enumerate(entries, 1)
    ]
    if malformed and items and _breaks_off(exc):
        # the document ends inside the last entry: its GUID, date or text may be missing, and taking
        # it would store a partial second copy of a story
        warnings.append(
            f"{items[-1].where}{SKIPPED}the feed breaks off inside it (truncated); it is taken when the "
            "feed arrives whole"
        )
        items.pop()
    title = parsed.feed.get("title")
    return ParsedFeed(
        language=feed_language, items=items, warnings=warnings, title=title if isinstance(title, str) else None
    )


def _breaks_off(exc: BaseException | None) -> bool:
    """The parser ran out of document: a truncated download or file."""
    message = getattr(exc, "getMessage", None)
    text = message() if callable(message) else str(exc)
    return "no element found" in text or "unclosed token" in text


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown problem"
    line = getattr(exc, "getLineNumber", None)
    message = getattr(exc, "getMessage", None)
    if callable(line) and callable(message):
        return f"line {line()}: {message()}"
    return str(exc) or type(exc).__name__


def _detail_language(detail: Any) -> str | None:
    if isinstance(detail, dict):
        value = _get(detail, "language")
        return value if isinstance(value, str) and value else None
    return None


def _entry_datetime(entry: Any, key: str) -> datetime | None:
    """Our own parse of the text first (it keeps 'no zone given' naive, for the site zone to decide),
    then feedparser's (it knows odd formats and always answers in UTC)."""
    # dict.get: feedparser's own get() answers "updated" with the published date (its issue 310)
    moment = parse_datetime(dict.get(entry, key))
    if moment is not None:
        return moment
    struct = dict.get(entry, f"{key}_parsed")
    if struct:
        return datetime(struct[0], struct[1], struct[2], struct[3], struct[4], struct[5], tzinfo=UTC)
    return None


def _html_of(detail: Any, value: str | None) -> str | None:
    """Feed text as HTML: plain-text constructs are escaped so that '<' stays a character."""
    if not value:
        return None
    kind = _get(detail, "type") if isinstance(detail, dict) else None
    if kind and kind not in _HTML_TYPES:
        return "<p>" + html.escape(value).replace("\n\n", "</p><p>") + "</p>"
    return value


def _content(entry: Any) -> tuple[str | None, str | None, str | None]:
    """(HTML body, its language, its xml:base) from <content> / <content:encoded>, HTML preferred."""
    contents = _get(entry, "content") or []
    if not contents:
        return None, None, None
    chosen = next((c for c in contents if _get(c, "type") in _HTML_TYPES), contents[0])
    return _html_of(chosen, _get(chosen, "value")), _get(chosen, "language"), _get(chosen, "base")


def _content_base(detail_base: str | None, feed_url: str) -> str | None:
    """An explicit xml:base (Atom) is what relative URLs in the content mean (itself relative to the
    feed's address); without one the article's URL is the better guess (RSS has no rule)."""
    if detail_base and detail_base != feed_url:
        return absolute_http_url(detail_base, feed_url)
    return None


def _image(entry: Any) -> tuple[str | None, str | None, int | None]:
    """(url, type, length) of the article's image: enclosure, then media:content, then media:thumbnail."""
    # what feedparser's entry["enclosures"] computes, without copying every link
    for enclosure in _get(entry, "links") or []:
        if _get(enclosure, "rel") != "enclosure":
            continue
        href = _get(enclosure, "href") or ""
        kind = (_get(enclosure, "type") or "").lower()
        if kind.startswith("image/") or (not kind and href.lower().split("?")[0].endswith(_IMAGE_EXTENSIONS)):
            return href, kind or None, parse_int(_get(enclosure, "length"))
    for media in _get(entry, "media_content") or []:
        kind = (media.get("type") or "").lower()
        if media.get("url") and (media.get("medium") == "image" or kind.startswith("image/")):
            return media["url"], kind or None, parse_int(media.get("filesize") or media.get("fileSize"))
    for thumbnail in _get(entry, "media_thumbnail") or []:
        if thumbnail.get("url"):
            return thumbnail["url"], None, None
    return None, None, None


def _own_language(entry: Any, content_language: str | None, feed_language: str | None) -> str | None:
    """The entry's own language: dc:language, or an xml:lang that is not just the feed's, inherited."""
    declared = _get(entry, "language")
    if isinstance(declared, str) and declared.strip():
        return declared
    for value in (
        content_language,
        _detail_language(_get(entry, "title_detail")),
        _detail_language(_get(entry, "summary_detail")),
    ):
        if value and value != feed_language:
            return value
    return None


def _raw_item(entry: Any, index: int, base: str, caption: str | None, feed_language: str | None) -> RawItem:
    title = _get(entry, "title")
    guid = _get(entry, "id")
    link = _get(entry, "link") or (guid if _get(entry, "guidislink") else None)
    label = (title or link or guid or "").strip()[:80]
    content_html, content_language, content_base = _content(entry)
    summary_detail = _get(entry, "summary_detail")
    if content_html is None:  # the body will come from the summary: its base applies
        content_base = _get(summary_detail or {}, "base")
    summary_html = _html_of(summary_detail, _get(entry, "summary"))
    # feedparser files <media:description> under summary when there is no <description>: a caption
    # is not a summary, so the body is summarized instead.
    if caption and summary_html and summary_html.strip() == caption.strip():
        summary_html = None
    image_url, image_type, image_length = _image(entry)
    tags = _get(entry, "tags") or []
    author_detail = _get(entry, "author_detail") or {}
    source = _get(entry, "source") or {}
    return RawItem(
        where=f"entry {index} {label!r}" if label else f"entry {index}",
        url=absolute_http_url(link, base) if link else None,
        title=title,
        guid=guid,
        title_is_html=_get(_get(entry, "title_detail") or {}, "type") in _HTML_TYPES,
        published=_entry_datetime(entry, "published") or _entry_datetime(entry, "created"),
        updated=_entry_datetime(entry, "updated"),
        language=_own_language(entry, content_language, feed_language),
        section=next(
            (_get(t, "term") or _get(t, "label") for t in tags if _get(t, "term") or _get(t, "label")), None
        ),
        author=_get(author_detail, "name") or _get(entry, "author"),
        source_credit=_get(source, "title") if isinstance(source, dict) else None,
        summary_html=summary_html,
        content_html=content_html,
        content_base=_content_base(content_base, base),
        image_url=absolute_http_url(image_url, base) if image_url else None,
        image_caption=caption,
        image_type=image_type,
        image_length=image_length,
    )


def _media_captions(body: bytes, *, expected: int) -> dict[int, str]:
    """media:description (else media:title) per entry, by 1-based position.

    feedparser folds media:description into the entry summary, so captions are read from the XML
    directly. Nothing is returned when the XML does not parse or the entry count differs.
    """
    if expected == 0 or MEDIA_NS.encode() not in body:
        return {}
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return {}
    entries = [el for el in root.iter() if _local(el.tag) in ("item", "entry")]
    if len(entries) != expected:
        return {}
    captions: dict[int, str] = {}
    for index, element in enumerate(entries, 1):
        for name in ("description", "title"):
            found = element.find(f".//{{{MEDIA_NS}}}{name}")
            text = (found.text or "").strip() if found is not None else ""
            if text:
                captions[index] = text
                break
    return captions


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
