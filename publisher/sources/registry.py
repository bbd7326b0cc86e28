"""The kinds of source, found rather than listed: each module of this package that declares
`KIND = SourceKind(...)` is one, and so is each `publisher.sources` entry point of an installed
package (Pelican's readers registry, datasette's built-ins-through-hooks). The config schema's
union of settings models, build_source and the loader's hints are all built from here, so adding a
kind is one module plus its tests.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union
from zoneinfo import ZoneInfo

import requests
from pydantic import Field

from publisher.config.base import SourceSettingsBase
from publisher.plugins import discover
from publisher.sources.base import Source, SourceContext, SourceKind

ENTRY_POINT_GROUP = "publisher.sources"


@cache
def source_kinds() -> dict[str, SourceKind]:
    """Every kind by name, the package's own first (in module name order), then entry points."""
    import publisher.sources as package

    return discover(package, SourceKind, ENTRY_POINT_GROUP)


def source_settings_union() -> Any:
    """The pydantic type of one sources[] entry: the kinds' settings models, told apart by `kind`."""
    models = tuple(kind.settings for kind in source_kinds().values())
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007 (a runtime tuple)


def kind_names() -> list[str]:
    return list(source_kinds())


def build_source(
    settings: SourceSettingsBase,
    *,
    site_base_url: str,
    site_timezone: str = "UTC",
    default_language: str | None = None,
    languages: Collection[str] = (),
    session: requests.Session | None = None,
    base_dir: Path | None = None,
    fingerprint: str = "",
) -> Source:
    """A ready source for one sources[] entry of config.yaml (see SourceContext for the arguments)."""
    context = SourceContext(
        site_base_url=site_base_url,
        site_timezone=ZoneInfo(site_timezone),
        default_language=default_language,
        languages=tuple(languages),
        session=session,
        base_dir=base_dir,
        fingerprint=fingerprint,
    )
    kind = source_kinds().get(settings.kind)
    if kind is None:
        raise TypeError(f"unknown source kind {settings.kind!r}; known: {', '.join(kind_names())}")
    return kind.build(settings, context)
