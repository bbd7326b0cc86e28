"""The run: collect -> select -> render -> deliver -> feeds, for one date, idempotently.

Running it again for the same date sends nothing twice and finishes what a killed run left undone:
the digest row, its frozen articles, its rendered content and the delivery ledger are all in the store.
cli, web and scheduler call these functions and nothing deeper.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from email.utils import parseaddr

from publisher.config import Config, EditionSettings
from publisher.delivery.mail import MailTransport, build_transport
from publisher.models import RenderedDigest
from publisher.pipeline.channels import ChannelOutcome, run_channels
from publisher.pipeline.collect import CollectReport, collect
from publisher.pipeline.compose import EmailComposer, LinkMaker
from publisher.pipeline.digest import (
    SelectedDigest,
    archive_url,
    render_digest,
    select_digest,
    with_analytics,
)
from publisher.pipeline.feeds import FeedReport, publish_feeds
from publisher.pipeline.send import SendEngine, SendOutcome
from publisher.pipeline.senders import senders_for
from publisher.render.clicks import ClickLinks
from publisher.render.dkim import signer_for
from publisher.render.message import MessageTemplate
from publisher.render.variants import frozen_variant
from publisher.store import DigestRecord, Store

log = logging.getLogger(__name__)

ProgressFactory = Callable[[str, int], Callable[[int, int], None]]


@dataclass
class EditionOutcome:
    edition: str
    day: date
    articles: int
    send: SendOutcome | None = None
    note: str = ""
    error: str | None = None
    stopped: bool = False  # a signal came before this edition started: nothing of it was done

    @property
    def interrupted(self) -> bool:
        return self.stopped or bool(self.send and self.send.interrupted)


NOT_STARTED = "not started: stopped by a signal; run again to send it"


@dataclass
class RunSummary:
    day: date
    collect: CollectReport | None = None
    editions: list[EditionOutcome] = field(default_factory=list)
    feeds: FeedReport | None = None
    channels: list[ChannelOutcome] = field(default_factory=list)  # posts to channels (Telegram), after the mail
    dry_run: bool = False
    stopped: bool = False  # a signal came during the run: something was left undone

    @property
    def ok(self) -> bool:
        """True when nothing needs a human: no source or feed error, no failed delivery that is not a
        bounce (a bounce is handled: the subscriber is marked), no send stopped for a reason."""
        if self.collect and self.collect.errors:
            return False
        if self.feeds and self.feeds.errors:
            return False
        if any(c.needs_a_human for c in self.channels):
            return False
        return all(not e.error and not (e.send and (e.send.unhandled_failures or e.send.error)) for e in self.editions)

    @property
    def deferred(self) -> int:
        return sum(e.send.deferred for e in self.editions if e.send) + sum(c.send.deferred for c in self.channels if c.send)


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def message_template(config: Config, edition: EditionSettings, selected_digest: SelectedDigest, store: Store | None) -> MessageTemplate:
    return template_for(config, edition, render_digest(config, store, selected_digest))


def template_for(config: Config, edition: EditionSettings, rendered: RenderedDigest) -> MessageTemplate:
    """The pre-built MIME message of a rendered digest, DKIM-signed per recipient when mail.dkim is set."""
    return MessageTemplate.build(
        rendered,
        sender=edition.from_address,
        reply_to=edition.reply_to,
        list_id=f"{edition.id}.{config.list_id_domain}",
        list_unsubscribe_mailto=config.site.unsubscribe_mailto,
        signer=signer_for(config.mail.dkim, config.base_dir),
    )


def email_composer(config: Config, store: Store, edition: EditionSettings, selected: SelectedDigest,
                   template: MessageTemplate, transport: MailTransport | None) -> EmailComposer:
    """The composer of a frozen digest: subset digests (chosen sections) are frozen in the store too."""
    assert selected.record is not None
    record = selected.record

    def variant(sections: frozenset[str]) -> MessageTemplate | None:
        articles = [a for a in selected.articles if a.section in sections]
        if not articles:
            return None
        if len(articles) == len(selected.articles):
            return template
        subset = SelectedDigest(edition, selected.day, articles, None)
        # stories keep their numbers in the whole digest, so their clicks add up on the console
        positions = [n for n, a in enumerate(selected.articles, start=1) if a.section in sections]

        def render() -> RenderedDigest:
            return with_analytics(config, render_digest(config, None, subset), articles, record.id, positions)

        # frozen like the digest: a send resumed after a template edit sends what the first recipients got
        return template_for(config, edition, frozen_variant(store.digests, record.id, sections, render))

    links = LinkMaker(config.site, config.message_id_domain)
    readers = ClickLinks(config.site.secret, config.site.public_url) if config.analytics.per_subscriber else None
    return EmailComposer(record.id, template, parseaddr(edition.from_address)[1], links, variant,
                         smtp_wire=getattr(transport, "name", None) == "smtp", readers=readers)


def dispatch_digest(config: Config, store: Store, record: DigestRecord, *, stop: threading.Event | None,
                    on_progress: Callable[[int, int], None] | None) -> SendOutcome:
    """Broker mode: hand the digest's rows to `publisher worker` processes and wait for them."""
    from publisher.broker import CeleryQueue  # the broker library only in broker mode
    from publisher.pipeline.dispatch import Dispatcher

    assert config.mail.broker is not None
    queue = CeleryQueue(config.mail.broker)
    try:
        return Dispatcher(store, queue, mail=config.mail, owner=owner_name(), stop=stop,
                          on_progress=on_progress).send(record)
    finally:
        queue.close()


