"""The one interface every kind of source offers, what building one needs, and how a kind declares
itself (see sources.registry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import requests

from publisher.config.base import SourceSettingsBase
from publisher.models import SourceResult, SourceState


class Source(Protocol):
    """Fetches articles. Raises publisher.errors.SourceError when the source as a whole is broken;
    item-level problems go into SourceResult.warnings (an item not taken says ": skipped: ")."""

    name: str

    def fetch(self, state: SourceState) -> SourceResult: ...


@dataclass(frozen=True)
class SourceContext:
    """What a source needs from the site, beyond its own settings.

    site_base_url: absolute base for relative URLs in a files source (and its default article URLs).
    site_timezone: a date written without an offset is wall-clock time there.
    default_language: used when neither the item, its text, the feed nor the settings name one.
    languages: the site's languages (primary subtags): an item whose own markup names no language
        gets the language of its text among these.
    session: shared HTTP connection pool (the caller closes it); None opens one per fetch.
    base_dir: relative local paths resolve against it (the config file's directory); None: the
        current directory.
    fingerprint: what else decides what a source's articles become once fetched (the collect
        stage's section aliases and credits): a source that recognizes unchanged content by a digest
        mixes it in, so that a config change is applied to articles still in the feed.
    """

    site_base_url: str
    site_timezone: ZoneInfo = ZoneInfo("UTC")
    default_language: str | None = None
    languages: tuple[str, ...] = ()
    session: requests.Session | None = None
    base_dir: Path | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class SourceKind:
    """A kind of source, declared by its module as KIND: the `kind:` name in config.yaml, its
    settings model, and the factory that builds a Source from those settings."""

    name: str
    settings: type[SourceSettingsBase]
    build: Callable[[Any, SourceContext], Source]
    summary: str  # one line for hints: what the kind reads
