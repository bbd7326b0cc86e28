"""From articles to feed files: which entries a feed holds, its ids, URLs and file names.

One feed per language (`ar.atom.xml`), and with `feeds.sections` one per language and section
(`ar/politics.atom.xml`); each is written in every configured format of the registry.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from publisher.config import FeedSettings, SiteSettings
from publisher.models import Article, FeedFile
from publisher.render.feeds.formats import feed_format
from publisher.render.feeds.model import TAG_URI_DATE, Feed, FeedEntry, History
from publisher.render.feeds.spec import FeedFormatSpec

_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")
_PLAIN_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,80}$")


def feed_url(feeds: FeedSettings, name: str) -> str:
    """The public URL of a feed file: what rel=self says and what WebSub hubs are told."""
    return f"{feeds.base_url.rstrip('/')}/{name}"


def language_page_url(site: SiteSettings, language: str) -> str:
    """The site's page for a language, the feed's rel=alternate unless the caller gives one."""
    return f"{site.base_url.rstrip('/')}/{language}/"


def section_slug(section: str) -> str:
    """A file-name-safe, stable name for a section: "politics" stays, "Art & Culture" becomes
    "art-culture", a name with no Latin letters (ثقافة) becomes "s-" and a hash of it."""
    lowered = section.strip().lower()
    if _PLAIN_SLUG.match(lowered):
        return lowered
    ascii_text = unicodedata.normalize("NFKD", lowered).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:60]
    if slug and _PLAIN_SLUG.match(slug):
        return slug
    return "s-" + hashlib.sha256(section.strip().encode("utf-8")).hexdigest()[:12]


def feed_stem(language: str, section: str | None = None) -> str:
    """The file name without its format's suffix: "ar", or "ar/politics" for a section feed."""
    return language if section is None else f"{language}/{section_slug(section)}"


def _authority(site: SiteSettings) -> str:
    return (urlsplit(site.base_url).hostname or "localhost").lower()


def build_feed(
    articles: Sequence[Article],
    *,
    site: SiteSettings,
    feeds: FeedSettings,
    language: str,
    title: str | None = None,
    home_url: str | None = None,
    section: str | None = None,
    image_lengths: Mapping[str, int] | None = None,
    history: History | None = None,
    limit: int | None = None,
) -> Feed:
    """The newest `feeds.entries` articles of one language (and section), in the order given
    (newest first). Articles of another language or section are left out; a repeated id keeps
    its first (newest) occurrence."""
    if not _LANGUAGE.match(language):
        raise ValueError(f"feed language {language!r} is not a BCP 47 tag such as 'en' or 'ar'")
    authority = _authority(site)
    primary = language.split("-")[0].lower()
    lengths = dict(image_lengths or {})
    entries: list[FeedEntry] = []
    seen: set[str] = set()
    for article in articles:
        if article.language.split("-")[0].lower() != primary:
            continue
        if section is not None and article.section != section:
            continue
        entry = FeedEntry.from_article(article, authority=authority, image_lengths=lengths)
        if entry.id in seen:
            continue
        seen.add(entry.id)
        entries.append(entry)
        if len(entries) >= (limit or feeds.entries):
            break
    name = title or site.name
    return Feed(
        # archive documents are documents of the same feed: they keep its id
        id=f"tag:{authority},{TAG_URI_DATE}:feeds/{feed_stem(language, section)}",
        title=name if section is None else f"{name} — {section}",
        language=language,
        home_url=home_url or language_page_url(site, language),
        author=site.name,
        entries=tuple(entries),
        subtitle=feeds.subtitles.get(language, ""),
        logo_url=site.logo_url,
        # an archive document never changes: it has nothing to announce to a hub
        hubs=() if history is not None and history.archived else tuple(dict.fromkeys(feeds.websub_hubs)),
        history=history,
    )


def archive_stem(language: str, page: int) -> str:
    """Archive document `page` (1 = the oldest) of a language's feed: "ar.archive/1"."""
    return f"{language}.archive/{page}"


def archive_formats(feeds: FeedSettings) -> list[FeedFormatSpec]:
    """The configured formats that carry RFC 5005 history (Atom and RSS; JSON Feed has none)."""
    return [spec for spec in map(feed_format, dict.fromkeys(feeds.formats)) if spec.archives]


def _with_links(feed: Feed, spec: FeedFormatSpec, feeds: FeedSettings) -> Feed:
    history = feed.history
    if history is None or not spec.archives:
        return feed
    links = [
        (rel, feed_url(feeds, spec.file_name(stem)))
        for rel, stem in (("prev-archive", history.prev_archive), ("current", history.current))
        if stem is not None
    ]
    return replace(feed, links=tuple(links))


def render_feed_files(
    feed: Feed, *, feeds: FeedSettings, stem: str, formats: Sequence[FeedFormatSpec] | None = None
) -> list[FeedFile]:
    """One FeedFile per format (the configured ones unless given): `{stem}.atom.xml`, `{stem}.json`."""
    files: list[FeedFile] = []
    for spec in formats if formats is not None else map(feed_format, dict.fromkeys(feeds.formats)):
        file_name = spec.file_name(stem)
        content = spec.render(_with_links(feed, spec, feeds), feed_url(feeds, file_name))
        files.append(FeedFile(name=file_name, content=content, media_type=spec.media_type))
    return files


def build_feed_files(
    articles: Sequence[Article],
    *,
    site: SiteSettings,
    feeds: FeedSettings,
    language: str,
    title: str | None = None,
    home_url: str | None = None,
    section: str | None = None,
    image_lengths: Mapping[str, int] | None = None,
) -> list[FeedFile]:
    """The files of one feed, in every configured format."""
    feed = build_feed(
        articles,
        site=site,
        feeds=feeds,
        language=language,
        title=title,
        home_url=home_url,
        section=section,
        image_lengths=image_lengths,
    )
    return render_feed_files(feed, feeds=feeds, stem=feed_stem(language, section))
