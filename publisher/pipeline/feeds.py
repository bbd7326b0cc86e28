"""Stage 5, feeds: per language, the last N articles as Atom and RSS, written atomically; hubs pinged."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import requests

from publisher.config import Config
from publisher.delivery.feeds import DirectoryPublisher, PublishedFeed, WebSubPinger, changed_topics
from publisher.errors import DeliveryError
from publisher.render.feeds import build_feed_files
from publisher.store import Store

log = logging.getLogger("publisher.feeds")


@dataclass
class FeedReport:
    published: list[PublishedFeed] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def feed_languages(config: Config) -> list[str]:
    seen: dict[str, None] = {}
    for edition in config.editions:
        seen.setdefault(edition.language, None)
    return list(seen)


def publish_feeds(config: Config, store: Store, *, session: requests.Session | None = None) -> FeedReport:
    report = FeedReport()
    publisher = DirectoryPublisher(config.path(config.feeds.directory))
    titles = {e.language: e.title for e in config.editions}
    for language in feed_languages(config):
        articles = store.articles.latest(language, config.feeds.entries)
        files = build_feed_files(
            articles, site=config.site, feeds=config.feeds, language=language, title=titles.get(language)
        )
        try:
            report.published.extend(publisher.publish(files))
        except DeliveryError as exc:
            report.errors.append(f"cannot write feeds for {language}: {exc}")
            log.error(report.errors[-1])
    changed = changed_topics(report.published, config.feeds.base_url)
    if changed and config.feeds.websub_hubs:
        pinger = WebSubPinger(config.feeds.websub_hubs, config.feeds.timeout, session)
        for result in pinger.ping(changed):
            if not result.ok:
                report.errors.append(f"WebSub hub {result.hub}: {result.error}")
    return report