def run_edition(
    config: Config,
    store: Store,
    edition: EditionSettings,
    day: date,
    transport: MailTransport | None,
    *,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    progress: ProgressFactory | None = None,
) -> EditionOutcome:
    selected = select_digest(config, store, edition, day, dry_run=dry_run)
    outcome = EditionOutcome(edition.id, day, len(selected.articles))
    if not selected.articles:
        outcome.note = "no articles for this day: nothing sent"
        log.info("edition %s %s: %s", edition.id, day, outcome.note)
        return outcome
    template = message_template(config, edition, selected, None if dry_run else store)
    if dry_run or transport is None:
        outcome.note = "dry run: rendered, nothing sent"
        return outcome
    assert selected.record is not None
    record = store.digests.get(selected.record.id) or selected.record
    if config.mail.broker is not None:  # workers send (publisher worker); this process coordinates
        outcome.send = dispatch_digest(config, store, record, stop=stop,
                                       on_progress=progress(edition.id, record.recipients or 0) if progress else None)
        return outcome
    composer = email_composer(config, store, edition, selected, template, transport)
    engine = SendEngine(
        store,
        transport,
        mail=config.mail,
        owner=owner_name(),
        stop=stop,
        on_progress=progress(edition.id, record.recipients or 0) if progress else None,
        **senders_for(config, transport),
    )
    outcome.send = engine.send(record, composer)
    return outcome


def run_digests(
    config: Config,
    store: Store,
    day: date,
    *,
    editions: list[str] | None = None,
    dry_run: bool = False,
    transport: MailTransport | None = None,
    stop: threading.Event | None = None,
    progress: ProgressFactory | None = None,
) -> list[EditionOutcome]:
    own_transport = transport is None and not dry_run
    if own_transport:
        transport = build_transport(config.mail.transport, base_dir=config.base_dir)
    outcomes = []
    try:
        for edition in config.editions:
            if editions and edition.id not in editions:
                continue
            if stop is not None and stop.is_set():
                outcomes.append(EditionOutcome(edition.id, day, 0, note=NOT_STARTED, stopped=True))
                continue
            try:
                outcomes.append(
                    run_edition(config, store, edition, day, transport, dry_run=dry_run, stop=stop, progress=progress)
                )
            except Exception as exc:  # one edition's failure (a template error, say) must not stop the next
                log.exception("edition %s %s failed", edition.id, day)
                outcomes.append(EditionOutcome(edition.id, day, 0, error=f"{type(exc).__name__}: {exc}"))
    finally:
        if own_transport and transport is not None:
            transport.close()
    return outcomes


def run_day(
    config: Config,
    store: Store,
    day: date,
    *,
    dry_run: bool = False,
    transport: MailTransport | None = None,
    stop: threading.Event | None = None,
    progress: ProgressFactory | None = None,
) -> RunSummary:
    """The daily job: every stage, for one date."""
    summary = RunSummary(day=day, dry_run=dry_run)
    log.info("collect: %d sources", sum(1 for s in config.sources if s.enabled))
    summary.collect = collect(config, store)
    if stop is not None and stop.is_set():
        log.warning("stopped by a signal after collecting: no edition started, feeds not written")
        summary.editions = [EditionOutcome(e.id, day, 0, note=NOT_STARTED, stopped=True) for e in config.editions]
        summary.stopped = True
        return summary
    log.info("select, render, deliver: %d editions for %s", len(config.editions), day)
    summary.editions = run_digests(
        config, store, day, dry_run=dry_run, transport=transport, stop=stop, progress=progress
    )
    summary.channels = run_channels(config, store, day, dry_run=dry_run, stop=stop)
    if stop is not None and stop.is_set():
        summary.stopped = True
        log.warning("stopped by a signal: feeds not written this time")
    elif not dry_run:
        log.info("feeds")
        summary.feeds = publish_feeds(config, store)
    return summary


__all__ = [
    "NOT_STARTED",
    "EditionOutcome",
    "RunSummary",
    "archive_url",
    "collect",
    "message_template",
    "publish_feeds",
    "run_day",
    "run_digests",
    "run_edition",
    "select_digest",
]
