"""Atom 1.0 and RSS 2.0 feeds of a language's newest articles.

feedgen 1.0 serializes; its quirks stay inside this module (see shared/notes/libraries.md):
- it fills every unset date with now(): every date here is set from the articles, and the feed's
  <updated> is the newest entry's, so rebuilding with nothing new gives byte-identical files;
- add_entry() prepends: entries are appended, in the order given (newest first);
- Atom entry links lose rel/type/length (an enclosure becomes a second alternate link): the entry
  links are rewritten after serializing;
- RSS gets neither rel=hub nor a name-only author, and its self link is shared by both formats: a
  generator is configured per format and the RSS channel is completed after serializing.
"""

from __future__ import annotations

import html
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote, urlsplit

from feedgen.feed import FeedGenerator
from lxml import etree

from publisher.config import FeedSettings, SiteSettings
from publisher.models import Article, FeedFile

FeedFormat = Literal["atom", "rss"]

ATOM_NS = "http://www.w3.org/2005/Atom"
DC_NS = "http://purl.org/dc/elements/1.1/"
MEDIA_TYPES: dict[str, str] = {"atom": "application/atom+xml", "rss": "application/rss+xml"}

# Part of every generated tag: id (RFC 4151). Changing it would make every old entry look new.
TAG_URI_DATE = "2026"
# The <updated> of a feed with no entries: any fixed instant keeps rebuilds byte-identical.
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)

_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Characters XML 1.0 forbids; one stray control character in a source would sink the whole feed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# RFC 4151 tag specific part: pchar / "/" / "?" (pchar keeps sub-delims, ":" and "@").
_TAG_SAFE = "/?:@!$&'()*+,;=-._~"
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def feed_file_name(language: str, fmt: FeedFormat) -> str:
    """The file name inside the feeds directory, e.g. "ar.atom.xml"."""
    return f"{language}.{fmt}.xml"


def feed_url(feeds: FeedSettings, name: str) -> str:
    """The public URL of a feed file: what rel=self says and what WebSub hubs are told."""
    return f"{feeds.base_url.rstrip('/')}/{name}"


def language_page_url(site: SiteSettings, language: str) -> str:
    """The site's page for a language, the feed's rel=alternate unless the caller gives one."""
    return f"{site.base_url.rstrip('/')}/{language}/"


def atom_id(raw: str, authority: str) -> str:
    """An Atom id (an IRI) for a stored id: kept when it is an absolute URL, URN or tag: URI,
    otherwise a stable tag: URI from the site's host and the id, percent-encoded."""
    candidate = raw.strip()
    scheme = _SCHEME.match(candidate)
    if scheme and not any(ch.isspace() for ch in candidate):
        name = scheme.group(1).lower()
        if name in ("urn", "tag") and len(candidate) > len(name) + 1:
            return candidate
        if name in ("http", "https") and urlsplit(candidate).netloc:
            return candidate
    return f"tag:{authority},{TAG_URI_DATE}:{quote(candidate, safe=_TAG_SAFE)}"


