"""RSS 2.0: feedgen's output completed with atom:link rel=hub, dc:creator and escaped descriptions."""

from __future__ import annotations

import html

from lxml import etree

from publisher.render.feeds.feedgen_xml import ATOM_NS, FH_NS, add_history, generator, parse, serialize
from publisher.render.feeds.model import Feed
from publisher.render.feeds.spec import FeedFormatSpec

MEDIA_TYPE = "application/rss+xml"
DC_NS = "http://purl.org/dc/elements/1.1/"


def render(feed: Feed, self_url: str) -> bytes:
    root = parse(generator(feed, self_url=self_url, media_type=MEDIA_TYPE, rss=True).rss_str(pretty=False))
    return serialize(_complete(feed, root))


def _complete(feed: Feed, root: etree._Element) -> etree._Element:
    """Add atom:link rel=hub, dc:creator, and an HTML-escaped description from plain summaries."""
    channel = root.find("channel")
    if channel is None:
        raise AssertionError("feedgen wrote RSS without a channel")
    self_links = channel.findall(f"{{{ATOM_NS}}}link")
    anchor = channel.index(self_links[-1]) + 1 if self_links else len(channel)
    for offset, hub in enumerate(feed.hubs):
        link = etree.Element(f"{{{ATOM_NS}}}link", href=hub, rel="hub")
        channel.insert(anchor + offset, link)
    add_history(channel, feed)
    items = channel.findall("item")
    if len(items) != len(feed.entries):
        raise AssertionError(f"feedgen wrote {len(items)} RSS items for {len(feed.entries)}")
    for item, entry in zip(items, feed.entries, strict=True):
        description = item.find("description")
        if entry.summary and description is not None:
            # RSS readers read description as HTML; our summary is plain text
            description.text = html.escape(entry.summary, quote=False)
        if entry.author:
            creator = etree.Element(f"{{{DC_NS}}}creator")
            creator.text = entry.author
            guid = item.find("guid")
            item.insert(item.index(guid) if guid is not None else len(item), creator)
    namespaces = {"dc": DC_NS}
    if feed.history is not None and feed.history.archived:
        namespaces["fh"] = FH_NS
    etree.cleanup_namespaces(root, top_nsmap=namespaces)
    return root


FORMAT = FeedFormatSpec(name="rss", suffix=".rss.xml", media_type=MEDIA_TYPE, label="RSS", render=render, archives=True)
