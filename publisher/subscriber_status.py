"""Who may become bounced, complained or unsubscribed, from what. The one home of that rule.

Every path that changes a subscriber's status for what happened to mail (a refusal at send time, a
provider's webhook, a bounce report read from a mailbox) goes through `may_become`, so they agree:

- a complaint outranks everything: a complained subscriber stays complained;
- a bounce does not undo an unsubscription (the reader's own choice is kept as the reason);
- a change to the status already held is no change.
"""

from __future__ import annotations

import logging
from typing import Protocol

from publisher.models import Subscriber, SubscriberStatus

log = logging.getLogger(__name__)

# the statuses mail events may lead to; anything else is set by the reader or the operator
EVENT_STATUSES = frozenset({SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED, SubscriberStatus.UNSUBSCRIBED})


def may_become(current: SubscriberStatus, wanted: SubscriberStatus) -> bool:
    """True when a mail event may move a subscriber from `current` to `wanted`."""
    if wanted not in EVENT_STATUSES or current == wanted or current is SubscriberStatus.COMPLAINED:
        return False
    return not (wanted is SubscriberStatus.BOUNCED and current is SubscriberStatus.UNSUBSCRIBED)


class SubscriberStatusStore(Protocol):
    """What this rule needs of the store (publisher.store.subscribers provides it)."""

    def get(self, subscriber_id: int) -> Subscriber | None: ...

    def set_status(self, subscriber_id: int, status: SubscriberStatus, *, reason: str | None = None) -> bool: ...


def apply_status(subscribers: SubscriberStatusStore, subscriber: Subscriber | int, wanted: SubscriberStatus,
                 reason: str) -> bool:
    """Move the subscriber to `wanted` when the rule allows it. True when the status changed."""
    found = subscribers.get(subscriber) if isinstance(subscriber, int) else subscriber
    if found is None or not may_become(found.status, wanted):
        return False
    subscribers.set_status(found.id, wanted, reason=reason[:500])
    log.info("subscriber %d: %s -> %s (%s)", found.id, found.status.value, wanted.value, reason[:200])
    return True