def _utc(moment: datetime) -> datetime:
    """Aware UTC, whole seconds. Naive values are taken as UTC (SQLite drops the zone); seconds
    because a store that loses microseconds must not make an unchanged article look updated."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def _clean(text: str | None) -> str:
    return _NOT_XML.sub("", text or "")


@dataclass(frozen=True)
class Enclosure:
    url: str
    media_type: str
    length: int | None = None  # bytes; RSS requires the attribute, so 0 is written when unknown
    title: str | None = None  # the image's alt text or caption (Atom only)


@dataclass(frozen=True)
class FeedEntry:
    """One entry, identical in both formats. Dates are normalized to aware UTC whole seconds."""

    id: str  # an IRI: see atom_id()
    title: str
    link: str  # the article's page
    published: datetime
    updated: datetime  # never before published
    summary: str = ""  # plain text
    content_html: str = ""
    author: str | None = None
    categories: tuple[str, ...] = ()
    enclosure: Enclosure | None = None

    def __post_init__(self) -> None:
        published = _utc(self.published)
        # frozen: normalizing once here means no caller can hand feedgen a naive or skewed date
        object.__setattr__(self, "published", published)
        object.__setattr__(self, "updated", max(_utc(self.updated), published))
        for name in ("title", "link", "summary", "content_html"):
            object.__setattr__(self, name, _clean(getattr(self, name)))
        object.__setattr__(self, "title", self.title.strip() or self.link)
        object.__setattr__(self, "author", _clean(self.author).strip() or None)

    @classmethod
    def from_article(cls, article: Article, *, authority: str) -> FeedEntry:
        enclosure = None
        if article.image_url:
            guessed, _ = mimetypes.guess_type(urlsplit(article.image_url).path)
            enclosure = Enclosure(
                url=article.image_url,
                media_type=article.image_type or guessed or "application/octet-stream",
                length=article.image_length if article.image_length and article.image_length > 0 else None,
                title=_clean(article.image_alt or article.image_caption).strip() or None,
            )
        return cls(
            id=atom_id(article.id or article.url, authority),
            title=article.title,
            link=article.url,
            published=article.published_at,
            updated=article.updated_at,
            summary=article.summary,
            content_html=article.content_html,
            author=article.author,
            categories=(article.section,) if article.section else (),
            enclosure=enclosure,
        )


@dataclass(frozen=True)
class Feed:
    """A language's feed, independent of format. `updated` is derived, never now()."""

    id: str
    title: str
    language: str
    home_url: str  # rel=alternate, and the RSS channel <link>
    author: str  # feed-level: Atom needs an author for entries that have none
    entries: tuple[FeedEntry, ...]
    subtitle: str = ""
    logo_url: str | None = None
    hubs: tuple[str, ...] = ()

    @property
    def updated(self) -> datetime:
        return max((entry.updated for entry in self.entries), default=EMPTY_FEED_UPDATED)

    def render(self, fmt: FeedFormat, *, self_url: str) -> bytes:
        generator = self._generator(fmt, self_url)
        if fmt == "atom":
            root = etree.fromstring(generator.atom_str(pretty=False), _SAFE_PARSER)
            self._fix_atom_entries(root)
        else:
            root = etree.fromstring(generator.rss_str(pretty=False), _SAFE_PARSER)
            root = self._complete_rss(root)
        xml: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)
        return xml

    def _generator(self, fmt: FeedFormat, self_url: str) -> FeedGenerator:
        fg = FeedGenerator()
        fg.id(self.id)
        fg.title(_clean(self.title))
        fg.subtitle(_clean(self.subtitle or self.title))
        fg.author({"name": _clean(self.author)})
        fg.language(self.language)
        fg.generator("publisher")
        if self.logo_url:
            fg.logo(self.logo_url)
        fg.link(href=self_url, rel="self", type=MEDIA_TYPES[fmt])
        for hub in self.hubs:
            fg.link(href=hub, rel="hub")
        # last: the RSS channel <link> is whichever link came last
        fg.link(href=self.home_url, rel="alternate", type="text/html", hreflang=self.language)
        fg.updated(self.updated)
        for entry in self.entries:
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

    def _fix_atom_entries(self, root: etree._Element) -> None:
        """Replace feedgen's rel-less entry links with ours: one alternate, one enclosure."""
        elements = root.findall(f"{{{ATOM_NS}}}entry")
        if len(elements) != len(self.entries):
            raise AssertionError(f"feedgen wrote {len(elements)} Atom entries for {len(self.entries)}")
        for element, entry in zip(elements, self.entries, strict=True):
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

    def _complete_rss(self, root: etree._Element) -> etree._Element:
        """Add atom:link rel=hub, dc:creator, and an HTML-escaped description from plain summaries."""
        channel = root.find("channel")
        if channel is None:
            raise AssertionError("feedgen wrote RSS without a channel")
        self_links = channel.findall(f"{{{ATOM_NS}}}link")
        anchor = channel.index(self_links[-1]) + 1 if self_links else len(channel)
        for offset, hub in enumerate(self.hubs):
            link = etree.Element(f"{{{ATOM_NS}}}link", href=hub, rel="hub")
            channel.insert(anchor + offset, link)
        items = channel.findall("item")
        if len(items) != len(self.entries):
            raise AssertionError(f"feedgen wrote {len(items)} RSS items for {len(self.entries)}")
        for item, entry in zip(items, self.entries, strict=True):
            description = item.find("description")
            if entry.summary and description is not None:
                # RSS readers read description as HTML; our summary is plain text
                description.text = html.escape(entry.summary, quote=False)
            if entry.author:
                creator = etree.Element(f"{{{DC_NS}}}creator")
                creator.text = entry.author
                guid = item.find("guid")
                item.insert(item.index(guid) if guid is not None else len(item), creator)
        etree.cleanup_namespaces(root, top_nsmap={"dc": DC_NS})
        return root


def build_feed(
    articles: Sequence[Article],
    *,
    site: SiteSettings,
    feeds: FeedSettings,
    language: str,
    title: str | None = None,
    home_url: str | None = None,
) -> Feed:
    """The newest `feeds.entries` articles of one language, in the order given (newest first).

    Articles of another language are left out; a repeated id keeps its first (newest) occurrence.
    """
    if not _LANGUAGE.match(language):
        raise ValueError(f"feed language {language!r} is not a BCP 47 tag such as 'en' or 'ar'")
    authority = (urlsplit(site.base_url).hostname or "localhost").lower()
    primary = language.split("-")[0].lower()
    entries: list[FeedEntry] = []
    seen: set[str] = set()
    for article in articles:
        if article.language.split("-")[0].lower() != primary:
            continue
        entry = FeedEntry.from_article(article, authority=authority)
        if entry.id in seen:
            continue
        seen.add(entry.id)
        entries.append(entry)
        if len(entries) >= feeds.entries:
            break
    return Feed(
        id=f"tag:{authority},{TAG_URI_DATE}:feeds/{language}",
        title=title or site.name,
        language=language,
        home_url=home_url or language_page_url(site, language),
        author=site.name,
        entries=tuple(entries),
        logo_url=site.logo_url,
        hubs=tuple(dict.fromkeys(feeds.websub_hubs)),
    )


def build_feed_files(
    articles: Sequence[Article],
    *,
    site: SiteSettings,
    feeds: FeedSettings,
    language: str,
    title: str | None = None,
    home_url: str | None = None,
) -> list[FeedFile]:
    """One FeedFile per configured format: `{language}.atom.xml`, `{language}.rss.xml`."""
    feed = build_feed(articles, site=site, feeds=feeds, language=language, title=title, home_url=home_url)
    files: list[FeedFile] = []
    for fmt in dict.fromkeys(feeds.formats):
        name = feed_file_name(language, fmt)
        content = feed.render(fmt, self_url=feed_url(feeds, name))
        files.append(FeedFile(name=name, content=content, media_type=MEDIA_TYPES[fmt]))
    return files
