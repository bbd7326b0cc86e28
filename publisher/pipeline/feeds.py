"""Stage 5, feeds: per language the last N articles in every configured format (and with
`feeds.sections`, per language and section, listed in an OPML file), written atomically; hubs pinged."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests

from publisher.config import Config
from publisher.delivery.feeds import DirectoryPublisher, PublishedFeed, WebSubPinger, changed_topics
from publisher.errors import DeliveryError
from publisher.models import Article, FeedFile
from publisher.pipeline.image_sizes import ImageSizes
from publisher.render.feeds.build import (
    build_feed,
    feed_stem,
    feed_url,
    render_feed_files,
)
from publisher.render.feeds.formats import feed_format
from publisher.render.feeds.opml import MEDIA_TYPE as OPML_MEDIA_TYPE
from publisher.render.feeds.opml import Subscription, opml_file_name, render_opml
from publisher.store import Store

log = logging.getLogger("publisher.feeds")

# Inside the feeds directory but never served: the web face refuses names that start with a dot.
IMAGE_SIZES_FILE = ".cache/image-sizes.json"


@dataclass
class FeedReport:
    published: list[PublishedFeed] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def feed_languages(config: Config) -> list[str]:
    seen: dict[str, None] = {}
    for edition in config.editions:
        seen.setdefault(edition.language, None)
    return list(seen)


def feed_sections(config: Config, store: Store, language: str) -> list[str]:
    """The sections with articles in this language: the editions' order first, others after."""
    present = store.articles.sections(language)
    ordered: dict[str, None] = {}
    for edition in config.editions:
        if edition.language == language:
            ordered.update((s, None) for s in edition.sections if s in present)
    ordered.update((s, None) for s in present)
    return list(ordered)


def _image_urls(articles: Sequence[Article]) -> list[str]:
    return [a.image_url for a in articles if a.image_url and not (a.image_length and a.image_length > 0)]


def _files_for_language(
    config: Config, store: Store, language: str, sizes: ImageSizes | None
) -> list[FeedFile]:
    feeds = config.feeds
    title = next((e.title for e in config.editions if e.language == language and e.title), None)
    groups: list[tuple[str | None, list[Article]]] = [(None, list(store.articles.latest(language, feeds.entries)))]
    if feeds.sections:
        for found in feed_sections(config, store, language):
            groups.append((found, list(store.articles.latest(language, feeds.entries, section=found))))
    lengths = sizes.lengths(url for _, items in groups for url in _image_urls(items)) if sizes else {}
    files: list[FeedFile] = []
    subscriptions: list[Subscription] = []
    preferred = feed_format(feeds.formats[0])
    for section, items in groups:
        feed = build_feed(
            items, site=config.site, feeds=feeds, language=language, title=title, section=section,
            image_lengths=lengths,
        )
        stem = feed_stem(language, section)
        files.extend(render_feed_files(feed, feeds=feeds, stem=stem))
        if section is not None:
            url = feed_url(feeds, preferred.file_name(stem))
            subscriptions.append(Subscription(feed.title, url, feed.home_url, language))
    if feeds.sections:
        name = opml_file_name(language)
        heading = f"{title or config.site.name} ({language})"
        opml = render_opml(heading, subscriptions)
        files.append(FeedFile(name=name, content=opml, media_type=OPML_MEDIA_TYPE))
    return files


def publish_feeds(config: Config, store: Store, *, session: requests.Session | None = None) -> FeedReport:
    report = FeedReport()
    directory = config.path(config.feeds.directory)
    publisher = DirectoryPublisher(directory)
    sizes = None
    if config.feeds.measure_images:
        sizes = ImageSizes(
            directory / IMAGE_SIZES_FILE, timeout=min(config.feeds.timeout, 5.0), session=session
        )
    for language in feed_languages(config):
        files = _files_for_language(config, store, language, sizes)
        try:
            report.published.extend(publisher.publish(files))
        except DeliveryError as exc:
            report.errors.append(f"cannot write feeds for {language}: {exc}")
            log.error(report.errors[-1])
    changed = [t for t in changed_topics(report.published, config.feeds.base_url) if not t.endswith(".opml")]
    if changed and config.feeds.websub_hubs:
        pinger = WebSubPinger(config.feeds.websub_hubs, config.feeds.timeout, session)
        for result in pinger.ping(changed):
            if not result.ok:
                report.errors.append(f"WebSub hub {result.hub}: {result.error}")
    return report
