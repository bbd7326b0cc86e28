"""JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/), written with the standard json module.

No library: the format is a plain JSON object whose every field is listed in the spec, and what a
library would add (a model to fill) is what Feed already is. Keys are written in the spec's order
and nothing varies between runs, so an unchanged feed gives byte-identical files.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from publisher.render.feeds.model import Feed, FeedEntry
from publisher.render.feeds.spec import FeedFormatSpec

MEDIA_TYPE = "application/feed+json"
VERSION = "https://jsonfeed.org/version/1.1"


def render(feed: Feed, self_url: str) -> bytes:
    document: dict[str, Any] = {
        "version": VERSION,
        "title": feed.title,
        "home_page_url": feed.home_url,
        "feed_url": self_url,
    }
    if feed.distinct_subtitle:
        document["description"] = feed.distinct_subtitle
    if feed.logo_url:
        document["icon"] = feed.logo_url
    document["authors"] = [{"name": feed.author}]
    document["language"] = feed.language
    if feed.hubs:
        document["hubs"] = [{"type": "WebSub", "url": hub} for hub in feed.hubs]
    document["items"] = [_item(entry) for entry in feed.entries]
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    return text.encode("utf-8")


def _date(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as the spec's examples write it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _item(entry: FeedEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"id": entry.id, "url": entry.link, "title": entry.title}
    if entry.content_html:
        item["content_html"] = entry.content_html
    # one of content_html and content_text is required; the plain summary is the text version
    if entry.summary or not entry.content_html:
        item["content_text"] = entry.summary or entry.title
    if entry.summary:
        item["summary"] = entry.summary
    if entry.enclosure is not None and entry.enclosure.media_type.startswith("image/"):
        item["image"] = entry.enclosure.url
    item["date_published"] = _date(entry.published)
    item["date_modified"] = _date(entry.updated)
    if entry.author:
        item["authors"] = [{"name": entry.author}]
    if entry.categories:
        item["tags"] = list(entry.categories)
    if entry.enclosure is not None:
        attachment: dict[str, Any] = {"url": entry.enclosure.url, "mime_type": entry.enclosure.media_type}
        if entry.enclosure.title:
            attachment["title"] = entry.enclosure.title
        if entry.enclosure.length:
            attachment["size_in_bytes"] = entry.enclosure.length
        item["attachments"] = [attachment]
    return item


FORMAT = FeedFormatSpec(name="json", suffix=".json", media_type=MEDIA_TYPE, label="JSON Feed", render=render)
