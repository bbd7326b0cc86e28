"""A syndication feed (RSS 2.0, Atom 1.0, RSS 1.0/RDF, JSON Feed) from an http(s) URL or a local file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Literal

import requests
from pydantic import Field

from publisher import __version__
from publisher.config.base import SourceSettingsBase
from publisher.discovery.page import feed_links_of
from publisher.errors import SourceError
from publisher.models import SourceResult, SourceState
from publisher.sources.base import SourceContext, SourceKind
from publisher.sources.fetching import Download, download, is_remote, local_path, read_file
from publisher.sources.jsonfeed import looks_like_json, parse_json_feed
from publisher.sources.normalize import RawItem, canonical_url, is_held_back, normalize_items
from publisher.sources.xmlfeed import FeedParseError, ParsedFeed, looks_like_html, parse_xml_feed

ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml, application/feed+json;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, application/json;q=0.7, */*;q=0.1"
)


class FeedSourceSettings(SourceSettingsBase):
    kind: Literal["feed"]
    url: str = Field(description="http(s) URL or a local path to an RSS, Atom, RDF or JSON feed")
    language: str | None = None
    section: str | None = None
    timeout: float = Field(default=15.0, gt=0, le=300)


def utc_now() -> datetime:
    return datetime.now(UTC)


class FeedSource:
    """One feed. fetch() raises SourceError when the feed as a whole is unusable; a bad entry only
    adds a warning.

    A feed whose bytes are those of the last full read, under the same settings, is answered like a
    304 (not_modified) without being parsed again: the same bytes give the same articles. Not when
    the last read held an item back for its future date (that one is taken once its day comes).
    `fingerprint` names what else shapes the articles later (the collect stage's aliases and credits).
    """

    def __init__(
        self,
        settings: FeedSourceSettings,
        *,
        site_timezone: tzinfo,
        default_language: str | None = None,
        languages: Collection[str] = (),
        session: requests.Session | None = None,
        base_dir: Path | None = None,
        clock: Callable[[], datetime] = utc_now,
        fingerprint: str = "",
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._zone = site_timezone
        self._default_language = default_language
        self._languages = tuple(languages)
        self._session = session
        self._base_dir = base_dir
        self._clock = clock
        self._fingerprint = fingerprint

    @property
    def _setting(self) -> str:
        return f"sources[{self.name}].url"

    def fetch(self, state: SourceState) -> SourceResult:
        fetched = self._download(state)
        if fetched.not_modified:
            return SourceResult(
                source_name=self.name,
                not_modified=True,
                etag=fetched.etag,
                last_modified=fetched.last_modified,
            )
        digest = self._content_digest(fetched)
        if state.content_digest == digest:
            return SourceResult(
                source_name=self.name,
                not_modified=True,
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                content_digest=digest,
            )
        parsed = self._parse(fetched)
        language_hint = f"the feed names none; set language: in sources[{self.name}] in config.yaml"
        articles, warnings = normalize_items(
            self._with_defaults(parsed),
            source_name=self.name,
            zone=self._zone,
            now=self._clock(),
            fallback_language=self.settings.language or parsed.language or self._default_language,
            language_hint=language_hint,
            languages=self._languages,
            # a bare GUID is unique within this feed, whatever the source is called (renaming it
            # must not make its stories new)
            id_scope=canonical_url(self.settings.url) if is_remote(self.settings.url) else self.settings.url,
        )
        return SourceResult(
            source_name=self.name,
            articles=articles,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            warnings=parsed.warnings + warnings,
            title=parsed.title,
            content_digest=None if any(is_held_back(w) for w in warnings) else digest,
        )

    def _content_digest(self, fetched: Download) -> str:
        """SHA-256 of the bytes and of everything that decides what they become."""
        digest = hashlib.sha256()
        for part in (
            __version__,  # a new release reads every feed again
            self.settings.model_dump_json(),
            str(self._zone),
            self._default_language or "",
            ",".join(self._languages),
            self._fingerprint,
            fetched.url,
            fetched.content_type or "",
            fetched.charset or "",
        ):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
        digest.update(fetched.body)
        return digest.hexdigest()

    def _download(self, state: SourceState) -> Download:
        location = self.settings.url
        if is_remote(location):
            return download(
                location,
                source_name=self.name,
                setting=self._setting,
                timeout=self.settings.timeout,
                session=self._session,
                etag=state.etag,
                last_modified=state.last_modified,
                accept=ACCEPT,
            )
        if "://" in location and not location.lower().startswith("file:"):
            raise SourceError(
                self.name,
                f"{location} is neither http(s) nor a local file; fix {self._setting} in config.yaml",
            )
        path = local_path(location, self._base_dir)
        return read_file(
            path, source_name=self.name, setting=self._setting, last_modified=state.last_modified
        )

    def _parse(self, fetched: Download) -> ParsedFeed:
        try:
            if looks_like_json(fetched.body, fetched.content_type):
                return parse_json_feed(fetched.body, url=fetched.url)
            return parse_xml_feed(fetched.body, url=fetched.url, charset=fetched.charset)
        except FeedParseError as exc:
            linked = feed_links_of(fetched.body, fetched.url) if looks_like_html(fetched.body) else []
            raise SourceError(
                self.name,
                f"{fetched.url} is not a usable feed: {exc}; check {self._setting} in config.yaml "
                "(it must point at the RSS, Atom or JSON feed itself)"
                + (f"; that page links to these feeds: {', '.join(linked)}" if linked else ""),
            ) from exc

    def _with_defaults(self, parsed: ParsedFeed) -> list[RawItem]:
        """The configured section fills in for entries without a category."""
        if self.settings.section:
            for item in parsed.items:
                item.section = item.section or self.settings.section
        return parsed.items


def _build(settings: FeedSourceSettings, context: SourceContext) -> FeedSource:
    return FeedSource(
        settings,
        site_timezone=context.site_timezone,
        default_language=context.default_language,
        languages=context.languages,
        session=context.session,
        base_dir=context.base_dir,
        fingerprint=context.fingerprint,
    )


KIND = SourceKind("feed", FeedSourceSettings, _build, "an RSS 2.0, Atom, RSS 1.0 or JSON Feed at url (http(s) or a path)")
