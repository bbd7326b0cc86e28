"""Atom 1.0 (RFC 4287): feedgen's output with the entry links rewritten (rel, type, length, title)."""

from __future__ import annotations

from lxml import etree

from publisher.render.feeds.feedgen_xml import ATOM_NS, FH_NS, add_history, generator, parse, serialize
from publisher.render.feeds.model import Feed
from publisher.render.feeds.spec import FeedFormatSpec

MEDIA_TYPE = "application/atom+xml"


def render(feed: Feed, self_url: str) -> bytes:
    root = parse(generator(feed, self_url=self_url, media_type=MEDIA_TYPE, rss=False).atom_str(pretty=False))
    _fix_entry_links(feed, root)
    add_history(root, feed)
    if feed.history is not None and feed.history.archived:
        etree.cleanup_namespaces(root, top_nsmap={"fh": FH_NS})
    return serialize(root)


def _fix_entry_links(feed: Feed, root: etree._Element) -> None:
    """Replace feedgen's rel-less entry links with ours: one alternate, one enclosure."""
    elements = root.findall(f"{{{ATOM_NS}}}entry")
    if len(elements) != len(feed.entries):
        raise AssertionError(f"feedgen wrote {len(elements)} Atom entries for {len(feed.entries)}")
    for element, entry in zip(elements, feed.entries, strict=True):
        old = element.findall(f"{{{ATOM_NS}}}link")
        position = element.index(old[0]) if old else len(element)
        for link in old:
            element.remove(link)
        links = [{"rel": "alternate", "type": "text/html", "href": entry.link}]
        if entry.enclosure is not None:
            enclosure = {"rel": "enclosure", "type": entry.enclosure.media_type}
            if entry.enclosure.length:
                enclosure["length"] = str(entry.enclosure.length)
            enclosure["href"] = entry.enclosure.url
            if entry.enclosure.title:
                enclosure["title"] = entry.enclosure.title
            links.append(enclosure)
        for offset, attributes in enumerate(links):
            link = etree.Element(f"{{{ATOM_NS}}}link")
            for key, value in attributes.items():
                link.set(key, value)
            element.insert(position + offset, link)


FORMAT = FeedFormatSpec(name="atom", suffix=".atom.xml", media_type=MEDIA_TYPE, label="Atom", render=render, archives=True)
