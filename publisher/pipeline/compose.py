"""Email composition for the send engine: one finished message per ledger row, or why not.

The engine (publisher.pipeline.send) is channel-neutral; this is the email channel's half: signed
per-subscriber links, deterministic Message-IDs, and the digest compiled once per chosen section set.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from publisher.config import SiteSettings
from publisher.models import OutgoingMessage, Recipient
from publisher.render.clicks import ClickLinks
from publisher.render.message import MessageTemplate
from publisher.store import PendingDelivery
from publisher.tokens import TokenSigner


@dataclass(frozen=True)
class NotSent:
    """A row the channel will not carry: skipped (nothing wrong) or failed (cannot be built)."""

    reason: str
    failed: bool = False


@dataclass
class LinkMaker:
    """Per-subscriber URLs and Message-IDs: signed, deterministic, no address inside."""

    site: SiteSettings
    domain: str
    signer: TokenSigner = field(init=False)

    def __post_init__(self) -> None:
        self.signer = TokenSigner(self.site.secret)
        self._base = self.site.public_url.rstrip("/")
        self._id_key = hashlib.sha256(b"message-id:" + self.site.secret.encode()).digest()
        self._id_mac = hmac.new(self._id_key, digestmod=hashlib.sha256)

    def unsubscribe_url(self, subscriber_id: int) -> str:
        return f"{self._base}/unsubscribe/{self.signer.sign('unsubscribe', subscriber_id)}"

    def preferences_url(self, subscriber_id: int) -> str:
        return f"{self._base}/preferences/{self.signer.sign('preferences', subscriber_id)}"

    def message_id(self, digest_id: int, delivery_id: int) -> str:
        # The same delivery always gets the same Message-ID: a copy resent after a crash is
        # recognizably the same message to clients that deduplicate on it.
        mac = self._id_mac.copy()  # keyed once (see TokenSigner.sign)
        mac.update(f"{digest_id}.{delivery_id}".encode())
        tag = mac.hexdigest()[:12]
        return f"<digest.{digest_id}.{delivery_id}.{tag}@{self.domain}>"


class EmailComposer:
    """Builds the digest's message for one ledger row, personalized; subset digests made once per set."""

    def __init__(
        self,
        digest_id: int,
        template: MessageTemplate,
        sender: str,
        links: LinkMaker,
        variant: Callable[[frozenset[str]], MessageTemplate | None] | None = None,
        *,
        smtp_wire: bool = False,
        readers: ClickLinks | None = None,
    ) -> None:
        """smtp_wire: also build each message's SMTP DATA content (for an SMTP channel); readers:
        sign each recipient into the digest's click and open links (analytics.per_subscriber)."""
        self.digest_id = digest_id
        self.template = template
        self.sender = sender
        self.links = links
        # A subscriber who chose sections gets the digest compiled for that section set (once per set).
        self.variant = variant
        self._variants: dict[frozenset[str], MessageTemplate | None] = {}
        self.smtp_wire = smtp_wire
        self.readers = readers

    def __call__(self, row: PendingDelivery) -> OutgoingMessage | NotSent:
        template = self.template
        if row.sections and self.variant is not None:
            chosen = frozenset(row.sections)
            if chosen not in self._variants:
                self._variants[chosen] = self.variant(chosen)
            variant = self._variants[chosen]
            if variant is None:
                return NotSent("no articles in the subscriber's chosen sections")
            template = variant
        message_id = self.links.message_id(self.digest_id, row.id)
        recipient = Recipient(
            delivery_id=row.id,
            email=row.email,
            name=row.name,
            message_id=message_id,
            unsubscribe_url=self.links.unsubscribe_url(row.subscriber_id),
            preferences_url=self.links.preferences_url(row.subscriber_id),
            reader=self.readers.reader(self.digest_id, row.subscriber_id) if self.readers else "",
        )
        wire: bytes | None = None
        try:
            if self.smtp_wire:
                data, wire = template.personalize_for_smtp(recipient)
            else:
                data = template.personalize(recipient)
        except ValueError as exc:  # an address that cannot be put in a header safely
            return NotSent(f"cannot build message: {exc}", failed=True)
        return OutgoingMessage(row.id, self.sender, row.email, message_id, data, wire)
