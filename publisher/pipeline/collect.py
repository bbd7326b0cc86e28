"""Stage 1, collect: every enabled source is fetched; a broken one is reported and skipped."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace

import requests

from publisher.config import Config
from publisher.errors import SourceError
from publisher.models import Article
from publisher.sources import build_source
from publisher.sources.fetching import user_agent
from publisher.sources.language import primary_subtag
from publisher.sources.normalize import is_skip
from publisher.store import Store

log = logging.getLogger(__name__)

# A single transient failure is not worth an alarm; this many in a row is.
BROKEN_AFTER = 3


@dataclass
class SourceOutcome:
    name: str
    fetched: int = 0
    new: int = 0
    updated: int = 0
    not_modified: bool = False
    error: str | None = None
    consecutive_failures: int = 0
    warnings: list[str] = field(default_factory=list)  # items taken, with a caveat (read leniently, say)
    skipped: list[str] = field(default_factory=list)  # items not taken, each with its name and reason

    @property
    def broken(self) -> bool:
        return self.consecutive_failures >= BROKEN_AFTER


@dataclass
class CollectReport:
    sources: list[SourceOutcome] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f"{s.name}: {s.error}" for s in self.sources if s.error]


def collect(config: Config, store: Store, *, session: requests.Session | None = None) -> CollectReport:
    report = CollectReport()
    session = session or requests.Session()
    session.headers["User-Agent"] = user_agent(config.site.base_url)
    languages = site_languages(config)
    default_language = languages[0] if len(languages) == 1 else None
    aliases = section_alias_map(config)
    # what this stage does to a source's articles after the source: a feed mixes it into the digest
    # by which it recognizes an unchanged read
    fingerprint = json.dumps([config.site.name, sorted(aliases.items())], ensure_ascii=False)
    for settings in config.sources:
        if not settings.enabled:
            continue
        outcome = SourceOutcome(settings.name)
        report.sources.append(outcome)
        state = store.sources.get(settings.name)
        try:
            source = build_source(
                settings,
                site_base_url=config.site.base_url,
                site_timezone=config.site.timezone,
                default_language=default_language,
                languages=languages,
                session=session,
                base_dir=config.base_dir,  # paths in source settings are relative to the config file
                fingerprint=fingerprint,
            )
            result = source.fetch(state)
        except SourceError as exc:
            outcome.error = exc.reason
        except Exception as exc:  # a bug or a library surprise in one source must not stop the others
            log.exception("source %s failed unexpectedly", settings.name)
            outcome.error = f"unexpected {type(exc).__name__}: {exc}"
        else:
            outcome.fetched = len(result.articles)
            outcome.not_modified = result.not_modified
            outcome.skipped = [m for m in result.warnings if is_skip(m)]
            outcome.warnings = [m for m in result.warnings if not is_skip(m)]
            credited = with_credits(result.articles, settings.credit, result.title or config.site.name)
            counts = store.articles.upsert(with_canonical_sections(credited, aliases))
            outcome.new, outcome.updated = counts.new, counts.updated
            store.sources.record_success(
                settings.name,
                etag=result.etag,
                last_modified=result.last_modified,
                count=len(result.articles),
                not_modified=result.not_modified,
                content_digest=result.content_digest,
            )
            for warning in result.warnings:
                log.warning("source %s: %s", settings.name, warning)
            log.info(
                "source %s: %s",
                settings.name,
                "not modified" if result.not_modified else f"{outcome.fetched} articles, {outcome.new} new, {outcome.updated} updated",
            )
            continue
        outcome.consecutive_failures = store.sources.record_failure(settings.name, outcome.error)
        level = logging.ERROR if outcome.broken else logging.WARNING
        flag = f" — BROKEN: failed {outcome.consecutive_failures} times in a row" if outcome.broken else ""
        log.log(level, "source %s skipped: %s%s", settings.name, outcome.error, flag)
    return report


def site_languages(config: Config) -> tuple[str, ...]:
    """The primary subtags the editions publish in (an edition in ar-SY takes ar articles)."""
    return tuple(dict.fromkeys(primary_subtag(e.language) or e.language for e in config.editions))


def credit_for(credit: str | dict[str, str] | None, language: str) -> str | None:
    """The configured credit in an article's language (a plain text serves every language)."""
    if isinstance(credit, str):
        return credit.strip() or None
    if credit:
        by_language = {primary_subtag(k) or k: v for k, v in credit.items()}
        chosen = by_language.get(language)
        return chosen.strip() if chosen and chosen.strip() else None
    return None


def with_credits(articles: list[Article], credit: str | dict[str, str] | None, fallback: str) -> list[Article]:
    """Every article names its source for readers: the item's own (an RSS <source>), else the
    configured credit, else the source's own title, else the site. Never the internal source name."""
    return [
        a if a.source_credit else replace(a, source_credit=credit_for(credit, a.language) or fallback)
        for a in articles
    ]


def section_alias_map(config: Config) -> dict[str, str]:
    """Other names sources use for a section (an Arabic page's "ثقافة"), mapped to the edition's name."""
    return {
        alias.strip().casefold(): section
        for section, names in config.site.section_aliases.items()
        for alias in names
    }


def with_canonical_sections(articles: list[Article], aliases: dict[str, str]) -> list[Article]:
    if not aliases:
        return articles
    return [
        replace(a, section=aliases[a.section.strip().casefold()])
        if a.section and a.section.strip().casefold() in aliases
        else a
        for a in articles
    ]
