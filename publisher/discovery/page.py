"""What one HTML page says about its site: language, name, feeds it links to, language alternates, logo."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree

FEED_TYPES = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/feed+json": "json",
    "application/json": "json",
    "application/rdf+xml": "rdf",
    "application/xml": "xml",
    "text/xml": "xml",
}
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")
_TITLE_SEPARATORS = re.compile(r"\s+[|\-–—:·•]\s+")


@dataclass(frozen=True)
class FeedLink:
    url: str
    type: str  # rss, atom, json, rdf, xml
    title: str | None
    hreflang: str | None
    found_on: str  # the page that linked it


@dataclass(frozen=True)
class Logo:
    url: str
    where: str  # "header logo", "apple-touch-icon", "og:image"


@dataclass
class PageFacts:
    url: str
    language: str | None = None
    site_name: str | None = None  # og:site_name
    title: str | None = None
    feeds: list[FeedLink] = field(default_factory=list)
    alternates: dict[str, str] = field(default_factory=dict)  # hreflang (primary subtag) -> url
    logos: list[Logo] = field(default_factory=list)  # best first

    @property
    def name_guess(self) -> str | None:
        """og:site_name, else the title's first part ("Levant Today | Home" -> "Levant Today")."""
        if self.site_name:
            return self.site_name
        if self.title:
            return _TITLE_SEPARATORS.split(self.title)[0].strip() or None
        return None


def primary_language(tag: str | None) -> str | None:
    """'en-GB' -> 'en'; None for 'x-default' or anything that is not a language tag."""
    if not tag or not _LANGUAGE.match(tag.strip()):
        return None
    return re.split(r"[-_]", tag.strip())[0].lower()


def looks_like_html(body: bytes, content_type: str = "") -> bool:
    if content_type in ("text/html", "application/xhtml+xml"):
        return True
    head = body[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _parse(body: bytes) -> lxml.html.HtmlElement | None:
    try:
        return lxml.html.document_fromstring(body)
    except (etree.ParserError, ValueError):
        return None


def read_page(body: bytes, url: str) -> PageFacts:
    facts = PageFacts(url=url)
    root = _parse(body)
    if root is None:
        return facts
    base = url
    for element in root.iter("base"):
        if element.get("href"):
            base = urljoin(url, element.get("href"))
            break
    facts.language = primary_language(root.get("lang") or root.get("xml:lang"))
    title = root.find(".//title")
    if title is not None and title.text_content().strip():
        facts.title = " ".join(title.text_content().split())
    for meta in root.iter("meta"):
        prop = (meta.get("property") or meta.get("name") or "").strip().lower()
        content = (meta.get("content") or "").strip()
        if not content:
            continue
        if prop == "og:site_name":
            facts.site_name = facts.site_name or content
        elif prop == "og:locale" and facts.language is None:
            facts.language = primary_language(content)
    og_images: list[Logo] = []
    icons: list[Logo] = []
    for link in root.iter("link"):
        rels = (link.get("rel") or "").lower().split()
        href = (link.get("href") or "").strip()
        if not href:
            continue
        absolute = urljoin(base, href)
        if "alternate" in rels:
            media = (link.get("type") or "").split(";", 1)[0].strip().lower()
            hreflang = link.get("hreflang")
            if media in FEED_TYPES:
                if "comments" in absolute.lower() or "comments" in (link.get("title") or "").lower():
                    continue  # a comments feed is not the site's articles
                facts.feeds.append(
                    FeedLink(absolute, FEED_TYPES[media], link.get("title"), primary_language(hreflang), url)
                )
            elif hreflang and not media:
                language = primary_language(hreflang)
                if language and language not in facts.alternates:
                    facts.alternates[language] = absolute
        elif "apple-touch-icon" in rels or "apple-touch-icon-precomposed" in rels:
            icons.append(Logo(absolute, "apple-touch-icon"))
    for meta in root.iter("meta"):
        if (meta.get("property") or "").lower() in ("og:image", "og:image:url") and meta.get("content"):
            og_images.append(Logo(urljoin(base, meta.get("content", "").strip()), "og:image"))
    facts.logos = _header_logos(root, base) + icons + og_images
    return facts


def _header_logos(root: lxml.html.HtmlElement, base: str) -> list[Logo]:
    """<img> inside <header> (or an element whose class/id says header or logo) that looks like a logo."""
    found: list[Logo] = []
    for image in root.iter("img"):
        src = (image.get("src") or image.get("data-src") or "").strip()
        if not src or src.startswith("data:"):
            continue
        hints = " ".join(filter(None, [src, image.get("alt"), image.get("class"), image.get("id")])).lower()
        in_header = False
        for ancestor in image.iterancestors():
            marker = " ".join(filter(None, [ancestor.tag, ancestor.get("class"), ancestor.get("id")])).lower()
            if "logo" in marker:
                hints += " logo"
            if ancestor.tag == "header" or "header" in marker or "masthead" in marker:
                in_header = True
        if "logo" in hints and (in_header or "logo" in src.lower()):
            found.append(Logo(urljoin(base, src), "header logo"))
    return found


def feed_links_of(body: bytes, url: str) -> list[str]:
    """The feed URLs an HTML page links to with <link rel="alternate">, in page order."""
    seen: list[str] = []
    for link in read_page(body, url).feeds:
        if link.url not in seen:
            seen.append(link.url)
    return seen


def same_site(url: str, other: str) -> bool:
    return urlsplit(url).hostname == urlsplit(other).hostname
