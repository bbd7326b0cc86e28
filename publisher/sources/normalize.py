"""From what any source found (a RawItem) to an Article every later stage can trust.

Ids are stable, every URL is absolute, HTML is sanitized, text is plain and correctly decoded,
instants are aware UTC, and each item has its own language.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from publisher.models import Article
from publisher.sources.dates import coerce_datetime, parse_datetime, to_utc
from publisher.sources.encoding import GarbledText, repair_text
from publisher.sources.htmltext import (
    clean_title,
    collapse_whitespace,
    make_summary,
    sanitize_html,
)
from publisher.sources.language import detect_language, primary_subtag
from publisher.sources.urls import (
    TRACKING_PARAMETERS,
    TRACKING_PREFIXES,
    absolute_http_url,
    canonical_url,
    stable_id,
)

__all__ = [
    "TRACKING_PARAMETERS",
    "TRACKING_PREFIXES",
    "ItemSkipped",
    "RawItem",
    "absolute_http_url",
    "build_article",
    "canonical_url",
    "coerce_datetime",
    "is_held_back",
    "is_skip",
    "keep_newest",
    "normalize_items",
    "normalize_language",
    "normalize_section",
    "parse_datetime",
    "parse_int",
    "stable_id",
    "to_utc",
]

# Items dated further ahead than this are held back: a typo'd year would pin them to the top.
FUTURE_TOLERANCE = timedelta(days=1)
SKIPPED = ": skipped: "  # every message about an item not taken contains it
HELD_BACK = "held back: "  # follows SKIPPED for an item dated in the future: taken once its day comes


class ItemSkipped(Exception):
    """One item cannot become an article; the source keeps the others and reports why."""


def is_held_back(message: str) -> bool:
    """True for the message about an item held back for its future date."""
    return f"{SKIPPED}{HELD_BACK}" in message


def is_skip(message: str) -> bool:
    """True for a message about an item that was not taken (as opposed to one taken with a caveat)."""
    return SKIPPED in message


@dataclass
class RawItem:
    """What a source found for one article, before normalization. Datetimes may be naive (site time)."""

    where: str  # names the item in warnings: a file name, "entry 3 'Title'"
    url: str | None
    title: str | None
    guid: str | None = None
    title_is_html: bool = False
    published: datetime | None = None
    updated: datetime | None = None
    language: str | None = None  # from the item's own markup only (xml:lang, dc:language, "language")
    section: str | None = None
    author: str | None = None
    source_credit: str | None = None
    summary_html: str | None = None
    content_html: str | None = None
    content_base: str | None = None  # what relative URLs in the HTML are relative to; default: url
    image_url: str | None = None
    image_caption: str | None = None
    image_alt: str | None = None
    image_type: str | None = None
    image_length: int | None = None


normalize_language = primary_subtag


def normalize_section(name: str | None) -> str | None:
    """Sections compare case-insensitively with the editions' section lists in config.yaml."""
    if not name:
        return None
    cleaned = collapse_whitespace(name).lower()
    return cleaned or None


_TEXT_FIELDS = ("title", "summary_html", "content_html", "author", "source_credit", "image_caption", "image_alt")


def _repaired(item: RawItem) -> tuple[RawItem, bool]:
    """The item with double-encoded UTF-8 undone; raises ItemSkipped for text that stays garbled."""
    changes: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        try:
            value, fixed = repair_text(getattr(item, name))
        except GarbledText as exc:
            named = f"{item.where} ({item.url})" if item.url else item.where
            raise ItemSkipped(f"{named}{SKIPPED}{exc}; it is taken once the source sends it readable") from exc
        if fixed:
            changes[name] = value
    return (replace(item, **changes), True) if changes else (item, False)


def _language(
    item: RawItem, summary: str, fallback: str | None, languages: Collection[str], hint: str
) -> tuple[str, str | None]:
    """(language, warning): the item's own markup, else its text, else the source's default."""
    own = primary_subtag(item.language)
    if own:
        return own, None
    fallback = primary_subtag(fallback)
    if languages:
        detected = detect_language(f"{item.title or ''}. {summary}", languages)
        if detected:
            if fallback and detected != fallback:
                return detected, f"{item.where}: language {detected!r} read from its text (the source says {fallback!r})"
            return detected, None
    if fallback is None:
        raise ItemSkipped(f"{item.where}{SKIPPED}its language is unknown ({hint})")
    return fallback, None


