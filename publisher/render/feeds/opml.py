"""OPML 2.0 subscription lists (http://opml.org/spec2.opml): a language's section feeds, one
outline each, in the form feed readers import ("Import OPML" in most; `newsboat -i`).

One format per feed: a reader importing every format would show each article two or three times.
No dates are written, so the list is byte-identical until a section appears or goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

SUFFIX = ".opml"
MEDIA_TYPE = "text/x-opml"


@dataclass(frozen=True)
class Subscription:
    title: str
    feed_url: str  # xmlUrl
    home_url: str  # htmlUrl
    language: str


def opml_file_name(language: str) -> str:
    return f"{language}{SUFFIX}"


def render_opml(title: str, subscriptions: Sequence[Subscription]) -> bytes:
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    body = etree.SubElement(root, "body")
    for item in subscriptions:
        # type="rss" is OPML's word for any subscribable feed, Atom and JSON Feed included
        etree.SubElement(
            body,
            "outline",
            type="rss",
            text=item.title,
            title=item.title,
            xmlUrl=item.feed_url,
            htmlUrl=item.home_url,
            language=item.language,
        )
    xml: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    return xml
