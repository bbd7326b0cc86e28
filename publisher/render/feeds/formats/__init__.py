"""The feed-format registry: every module in this package that defines `FORMAT` is one format.

Adding a format is adding one module here with a `FORMAT = FeedFormatSpec(...)`; config, render, the
feed directory and the web face all read this registry. Modules are found with pkgutil, in name order
(the order is only used for listings; `feeds.formats` in config.yaml decides what is written).
"""

from __future__ import annotations

import importlib
import pkgutil

from publisher.render.feeds.spec import FeedFormatSpec

# The name of a registered format ("atom", "rss", "json"): config checks it against FORMATS.
FeedFormat = str

DEFAULT_FORMATS: tuple[FeedFormat, ...] = ("atom", "rss")


def _discover() -> dict[str, FeedFormatSpec]:
    found: dict[str, FeedFormatSpec] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        spec = getattr(module, "FORMAT", None)
        if not isinstance(spec, FeedFormatSpec):
            continue
        for other in found.values():
            if spec.name == other.name or spec.suffix.endswith(other.suffix) or other.suffix.endswith(spec.suffix):
                raise RuntimeError(f"feed formats {other.name!r} and {spec.name!r} clash (name or suffix)")
        found[spec.name] = spec
    return found


FORMATS: dict[str, FeedFormatSpec] = _discover()


def feed_format(name: str) -> FeedFormatSpec:
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(f"unknown feed format {name!r}; known formats: {known}") from None


def format_of_file(name: str) -> FeedFormatSpec | None:
    """The format a file name belongs to, by its suffix ("en.rss.xml" -> rss), or None."""
    for spec in FORMATS.values():
        if name.endswith(spec.suffix) and len(name) > len(spec.suffix):
            return spec
    return None
