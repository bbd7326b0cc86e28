"""Plain data that crosses stage boundaries: sources -> store -> selection -> render -> delivery.

No stage imports another; they meet in the pipeline through these types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Article:
    """One normalized article: sanitized HTML, absolute URLs, aware UTC datetimes."""

    id: str  # stable: the GUID, else the canonical URL without tracking parameters
    url: str
    title: str
    language: str  # BCP 47 primary tag, lower case: "en", "ar"
    published_at: datetime  # aware, UTC
    updated_at: datetime  # aware, UTC; equals published_at when the source gives none
    source_name: str
    summary: str = ""  # plain text
    content_html: str = ""  # sanitized HTML fragment
    section: str | None = None
    author: str | None = None
    source_credit: str | None = None  # the "source line": "Levant - Agencies"
    image_url: str | None = None
    image_caption: str | None = None
    image_alt: str | None = None
    image_type: str | None = None  # MIME type when known, e.g. image/jpeg
    image_length: int | None = None  # bytes, when known
    undated: bool = False  # the source gave no date; published_at is when we first saw it
    canonical_url: str = ""  # the url normalized (see sources.urls): the same story from two sources matches


@dataclass(frozen=True)
class StoredArticle(Article):
    """An article as the store knows it: when we first saw it decides lateness."""

    first_seen_at: datetime | None = None


@dataclass
class SourceResult:
    """What one source yielded in one collection."""

    source_name: str
    articles: list[Article] = field(default_factory=list)
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    # one message per item not taken (contains ": skipped: ") or taken with a caveat
    warnings: list[str] = field(default_factory=list)
    title: str | None = None  # the source's own reader-facing name (a feed's title), when it has one
    # What was read, fingerprinted with everything that shapes its articles; the same fingerprint at
    # the next fetch means the same articles (a source answers not_modified then). None: not kept.
    content_digest: str | None = None


@dataclass(frozen=True)
class SourceState:
    """Machine state kept per source between runs (never in config)."""

    name: str
    etag: str | None = None
    last_modified: str | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    content_digest: str | None = None  # SourceResult.content_digest of the last full read


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    language: str
    status: SubscriberStatus
    sections: tuple[str, ...] = ()  # empty: every section
    paused: bool = False


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # permanent: recorded, not retried
    SKIPPED = "skipped"  # subscriber no longer active when its turn came


@dataclass(frozen=True)
class Recipient:
    """What personalizes one copy of a digest. Built by the pipeline, used by render."""

    delivery_id: int
    email: str
    name: str
    message_id: str  # "<...@domain>"
    unsubscribe_url: str
    preferences_url: str
    reader: str = ""  # analytics.per_subscriber: the signed reader part of click and open links


@dataclass(frozen=True)
class OutgoingMessage:
    """Finished bytes for one recipient. Delivery knows nothing else about it."""

    delivery_id: int
    sender: str  # envelope sender (bare address)
    recipient: str  # envelope recipient (bare address)
    message_id: str
    data: bytes  # RFC 5322 message, CRLF line ends
    # the same message as SMTP DATA content (dot-stuffed, ending ".\r\n") when the composer built it
    # ahead, from fixed parts stuffed once; None: the SMTP transport stuffs `data` itself
    wire: bytes | None = None


@dataclass(frozen=True)
class SendResult:
    delivery_id: int
    ok: bool
    provider_message_id: str | None = None
    error: str | None = None
    temporary: bool = False  # only meaningful when not ok
    retry_after: float | None = None  # temporary: the server's own wait (seconds), kept as a minimum


@dataclass
class SendReport:
    results: list[SendResult] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.ok)


@dataclass(frozen=True)
class RenderedDigest:
    """A digest rendered once per edition, before personalization.

    html and text contain placeholder slots (see render.slots) for per-recipient values.
    """

    subject: str
    html: str
    text: str
    preheader: str
    language: str
    direction: str  # "ltr" or "rtl"


@dataclass(frozen=True)
class FeedFile:
    name: str  # file name inside the feeds directory, e.g. "en.atom.xml"
    content: bytes
    media_type: str

