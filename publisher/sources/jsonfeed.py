"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1) -> RawItems. feedparser does not read it."""

from __future__ import annotations

import html
import json
from typing import Any

from publisher.sources.normalize import SKIPPED, RawItem, absolute_http_url, parse_datetime, parse_int
from publisher.sources.xmlfeed import FeedParseError, ParsedFeed

_VERSION_PREFIX = "https://jsonfeed.org/version/"


def looks_like_json(body: bytes, content_type: str) -> bool:
    if "json" in content_type:
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def parse_json_feed(body: bytes, *, url: str) -> ParsedFeed:
    """Parse a JSON Feed. Raises FeedParseError when it is not one."""
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise FeedParseError(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise FeedParseError(
            f"it is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    if not isinstance(document, dict) or not str(document.get("version", "")).startswith(_VERSION_PREFIX):
        raise FeedParseError(f'it is JSON but not a JSON Feed (no "version": "{_VERSION_PREFIX}1.1")')
    entries = document.get("items")
    if not isinstance(entries, list):
        raise FeedParseError('it is a JSON Feed without an "items" list')
    base = _text(document.get("home_page_url")) or url
    feed_authors = _authors(document)
    items: list[RawItem] = []
    warnings: list[str] = []
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            warnings.append(f"item {index}{SKIPPED}it is not a JSON object")
            continue
        items.append(_raw_item(entry, index, base, feed_authors))
    return ParsedFeed(
        language=_text(document.get("language")), items=items, warnings=warnings, title=_text(document.get("title"))
    )


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []  # "tags": true is a feed's mistake, not our crash


def _authors(holder: dict[str, Any]) -> str | None:
    """1.1 has "authors": [...]; 1.0 had "author": {...}."""
    authors = holder.get("authors")
    if isinstance(authors, list):
        names = [a.get("name") for a in authors if isinstance(a, dict) and _text(a.get("name"))]
        if names:
            return ", ".join(str(n).strip() for n in names)
    author = holder.get("author")
    if isinstance(author, dict):
        return _text(author.get("name"))
    return None


def _image(entry: dict[str, Any]) -> tuple[str | None, str | None, int | None, str | None]:
    """(url, type, length, caption): "image", then "banner_image", then an image attachment."""
    for key in ("image", "banner_image"):
        url = _text(entry.get(key))
        if url:
            return url, None, None, None
    for attachment in _list(entry.get("attachments")):
        if not isinstance(attachment, dict):
            continue
        kind = (_text(attachment.get("mime_type")) or "").lower()
        if kind.startswith("image/") and _text(attachment.get("url")):
            return (
                _text(attachment.get("url")),
                kind,
                parse_int(attachment.get("size_in_bytes")),
                _text(attachment.get("title")),
            )
    return None, None, None, None


def _raw_item(entry: dict[str, Any], index: int, base: str, feed_authors: str | None) -> RawItem:
    title = _text(entry.get("title"))
    link = _text(entry.get("url")) or _text(entry.get("external_url"))
    guid = entry.get("id")
    guid_text = str(guid).strip() if isinstance(guid, str | int) and str(guid).strip() else None
    label = (title or link or guid_text or "")[:80]
    content_html = _text(entry.get("content_html"))
    if content_html is None and _text(entry.get("content_text")):
        content_html = "<p>" + html.escape(str(entry["content_text"])).replace("\n\n", "</p><p>") + "</p>"
    summary = _text(entry.get("summary"))
    image_url, image_type, image_length, caption = _image(entry)
    tags = [t for t in _list(entry.get("tags")) if _text(t)]
    return RawItem(
        where=f"item {index} {label!r}" if label else f"item {index}",
        url=absolute_http_url(link, base) if link else None,
        title=title,
        guid=guid_text,
        title_is_html=False,  # JSON Feed titles are plain text
        published=parse_datetime(_text(entry.get("date_published"))),
        updated=parse_datetime(_text(entry.get("date_modified"))),
        language=_text(entry.get("language")),
        section=tags[0] if tags else None,
        author=_authors(entry) or feed_authors,
        summary_html=html.escape(summary) if summary else None,  # plain text in JSON Feed
        content_html=content_html,
        image_url=absolute_http_url(image_url, base) if image_url else None,
        image_caption=caption,
        image_type=image_type,
        image_length=image_length,
    )
