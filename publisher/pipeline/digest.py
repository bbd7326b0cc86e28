"""Stages 2 and 3, select and render: freeze a digest's articles once, render it once, keep both.

The rendered digest is stored, so a resumed run sends exactly what the first one started sending,
and the archive page shows what subscribers received.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from publisher.config import Config, EditionSettings
from publisher.models import RenderedDigest, StoredArticle
from publisher.render.clicks import ClickLinks, rewrite
from publisher.render.email import DigestRenderer
from publisher.render.templates import make_environment
from publisher.selection import choose, day_bounds, split_stale
from publisher.store import DigestConflict, DigestRecord, Store

log = logging.getLogger(__name__)


@dataclass
class SelectedDigest:
    edition: EditionSettings
    day: date
    articles: list[StoredArticle]
    record: DigestRecord | None  # None in a dry run, or when the day is empty
    left_out: list[str] = field(default_factory=list)  # late articles too old to be the day's news, why


def archive_url(config: Config, edition: str, day: date) -> str:
    return f"{config.site.public_url.rstrip('/')}/archive/{edition}/{day.isoformat()}"


def select_digest(config: Config, store: Store, edition: EditionSettings, day: date, *, dry_run: bool = False) -> SelectedDigest:
    """The digest of `day` for an edition: found if it exists, else chosen now and frozen in the store."""
    existing = store.digests.find(edition.id, day)
    if existing is not None:
        return SelectedDigest(edition, day, store.articles.in_digest(existing.id), existing)
    start, end = day_bounds(day, config.site.zone)
    late_since = store.digests.previous_created_at(edition.id, day)
    candidates = store.articles.candidates(
        edition=edition.id, language=edition.language, day_start=start, day_end=end, late_since=late_since
    )
    pk_of = {article.id: pk for pk, article in candidates}
    fresh, stale = split_stale(
        [article for _, article in candidates],
        day_start=start,
        day_end=end,
        max_age=timedelta(hours=config.selection.max_age_hours),
    )
    left_out = [
        f"{a.source_name}: {a.title!r} (published {a.published_at:%Y-%m-%d}, first seen "
        f"{(a.first_seen_at or a.published_at):%Y-%m-%d}): left out, older than selection.max_age_hours "
        f"({config.selection.max_age_hours:g})"
        for a in stale
    ]
    for reason in left_out:
        log.warning("digest %s %s: %s", edition.id, day, reason)
    chosen = choose(fresh, edition.sections, edition.max_articles)
    if not chosen or dry_run:
        return SelectedDigest(edition, day, chosen, None, left_out)
    try:
        record = store.digests.create(edition.id, day, edition.language, [pk_of[a.id] for a in chosen])
    except DigestConflict:
        # another process froze it first (or took an article): use theirs
        found = store.digests.find(edition.id, day)
        if found is None:
            raise
        return SelectedDigest(edition, day, store.articles.in_digest(found.id), found)
    log.info("digest %s %s: %d articles selected", edition.id, day, len(chosen))
    return SelectedDigest(edition, day, chosen, record, left_out)


def render_digest(config: Config, store: Store | None, selected: SelectedDigest) -> RenderedDigest:
    """Render once; a digest rendered before is taken from the store unchanged."""
    if selected.record is not None and selected.record.rendered is not None:
        return selected.record.rendered
    environment = make_environment(config.path(config.templates) if config.templates else None)
    renderer = DigestRenderer(environment, config.site, selected.edition)
    rendered = renderer.render(
        selected.articles, selected.day, archive_url=archive_url(config, selected.edition.id, selected.day)
    )
    if store is not None and selected.record is not None:
        rendered = with_analytics(config, rendered, selected.articles, selected.record.id)
        store.digests.save_rendered(selected.record.id, rendered)
        stored = store.digests.get(selected.record.id)
        # a concurrent renderer may have stored first: send what is in the store
        if stored is not None and stored.rendered is not None:
            rendered = stored.rendered
    return rendered


def with_analytics(
    config: Config,
    rendered: RenderedDigest,
    articles: Sequence[StoredArticle],
    digest_id: int,
    positions: Sequence[int] | None = None,
) -> RenderedDigest:
    """The rendered digest (or a section variant of it: `positions` are its stories' places in the
    whole digest) with counted links and the open pixel, as analytics asks; unchanged when it asks none."""
    analytics = config.analytics
    if not (analytics.clicks or analytics.opens):
        return rendered
    links = ClickLinks(config.site.secret, config.site.public_url)
    return rewrite(rendered, articles, digest_id=digest_id, links=links, base_url=config.site.base_url,
                   positions=positions, clicks=analytics.clicks, opens=analytics.opens,
                   per_reader=analytics.per_subscriber)