def build_article(
    item: RawItem,
    *,
    source_name: str,
    zone: tzinfo,
    now: datetime,
    fallback_language: str | None,
    language_hint: str,
    languages: Collection[str] = (),
    id_scope: str | None = None,
) -> tuple[Article, list[str]]:
    """Normalize one item. Raises ItemSkipped (with the reason) when it cannot be an article;
    returns the article and the warnings worth telling the operator.

    languages: the site's languages (primary subtags); with them an item without its own language
    markup gets the language of its text. fallback_language: the source's default.
    id_scope: what a bare GUID ("1234") is unique within (a feed's address); default: the source name.
    """
    warnings: list[str] = []
    url = absolute_http_url(item.url, "") if item.url else None
    if url is None:
        raise ItemSkipped(f"{item.where}{SKIPPED}it has no link (an absolute http(s) URL is required)")
    item, repaired = _repaired(item)
    if repaired:
        warnings.append(f"{item.where}: its text was double-encoded UTF-8 (mojibake); repaired")
    title = clean_title(item.title or "", is_html=item.title_is_html)
    if not title:
        raise ItemSkipped(f"{item.where}{SKIPPED}it has no title")
    summary = make_summary(item.summary_html, item.content_html)
    language, language_warning = _language(item, summary, fallback_language, languages, language_hint)
    if language_warning:
        warnings.append(language_warning)

    published = to_utc(item.published, zone) if item.published else None
    updated = to_utc(item.updated, zone) if item.updated else None
    undated = False
    if published is None:
        published = updated
    if published is None:
        published = now.astimezone(UTC)
        undated = True
        warnings.append(f"{item.where} has no date; using the time first seen ({published.isoformat()})")
    if published > now + FUTURE_TOLERANCE:
        raise ItemSkipped(
            f"{item.where}{SKIPPED}{HELD_BACK}it is dated {published:%Y-%m-%d %H:%M} UTC, more than a day "
            "ahead (a typo in its date?); it is taken when that day comes"
        )
    if updated is None or updated < published:
        updated = published

    base = absolute_http_url(item.content_base, url) if item.content_base else None
    content_html = sanitize_html(item.content_html or item.summary_html or "", base_url=base or url)
    image_url = absolute_http_url(item.image_url, url)
    article = Article(
        id=stable_id(item.guid, url, source_name=id_scope or source_name),
        url=url,
        title=title,
        language=language,
        published_at=published,
        updated_at=updated,
        source_name=source_name,
        summary=summary,
        content_html=content_html,
        section=normalize_section(item.section),
        author=_one_line(item.author),
        source_credit=_one_line(item.source_credit),
        image_url=image_url,
        image_caption=_one_line(item.image_caption) if image_url else None,
        image_alt=_one_line(item.image_alt) if image_url else None,
        image_type=_one_line(item.image_type) if image_url else None,
        image_length=item.image_length if image_url and (item.image_length or 0) > 0 else None,
        undated=undated,
        canonical_url=canonical_url(url),
    )
    return article, warnings


def _one_line(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = clean_title(value, is_html=False)
    return cleaned or None


def normalize_items(
    items: Iterable[RawItem],
    *,
    source_name: str,
    zone: tzinfo,
    now: datetime,
    fallback_language: str | None,
    language_hint: str,
    languages: Collection[str] = (),
    id_scope: str | None = None,
) -> tuple[list[Article], list[str]]:
    """Every item that can be an article plus one message for each item not taken (containing
    ": skipped: ") or taken with a caveat.

    Two items with one id and one link are versions of one story: the newest is kept and the other
    reported. Two items with one id but different links are different stories: both are kept (the
    second under an id qualified by its link) and the collision is reported.
    """
    by_id: dict[str, tuple[Article, str]] = {}
    warnings: list[str] = []
    for item in items:
        try:
            article, item_warnings = build_article(
                item,
                source_name=source_name,
                zone=zone,
                now=now,
                fallback_language=fallback_language,
                language_hint=language_hint,
                languages=languages,
                id_scope=id_scope,
            )
        except ItemSkipped as skipped:
            warnings.append(str(skipped))
            continue
        warnings.extend(item_warnings)
        kept = by_id.get(article.id)
        if kept is None:
            by_id[article.id] = (article, item.where)
        elif kept[0].canonical_url != article.canonical_url:
            distinct = f"{article.id}#{article.canonical_url}"
            warnings.append(
                f"{item.where}: shares its GUID with {kept[1]} but links to {article.url}; both kept "
                "(ask the feed's publisher for unique GUIDs)"
            )
            by_id[distinct] = (replace(article, id=distinct), item.where)
        else:
            newer = article.updated_at > kept[0].updated_at
            dropped, chosen = (kept[1], item.where) if newer else (item.where, kept[1])
            warnings.append(
                f"{dropped}{SKIPPED}it is an older version of {chosen} (same GUID and link), which is kept"
            )
            if newer:
                by_id[article.id] = (article, item.where)
    return [article for article, _ in by_id.values()], warnings


def keep_newest(articles: Iterable[Article]) -> list[Article]:
    """One article per id: the most recently updated version (the first one seen on a tie), in the
    order the ids first appeared."""
    newest: dict[str, Article] = {}
    for article in articles:
        kept = newest.get(article.id)
        if kept is None or article.updated_at > kept.updated_at:
            newest[article.id] = article
    return list(newest.values())


def parse_int(value: object) -> int | None:
    """A byte count from a feed attribute ("12345", 12345, "", None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
