"""Provider event webhooks: bounces, complaints and unsubscribes reported by the mail provider.

Each provider module exposes `routes(web: WebContext) -> list[Route]`, which its declaration in
publisher.providers names; `routes` below collects every registered provider's. Every handler verifies the provider's signature before believing anything, refuses a
request outside its provider's timestamp window, claims the event's replay id in the store (so a
captured request is refused even after a restart), checks that an event naming one of our deliveries
names its real recipient, and applies the event through `apply_event`, so every provider changes
subscribers the same way.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from starlette.routing import BaseRoute

from publisher.bounces import our_message_ids
from publisher.config import SiteSettings
from publisher.models import SubscriberStatus
from publisher.names import clean_name
from publisher.pipeline.send import LinkMaker
from publisher.providers.registry import provider_kinds
from publisher.store import Store
from publisher.store.provider_events import DeliveryRecipients, ReplayIds
from publisher.subscriber_status import apply_status
from publisher.web.context import WebContext

log = logging.getLogger(__name__)

MAX_ADDRESS = 320
MAX_DETAIL = 400
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")
T = TypeVar("T")


@dataclass(frozen=True)
class MailEvent:
    """What a provider told us about one address, in our words."""

    provider: str
    email: str
    kind: str  # "bounce" (permanent), "complaint", "unsubscribe", or anything else (ignored)
    detail: str = ""


@dataclass(frozen=True)
class MessageRef:
    """What an event carries back about the message it is about (any of it may be missing)."""

    message_id: str | None = None  # our Message-ID header
    delivery_id: int | None = None  # our ledger row, from custom args, metadata or a tag
    provider_message_id: str | None = None  # the provider's own id, stored in the ledger when sent


def read_json(body: bytes | str) -> Any:
    """json.loads for a provider's body: ValueError for anything that is not JSON, a nesting deep
    enough to exhaust the parser's recursion included (RecursionError is not a ValueError)."""
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def event_address(value: object) -> str | None:
    """A recipient address from a provider's JSON, or None when it cannot be one."""
    if not isinstance(value, str):
        return None
    address = value.strip()
    if not address or len(address) > MAX_ADDRESS or _CONTROL.search(address) or "@" not in address:
        return None
    return address


def event_detail(text: str) -> str:
    """A provider's wording, stored as a status reason: one clean line of bounded length."""
    return clean_name(text, limit=MAX_DETAIL)


def delivery_number(value: object) -> int | None:
    text = value[0] if isinstance(value, list) and value else value
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text > 0 else None
    if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


class Replays:
    """The replay memory of one provider's webhook, in the store."""

    def __init__(self, web: WebContext, provider: str) -> None:
        self._ids = ReplayIds(web.store.engine)
        self.provider = provider

    def first_time(self, replay_id: str, *, keep_until: datetime) -> bool:
        return self._ids.claim(self.provider, replay_id, expires_at=keep_until)

    def release(self, replay_id: str) -> None:
        self._ids.release(self.provider, replay_id)

    def applying(self, replay_id: str, keep_until: datetime, apply: Callable[[], T]) -> tuple[bool, T | None]:
        """(False, None) for a replay; else (True, apply()). If apply raises (the store is down), the
        claim is released so the provider's retry is applied, and the error goes on."""
        if not self.first_time(replay_id, keep_until=keep_until):
            return False, None
        try:
            return True, apply()
        except Exception:
            try:
                self._ids.release(self.provider, replay_id)
            except Exception:  # the store is down: the retry will be refused as a replay; say so
                log.error("%s event %s could not be applied nor forgotten; a retry will be refused",
                          self.provider, replay_id[:40])
            raise


def until(seconds: float, *, start: datetime | None = None) -> datetime:
    return (start or datetime.now(UTC)) + timedelta(seconds=seconds)


class RecipientCheck:
    """Refuses an event that names one of our messages but another recipient than that message's."""

    def __init__(self, web: WebContext) -> None:
        self.web = web
        self._recipients = DeliveryRecipients(web.store.engine)

    def problem(self, email: str, ref: MessageRef) -> str | None:
        """Why the event must not be believed, or None."""
        named = our_message_ids(f"<{ref.message_id.strip().strip('<>')}>") if ref.message_id else ()
        recipient = None
        if named:
            mid = named[0]
            if not _made_by_us(self.web.config.site, mid.digest_id, mid.delivery_id, mid.local_part):
                return "it names a Message-ID we did not make"
            recipient = self._recipients.find(delivery_id=mid.delivery_id, digest_id=mid.digest_id)
            if recipient is None:
                return "it names a delivery we have no record of"
        elif ref.delivery_id is not None:
            recipient = self._recipients.find(delivery_id=ref.delivery_id)
            if recipient is None:
                return "it names a delivery we have no record of"
        elif ref.provider_message_id:
            recipient = self._recipients.find(provider_message_id=ref.provider_message_id)
        if recipient is not None and recipient.email.strip().lower() != email.strip().lower():
            return f"its recipient is not the recipient of delivery {recipient.delivery_id}"
        return None


def _made_by_us(site: SiteSettings, digest_id: int, delivery_id: int, local_part: str) -> bool:
    for secret in (site.secret, *site.previous_secrets):
        keyed = site if secret == site.secret else site.model_copy(update={"secret": secret})
        made = LinkMaker(keyed, "unused.invalid").message_id(digest_id, delivery_id)
        if made[1:].split("@", 1)[0].lower() == local_part:
            return True
    return False


_STATUS_FOR = {
    "bounce": SubscriberStatus.BOUNCED,
    "complaint": SubscriberStatus.COMPLAINED,
    "unsubscribe": SubscriberStatus.UNSUBSCRIBED,
}


def apply_event(store: Store, event: MailEvent) -> bool:
    """Change the subscriber's status for a bounce, complaint or unsubscribe. True if it applied.

    Who may become what is publisher.subscriber_status's rule (a complaint outranks everything; a
    bounce does not undo a complaint or an unsubscription).
    """
    status = _STATUS_FOR.get(event.kind)
    if status is None:
        return False
    subscriber = store.subscribers.by_email(event.email)
    reason = event_detail(f"{event.provider}: {event.detail}")
    if subscriber is None or not apply_status(store.subscribers, subscriber, status, reason):
        return False
    log.info("%s reported %s for subscriber %d: now %s", event.provider, event.kind, subscriber.id, status.value)
    return True


def routes(web: WebContext) -> list[BaseRoute]:
    """Every registered provider's webhook routes (publisher.providers.registry)."""
    found: list[BaseRoute] = []
    for kind in provider_kinds().values():
        if kind.webhook is not None:
            found.extend(kind.webhook(web))
    return found
