"""What one send of one digest came to: the counts, the reasons, and what is left for later."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

SHOWN_FAILURES = 10  # failed deliveries kept by name in the outcome; the log has every one


@dataclass
class SendOutcome:
    edition: str
    recipients: int = 0
    sent: int = 0
    failed: int = 0  # failed deliveries, bounces included
    skipped: int = 0
    deferred: int = 0  # still pending at the end: temporary failures waiting for their retry time
    already_sent: int = 0  # sent by an earlier (killed or finished) run
    bounced: int = 0  # deliveries refused because the mailbox is gone (the subscriber is marked bounced)
    retried: int = 0  # temporary failures tried again and settled within this run
    held_by: str | None = None  # another process holds the lease
    error: str | None = None  # why the send stopped before the end (with the hint)
    interrupted: bool = False
    next_attempt_at: datetime | None = None  # when the first deferred row is due
    deferred_reasons: tuple[tuple[str, int], ...] = ()  # (reason, rows), commonest first
    failures: list[tuple[str, str]] = field(default_factory=list)  # (address, reason), first SHOWN_FAILURES

    @property
    def unhandled_failures(self) -> int:
        """Failed deliveries a human should look at: a bounce is already handled."""
        return self.failed - self.bounced
