"""The feedgen adapter shared by the Atom and RSS modules: a generator per format, then repairs.

feedgen 1.0 serializes; its quirks, measured on 1.0.0 (no upstream change since 2023), stay here:
- it fills every unset date with now(): every date here is set from the articles, and the feed's
  updated date is the newest entry's, so rebuilding with nothing new gives byte-identical files;
- add_entry() prepends: entries are appended, in the order given (newest first);
- Atom entry links lose rel/type/length (an enclosure becomes a second alternate link): the Atom
  module rewrites the entry links after serializing;
- RSS gets neither rel=hub nor a name-only author, and its self link is shared by both formats: a
  generator is configured per format and the RSS module completes the channel after serializing;
- subtitle() also sets the RSS description: Atom gets a subtitle only when it says more than the
  title, RSS (which requires a description) falls back to the title.
"""

from __future__ import annotations

from feedgen.feed import FeedGenerator
from lxml import etree

from publisher.render.feeds.model import Feed, clean

ATOM_NS = "http://www.w3.org/2005/Atom"
FH_NS = "http://purl.org/syndication/history/1.0"  # RFC 5005
SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def generator(feed: Feed, *, self_url: str, media_type: str, rss: bool) -> FeedGenerator:
    fg = FeedGenerator()
    fg.id(feed.id)
    fg.title(clean(feed.title))
    subtitle = feed.distinct_subtitle
    if subtitle or rss:
        fg.subtitle(subtitle or clean(feed.title))
    fg.author({"name": clean(feed.author)})
    fg.language(feed.language)
    fg.generator("publisher")
    if feed.logo_url:
        fg.logo(feed.logo_url)
    fg.link(href=self_url, rel="self", type=media_type)
    for hub in feed.hubs:
        fg.link(href=hub, rel="hub")
    # last: the RSS channel <link> is whichever link came last
    fg.link(href=feed.home_url, rel="alternate", type="text/html", hreflang=feed.language)
    fg.updated(feed.updated)
    for entry in feed.entries:
        fe = fg.add_entry(order="append")
        fe.guid(entry.id, permalink=entry.id == entry.link)
        fe.title(entry.title)
        fe.link(href=entry.link, rel="alternate")
        if entry.enclosure is not None:
            fe.link(
                href=entry.enclosure.url,
                rel="enclosure",
                type=entry.enclosure.media_type,
                length=str(entry.enclosure.length or 0),
            )
        fe.published(entry.published)
        fe.updated(entry.updated)
        if entry.content_html:
            fe.content(entry.content_html, type="html")
        if entry.summary:
            fe.summary(entry.summary)
        if entry.author:
            fe.author({"name": entry.author})
        for category in entry.categories:
            fe.category(term=category)
    return fg


def add_history(parent: etree._Element, feed: Feed) -> None:
    """RFC 5005: <fh:archive/> in an archive document, and atom:link rel=prev-archive / current,
    after the feed's other atom:links (feedgen refuses rel values it does not know)."""
    elements: list[etree._Element] = []
    if feed.history is not None and feed.history.archived:
        elements.append(etree.Element(f"{{{FH_NS}}}archive", nsmap={"fh": FH_NS}))
    for rel, href in feed.links:
        elements.append(etree.Element(f"{{{ATOM_NS}}}link", rel=rel, href=href))
    links = parent.findall(f"{{{ATOM_NS}}}link")
    anchor = parent.index(links[-1]) + 1 if links else len(parent)
    for offset, element in enumerate(elements):
        parent.insert(anchor + offset, element)


def parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml, SAFE_PARSER)


def serialize(root: etree._Element) -> bytes:
    xml: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    return xml
