"""A feed independent of its format: Feed, FeedEntry, Enclosure, and the ids they carry.

Every value is normalized once, here, so that each format module writes what it is given:
dates are aware UTC whole seconds (a store that loses microseconds or zones must not make an
unchanged article look updated), text has no character XML forbids, and ids are IRIs.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from publisher.models import Article

# Part of every generated tag: id (RFC 4151). Changing it would make every old entry look new.
TAG_URI_DATE = "2026"
# The updated date of a feed with no entries: any fixed instant keeps rebuilds byte-identical.
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Characters XML 1.0 forbids; one stray control character in a source would sink the whole feed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# RFC 4151 tag specific part: pchar / "/" / "?" (pchar keeps sub-delims, ":" and "@").
_TAG_SAFE = "/?:@!$&'()*+,;=-._~"


def atom_id(raw: str, authority: str) -> str:
    """An id (an IRI) for a stored id: kept when it is an absolute URL, URN or tag: URI,
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


def utc(moment: datetime) -> datetime:
    """Aware UTC, whole seconds. Naive values are taken as UTC (SQLite drops the zone)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def clean(text: str | None) -> str:
    return _NOT_XML.sub("", text or "")


@dataclass(frozen=True)
class Enclosure:
    url: str
    media_type: str
    length: int | None = None  # bytes, when known; RSS writes 0 for unknown, Atom and JSON leave it out
    title: str | None = None  # the image's alt text or caption


@dataclass(frozen=True)
class FeedEntry:
    """One entry, identical in every format. Dates are normalized to aware UTC whole seconds."""

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
        published = utc(self.published)
        # frozen: normalizing once here means no format can be handed a naive or skewed date
        object.__setattr__(self, "published", published)
        object.__setattr__(self, "updated", max(utc(self.updated), published))
        for name in ("title", "link", "summary", "content_html"):
            object.__setattr__(self, name, clean(getattr(self, name)))
        object.__setattr__(self, "title", self.title.strip() or self.link)
        object.__setattr__(self, "author", clean(self.author).strip() or None)

    @classmethod
    def from_article(
        cls, article: Article, *, authority: str, image_lengths: dict[str, int] | None = None
    ) -> FeedEntry:
        """`image_lengths`: sizes measured by the feed step (image URL -> bytes), used when the
        article itself does not know its image's size."""
        enclosure = None
        if article.image_url:
            guessed, _ = mimetypes.guess_type(urlsplit(article.image_url).path)
            length = article.image_length if article.image_length and article.image_length > 0 else None
            if length is None and image_lengths:
                length = image_lengths.get(article.image_url)
            enclosure = Enclosure(
                url=article.image_url,
                media_type=article.image_type or guessed or "application/octet-stream",
                length=length,
                title=clean(article.image_alt or article.image_caption).strip() or None,
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
class History:
    """RFC 5005 archived feeds, as feed stems (a format turns them into its own file's URL)."""

    prev_archive: str | None = None  # the newest complete archive older than this document
    current: str | None = None  # an archive document's subscription feed
    archived: bool = False  # this is an archive document: <fh:archive/>, never rewritten


@dataclass(frozen=True)
class Feed:
    """A language's (or a section's) feed, independent of format. `updated` is derived, never now()."""

    id: str
    title: str
    language: str
    home_url: str  # rel=alternate, the RSS channel <link>, JSON Feed's home_page_url
    author: str  # feed-level: Atom needs an author for entries that have none
    entries: tuple[FeedEntry, ...]
    subtitle: str = ""  # Atom writes it only when it says more than the title
    logo_url: str | None = None
    hubs: tuple[str, ...] = ()
    history: History | None = None
    links: tuple[tuple[str, str], ...] = ()  # (rel, href): the history resolved for one format

    @property
    def updated(self) -> datetime:
        return max((entry.updated for entry in self.entries), default=EMPTY_FEED_UPDATED)

    @property
    def distinct_subtitle(self) -> str:
        """The subtitle, or "" when it would only repeat the title."""
        subtitle = clean(self.subtitle).strip()
        return "" if subtitle.casefold() == clean(self.title).strip().casefold() else subtitle
