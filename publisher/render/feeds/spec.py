"""What a feed format is to the rest of the program: one FeedFormatSpec per format module.

Config validates `feeds.formats` against the registered names, render calls `render`, the feed
directory names files with `suffix`, and the web face answers with `media_type` and links with `label`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from publisher.render.feeds.model import Feed

# render(feed, self_url) -> the file's bytes; self_url is the public URL the file is served at
RenderFunction = Callable[[Feed, str], bytes]


@dataclass(frozen=True)
class FeedFormatSpec:
    name: str  # what config.yaml says in feeds.formats: "atom"
    suffix: str  # the file name's ending, dot included: ".atom.xml"
    media_type: str  # without parameters: "application/atom+xml"
    label: str  # what a reader's subscribe dialog shows: "Atom"
    render: RenderFunction
    archives: bool = False  # writes RFC 5005 history links (prev-archive, current, fh:archive)

    def __post_init__(self) -> None:
        if not self.suffix.startswith(".") or "/" in self.suffix:
            raise ValueError(f"feed format {self.name!r}: suffix {self.suffix!r} must start with a dot")

    @property
    def content_type(self) -> str:
        """The Content-Type a server sends: every format here is UTF-8 text."""
        return f"{self.media_type}; charset=utf-8"

    def file_name(self, stem: str) -> str:
        """"ar" -> "ar.atom.xml"; "ar/politics" -> "ar/politics.atom.xml"."""
        return f"{stem}{self.suffix}"
