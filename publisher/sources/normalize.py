"""From what any source found (a RawItem) to an Article every later stage can trust.

Ids are stable, every URL is absolute, HTML is sanitized, text is plain, instants are aware UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from email.utils import parsedate_tz
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

from publisher.models import Article
from publisher.sources.htmltext import clean_title, collapse_whitespace, make_summary, sanitize_html

# Query parameters that only say who sent the reader: they make one article look like many.
TRACKING_PARAMETERS: frozenset[str] = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "msclkid", "yclid", "twclid", "igshid", "ttclid",
        "mc_cid", "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id",
        "ref", "ref_src", "ref_url", "referrer", "cmpid", "ocid", "ncid", "sr_share",
        "spm", "at_medium", "at_campaign", "at_custom1", "at_custom2", "wt_mc", "wt.mc_id",
    }
)  # fmt: skip
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_", "hsa_", "itm_")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_ZONE_AT_END = re.compile(r"(?:[+-]\d{2}:?\d{2}|\b(?:UT|UTC|GMT|Z|[ECMP][SD]T|[A-IK-Z]))\s*$", re.IGNORECASE)
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


class ItemSkipped(Exception):
    """One item cannot become an article; the source keeps the others and reports why."""


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
    language: str | None = None
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


# --- URLs and ids -------------------------------------------------------------------------------


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMETERS or lowered.startswith(TRACKING_PREFIXES)


def canonical_url(url: str) -> str:
    """The same page always gives the same string: lower-case scheme and host, no default port,
    no fragment, no tracking parameters (other parameters keep their order)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    return urlunsplit((scheme, host, path, urlencode(query, doseq=True), ""))


def absolute_http_url(value: str | None, base: str) -> str | None:
    """An absolute http(s) URL, resolved against `base`; anything else (javascript:, data:) gives None."""
    if value is None or not value.strip():
        return None
    resolved = urljoin(base, value.strip())
    parts = urlsplit(resolved)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return resolved


def stable_id(guid: str | None, url: str, *, source_name: str) -> str:
    """The GUID when the source gives one, else the canonical URL.

    A URL-shaped GUID is canonicalized too (feeds often put tracking parameters in it). A bare GUID
    ("1234") is unique only inside its own feed, so it is qualified with the source name.
    """
    guid = (guid or "").strip()
    if not guid:
        return canonical_url(url)
    if guid.lower().startswith(("http://", "https://")):
        return canonical_url(guid)
    if _SCHEME.match(guid):  # tag:, urn: ... are globally unique by construction
        return guid
    return f"{source_name}:{guid}"


# --- languages and sections ---------------------------------------------------------------------


def normalize_language(tag: str | None) -> str | None:
    """The lower-case primary subtag: "en-US" -> "en", "AR" -> "ar"; None when it is not a language tag."""
    if not tag:
        return None
    tag = tag.strip()
    if not _LANGUAGE_TAG.match(tag):
        return None
    return re.split(r"[-_]", tag)[0].lower()


def normalize_section(name: str | None) -> str | None:
    """Sections compare case-insensitively with the editions' section lists in config.yaml."""
    if not name:
        return None
    cleaned = collapse_whitespace(name).lower()
    return cleaned or None


# --- dates --------------------------------------------------------------------------------------


def parse_datetime(text: str | None) -> datetime | None:
    """RFC 822 (RSS) or ISO 8601 / RFC 3339 (Atom, JSON Feed, front matter). Naive when the text names
    no zone: the caller decides which zone that means. None when it is not a date."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    parsed = parsedate_tz(text)
    if parsed is None:
        return None
    try:
        naive = datetime(*parsed[:6])
    except (TypeError, ValueError):
        return None
    # parsedate_tz reports offset 0 both for "GMT" and for no zone at all: look at the text itself.
    if not _ZONE_AT_END.search(text):
        return naive
    return naive.replace(tzinfo=timezone(timedelta(seconds=parsed[9] or 0)))


def coerce_datetime(value: object) -> datetime | None:
    """A datetime from what YAML or JSON gives: datetime, date (midnight), or text. Raises ValueError
    for a value that is there but is not a date."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"{value!r} is not a date (write 2024-12-02 09:15 or 2024-12-02T09:15:00+03:00)")
        return parsed
    raise ValueError(f"{value!r} is not a date")


def to_utc(moment: datetime, zone: tzinfo) -> datetime:
    """Aware UTC. A naive moment is wall-clock time in `zone` (the site's time zone)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


# --- RawItem -> Article ------------------------------------------------------------------------


def build_article(
    item: RawItem,
    *,
    source_name: str,
    zone: tzinfo,
    now: datetime,
    fallback_language: str | None,
    language_hint: str,
) -> tuple[Article, list[str]]:
    """Normalize one item. Raises ItemSkipped (with the reason) when it cannot be an article;
    returns the article and the warnings worth telling the operator."""
    warnings: list[str] = []
    url = absolute_http_url(item.url, "") if item.url else None
    if url is None:
        raise ItemSkipped(f"{item.where}: skipped: it has no link (an absolute http(s) URL is required)")
    title = clean_title(item.title or "", is_html=item.title_is_html)
    if not title:
        raise ItemSkipped(f"{item.where}: skipped: it has no title")
    language = normalize_language(item.language) or normalize_language(fallback_language)
    if language is None:
        raise ItemSkipped(f"{item.where}: skipped: its language is unknown ({language_hint})")

    published = to_utc(item.published, zone) if item.published else None
    updated = to_utc(item.updated, zone) if item.updated else None
    undated = False
    if published is None:
        published = updated
    if published is None:
        published = now.astimezone(UTC)
        undated = True
        warnings.append(f"{item.where} has no date; using the time first seen ({published.isoformat()})")
    if updated is None or updated < published:
        updated = published

    base = absolute_http_url(item.content_base, url) if item.content_base else None
    content_html = sanitize_html(item.content_html or item.summary_html or "", base_url=base or url)
    image_url = absolute_http_url(item.image_url, url)
    article = Article(
        id=stable_id(item.guid, url, source_name=source_name),
        url=url,
        title=title,
        language=language,
        published_at=published,
        updated_at=updated,
        source_name=source_name,
        summary=make_summary(item.summary_html, item.content_html),
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
) -> tuple[list[Article], list[str]]:
    """Every item that can be an article, newest version per id, plus the warnings for the rest."""
    articles: list[Article] = []
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
            )
        except ItemSkipped as skipped:
            warnings.append(str(skipped))
            continue
        articles.append(article)
        warnings.extend(item_warnings)
    return keep_newest(articles), warnings


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
