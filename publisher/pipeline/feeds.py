"""Stage 5, feeds: per language the last N articles in every configured format (and with
`feeds.sections`, per language and section, listed in an OPML file), written atomically; hubs pinged."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from publisher.config import Config
from publisher.delivery.feeds import DirectoryPublisher, PublishedFeed, WebSubPinger, changed_topics
from publisher.errors import DeliveryError
from publisher.models import Article, FeedFile
from publisher.pipeline.image_sizes import ImageSizes
from publisher.render.feeds.build import (
    archive_formats,
    archive_stem,
    build_feed,
    feed_stem,
    feed_url,
    render_feed_files,
)
from publisher.render.feeds.formats import feed_format
from publisher.render.feeds.model import History
from publisher.render.feeds.opml import MEDIA_TYPE as OPML_MEDIA_TYPE
from publisher.render.feeds.opml import Subscription, opml_file_name, render_opml
from publisher.store import Store

log = logging.getLogger(__name__)

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


def _title(config: Config, language: str) -> str | None:
    return next((e.title for e in config.editions if e.language == language and e.title), None)


def _complete_archive_pages(config: Config, store: Store, language: str) -> int:
    return store.articles.count_in(language) // config.feeds.archive_entries if config.feeds.archive else 0


def _archive_files(
    config: Config, store: Store, language: str, directory: Path, sizes: ImageSizes | None
) -> list[FeedFile]:
    """The archive documents not written yet. One that exists is never rebuilt: it is immutable,
    even if an article in it was edited since (the subscription feed carries the edit)."""
    feeds = config.feeds
    size = feeds.archive_entries
    files: list[FeedFile] = []
    for page in range(1, _complete_archive_pages(config, store, language) + 1):
        stem = archive_stem(language, page)
        missing = [spec for spec in archive_formats(feeds) if not (directory / spec.file_name(stem)).exists()]
        if not missing:
            continue
        oldest_first = store.articles.arrived(language, offset=(page - 1) * size, limit=size)
        lengths = sizes.lengths(_image_urls(oldest_first)) if sizes else {}
        history = History(
            prev_archive=archive_stem(language, page - 1) if page > 1 else None,
            current=feed_stem(language),
            archived=True,
        )
        feed = build_feed(
            list(reversed(oldest_first)), site=config.site, feeds=feeds, language=language,
            title=_title(config, language), image_lengths=lengths, history=history, limit=size,
        )
        files.extend(render_feed_files(feed, feeds=feeds, stem=stem, formats=missing))
    return files


def _files_for_language(
    config: Config, store: Store, language: str, directory: Path, sizes: ImageSizes | None
) -> list[FeedFile]:
    feeds = config.feeds
    title = _title(config, language)
    pages = _complete_archive_pages(config, store, language)
    history = History(prev_archive=archive_stem(language, pages)) if pages else None
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
            image_lengths=lengths, history=history if section is None else None,
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
    # archives first: a subscription feed never links an archive document that is not there yet
    return _archive_files(config, store, language, directory, sizes) + files


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
        files = _files_for_language(config, store, language, directory, sizes)
        try:
            report.published.extend(publisher.publish(files))
        except DeliveryError as exc:
            report.errors.append(f"cannot write feeds for {language}: {exc}")
            log.error(report.errors[-1])
    # hubs hear of subscription feeds only: archives are new but never change, OPML is no feed
    changed = [
        topic
        for topic in changed_topics(report.published, config.feeds.base_url)
        if not topic.endswith(".opml") and ".archive/" not in topic
    ]
    if changed and config.feeds.websub_hubs:
        pinger = WebSubPinger(config.feeds.websub_hubs, config.feeds.timeout, session)
        for result in pinger.ping(changed):
            if not result.ok:
                report.errors.append(f"WebSub hub {result.hub}: {result.error}")
    return report
