"""What one feed says: that it is a feed, its title, language, categories and the offsets of its dates."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import feedparser

from publisher.discovery.fetch import Fetched
from publisher.discovery.page import looks_like_html, primary_language


@dataclass
class FeedFacts:
    url: str
    kind: str  # rss, atom, rdf, json
    title: str | None
    language: str | None
    entries: int
    links: set[str] = field(default_factory=set)  # entry links, to spot two feeds of the same articles
    categories: Counter[str] = field(default_factory=Counter)
    dates: list[datetime] = field(default_factory=list)  # aware, as written (their offsets kept)


class NotAFeed(Exception):
    """The answer is not a usable feed; the message says what it is instead."""


def read_feed(fetched: Fetched) -> FeedFacts:
    """Parse a fetched answer as RSS, Atom, RDF or JSON Feed; NotAFeed with the reason otherwise."""
    if not fetched.ok:
        raise NotAFeed(f"the server answered HTTP {fetched.status}")
    body = fetched.body
    if not body.strip():
        raise NotAFeed("the answer is empty")
    stripped = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith((b"{", b"[")):
        return _json_feed(fetched.url, body)
    media = "" if fetched.content_type in ("text/xml", "application/xml") else fetched.content_type
    # an XHTML doctype in front of a real feed is valid input: look for the feed's root element too
    if looks_like_html(body, media) and b"<rss" not in body[:4096] and b"<feed" not in body[:4096]:
        raise NotAFeed("it is an HTML page, not a feed")
    parsed = feedparser.parse(io.BytesIO(body), sanitize_html=False, resolve_relative_uris=False)
    version = str(parsed.get("version") or "")
    entries = list(parsed.get("entries") or [])
    if not version:
        raise NotAFeed(
            "it is neither RSS, Atom nor RDF" + (" (not well-formed XML)" if parsed.get("bozo") else "")
        )
    feed = parsed.get("feed") or {}
    facts = FeedFacts(
        url=fetched.url,
        kind="atom"
        if version.startswith("atom")
        else ("rdf" if version.startswith("rss09") or version == "rss10" else "rss"),
        title=(feed.get("title") or "").strip() or None,
        language=primary_language(feed.get("language")),
        entries=len(entries),
    )
    for entry in entries:
        if entry.get("link"):
            facts.links.add(str(entry["link"]))
        for tag in entry.get("tags") or []:
            term = (tag.get("term") or tag.get("label") or "").strip()
            if term:
                facts.categories[term] += 1
        for key in ("published", "updated"):
            moment = parse_date(entry.get(key))
            if moment is not None:
                facts.dates.append(moment)
                break
        if facts.language is None:
            detail = entry.get("title_detail") or {}
            facts.language = primary_language(detail.get("language"))
    return facts


def _json_feed(url: str, body: bytes) -> FeedFacts:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAFeed(f"it is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith(
        "https://jsonfeed.org/version/"
    ):
        raise NotAFeed('it is JSON but not a JSON Feed (no "version": "https://jsonfeed.org/version/1.1")')
    items = data.get("items")
    if not isinstance(items, list):
        raise NotAFeed('it is a JSON Feed without an "items" list')
    facts = FeedFacts(
        url=url, kind="json", title=str(data.get("title") or "").strip() or None,
        language=primary_language(str(data.get("language") or "")), entries=len(items),
    )  # fmt: skip
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("url"):
            facts.links.add(str(item["url"]))
        for tag in item.get("tags") or []:
            if isinstance(tag, str) and tag.strip():
                facts.categories[tag.strip()] += 1
        moment = parse_date(item.get("date_published") or item.get("date_modified"))
        if moment is not None:
            facts.dates.append(moment)
    return facts


def parse_date(text: object) -> datetime | None:
    """An RFC 822 or RFC 3339 date with its offset, or None (no offset written: None too)."""
    if not isinstance(text, str) or not text.strip():
        return None
    value = text.strip()
    try:
        moment = datetime.fromisoformat(re.sub(r"Z$", "+00:00", value))
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None
    return moment


def offsets_of(dates: list[datetime]) -> Counter[timedelta]:
    return Counter(moment.utcoffset() or timedelta(0) for moment in dates)
