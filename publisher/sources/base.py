"""The one interface every kind of source offers, and the factory that builds one from its settings."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import requests

from publisher.config import (
    FeedSourceSettings,
    FilesSourceSettings,
    PageSourceSettings,
    WordPressSourceSettings,
)
from publisher.models import SourceResult, SourceState


class Source(Protocol):
    """Fetches articles. Raises publisher.errors.SourceError when the source as a whole is broken;
    item-level problems go into SourceResult.warnings and the item is skipped."""

    name: str

    def fetch(self, state: SourceState) -> SourceResult: ...


def build_source(
    settings: FeedSourceSettings | FilesSourceSettings | PageSourceSettings | WordPressSourceSettings,
    *,
    site_base_url: str,
    site_timezone: str = "UTC",
    default_language: str | None = None,
    languages: Collection[str] = (),
    session: requests.Session | None = None,
    base_dir: Path | None = None,
) -> Source:
    """A ready source for one sources[] entry of config.yaml.

    site_base_url: absolute base for relative URLs in a files source (and its default article URLs).
    site_timezone: IANA name; a date written without an offset is wall-clock time there.
    default_language: used when neither the item, the feed nor the settings name a language.
    languages: the site's languages (primary subtags): an item whose own markup names no language
        gets the language of its text among these.
    session: shared HTTP connection pool (the caller closes it); None opens one per fetch.
    base_dir: relative local paths resolve against it (pass the config file's directory);
        None means the current directory.
    """
    # imported here: each kind pulls in its own libraries (trafilatura is slow to import)
    zone = ZoneInfo(site_timezone)
    if isinstance(settings, FeedSourceSettings):
        from publisher.sources.feeds import FeedSource

        return FeedSource(
            settings,
            site_timezone=zone,
            default_language=default_language,
            languages=languages,
            session=session,
            base_dir=base_dir,
        )
    if isinstance(settings, FilesSourceSettings):
        from publisher.sources.files import FilesSource

        return FilesSource(
            settings,
            site_base_url=site_base_url,
            site_timezone=zone,
            default_language=default_language,
            languages=languages,
            base_dir=base_dir,
        )
    if isinstance(settings, PageSourceSettings):
        from publisher.sources.pages import PageSource

        return PageSource(settings, site_timezone=zone, default_language=default_language,
            languages=languages, session=session)
    if isinstance(settings, WordPressSourceSettings):
        from publisher.sources.wordpress import WordPressSource

        return WordPressSource(
            settings, site_timezone=zone, default_language=default_language,
            languages=languages, session=session
        )
    raise TypeError(f"unknown source settings: {type(settings).__name__}")
