"""Stage 4b, post: each configured channel gets its edition's digest, through the one send engine.

The posts are planned from the digest's frozen articles (what subscribers got), one ledger row per
post (store.channel_posts), then SendEngine sends the due rows with the channel's own ledger: a killed
run posts again at most the post in flight, and a restart posts what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from publisher.channels import Post, kind_of
from publisher.config import Config
from publisher.models import OutgoingMessage
from publisher.pipeline.compose import NotSent
from publisher.pipeline.send import SendEngine, SendOutcome
from publisher.store import PendingDelivery, Store
from publisher.store.channel_posts import ChannelPostLedger

log = logging.getLogger(__name__)


@dataclass
class ChannelOutcome:
    channel: str
    edition: str
    posts: int = 0  # posts planned for the digest
    send: SendOutcome | None = None
    note: str = ""
    error: str | None = None

    @property
    def needs_a_human(self) -> bool:
        return bool(self.error or (self.send and (self.send.failed or self.send.error)))

    def lines(self) -> list[str]:
        """The run summary's line for this channel, then each post not posted, by name, with the reason."""
        head = f"channel {self.channel} ({self.edition}): "
        s = self.send
        if self.error or s is None:
            return [head + (f"error: {self.error}" if self.error else self.note or "nothing posted")]
        if s.held_by:
            return [head + f"being posted by {s.held_by}"]
        parts = [f"{self.posts} posts", f"{s.sent} posted", f"{s.already_sent} posted earlier", f"{s.failed} failed",
                 f"{s.deferred} deferred"]
        line = head + ", ".join(parts)
        if s.error:
            line += f"; {s.error}"
        elif s.interrupted:
            line += "; interrupted: run again to finish"
        if s.deferred and s.deferred_reasons:
            due = f", next attempt at {s.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC" if s.next_attempt_at else ""
            why = "; ".join(f"{reason} ({count})" for reason, count in s.deferred_reasons)
            line += f"; waiting because: {why}{due}"
        return [line, *(f"channel {self.channel}: not posted: {name}: {reason}" for name, reason in s.failures)]


class PostComposer:
    """A ledger row -> the Bot API payload of its part, as finished bytes."""

    def __init__(self, posts: Sequence[Post], ledger: ChannelPostLedger, digest_id: int) -> None:
        self.posts, self.ledger, self.digest_id = list(posts), ledger, digest_id

    def __call__(self, row: PendingDelivery) -> OutgoingMessage | NotSent:
        part = self.ledger.parts.get(row.id)
        if part is None or part >= len(self.posts):
            return NotSent("the digest now plans fewer posts than when this one was queued", failed=True)
        payload = json.dumps(self.posts[part].payload(self.ledger.chat), ensure_ascii=False).encode()
        return OutgoingMessage(row.id, self.ledger.channel, self.ledger.chat,
                               f"{self.ledger.channel}:{self.digest_id}:{part}", payload)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_channel(config: Config, store: Store, index: int, day: date, *, dry_run: bool = False,
                stop: threading.Event | None = None) -> ChannelOutcome:
    settings = config.channels[index]
    outcome = ChannelOutcome(settings.label, settings.edition)
    record = store.digests.find(settings.edition, day)
    articles = store.articles.in_digest(record.id) if record is not None else []
    if record is None or not articles:
        outcome.note = "no digest for this day: nothing posted"
        return outcome
    title = record.rendered.subject if record.rendered else config.edition(settings.edition).title or ""
    kind = kind_of(settings)
    posts = kind.plan(settings, title, articles)
    outcome.posts = len(posts)
    if dry_run:
        outcome.note = f"dry run: {len(posts)} posts planned, nothing posted"
        return outcome
    ledger = ChannelPostLedger(store.engine, settings.label, settings.chat, [p.label for p in posts])
    channel = kind.build(settings, f"channels[{index}]")
    try:
        engine = SendEngine(store, channel, mail=config.mail, owner=_owner(), stop=stop, ledger=ledger)
        outcome.send = engine.send(record, PostComposer(posts, ledger, record.id))
    finally:
        channel.close()
    return outcome


def run_channels(config: Config, store: Store, day: date, *, editions: list[str] | None = None,
                 dry_run: bool = False, stop: threading.Event | None = None) -> list[ChannelOutcome]:
    outcomes = []
    for index, settings in enumerate(config.channels):
        if editions and settings.edition not in editions:
            continue
        if stop is not None and stop.is_set():
            outcomes.append(ChannelOutcome(settings.label, settings.edition,
                                           note="not started: stopped by a signal; run again to post it"))
            continue
        try:
            outcomes.append(run_channel(config, store, index, day, dry_run=dry_run, stop=stop))
        except Exception as exc:  # one channel's failure must not stop the next
            log.exception("channel %s %s failed", settings.label, day)
            outcomes.append(ChannelOutcome(settings.label, settings.edition, error=f"{type(exc).__name__}: {exc}"))
    return outcomes
