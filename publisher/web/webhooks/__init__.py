"""Provider event webhooks: bounces, complaints and unsubscribes reported by the mail provider.

Each provider module exposes `routes(web: WebContext) -> list[Route]`; this package collects the ones
that exist. Every handler verifies the provider's signature before believing anything, and applies an
event through `apply_event`, so every provider changes subscribers the same way.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from starlette.routing import BaseRoute

from publisher.models import SubscriberStatus
from publisher.store import Store
from publisher.subscriber_status import apply_status
from publisher.web.context import WebContext

log = logging.getLogger("publisher.web.webhooks")

PROVIDERS = ("sendgrid", "mailgun", "postmark", "ses")


class SeenIds:
    """The last few thousand event ids a webhook applied, so a provider's retry changes nothing twice.

    In memory only: after a restart a replay is applied again, which apply_event makes harmless.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, event_id: object) -> bool:
        with self._lock:
            return event_id in self._ids

    def add(self, event_id: str) -> None:
        with self._lock:
            self._ids[event_id] = None
            while len(self._ids) > self._limit:
                self._ids.popitem(last=False)


@dataclass(frozen=True)
class MailEvent:
    """What a provider told us about one address, in our words."""

    provider: str
    email: str
    kind: str  # "bounce" (permanent), "complaint", "unsubscribe", or anything else (ignored)
    detail: str = ""


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
    if subscriber is None or not apply_status(store.subscribers, subscriber, status, f"{event.provider}: {event.detail}"):
        return False
    log.info("%s reported %s for subscriber %d: now %s", event.provider, event.kind, subscriber.id, status.value)
    return True


def routes(web: WebContext) -> list[BaseRoute]:
    found: list[BaseRoute] = []
    for provider in PROVIDERS:
        try:
            module = importlib.import_module(f"publisher.web.webhooks.{provider}")
        except ModuleNotFoundError as exc:
            if exc.name != f"publisher.web.webhooks.{provider}":
                raise
            continue
        found.extend(module.routes(web))
    return found
