"""WordPress REST API posts as our raw items: fields, embedded author, category, featured image."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from publisher.sources.htmltext import html_to_text
from publisher.sources.normalize import RawItem, parse_datetime, parse_int

_EXCERPT_MORE = re.compile(r"\s*\[(?:&hellip;|&#8230;|…|\.\.\.)\]")


@dataclass(frozen=True)
class _Image:
    url: str | None = None
    alt: str | None = None
    caption: str | None = None
    type: str | None = None
    length: int | None = None


def post_to_raw_item(post: dict[str, Any], *, where: str, language: str | None = None) -> RawItem:
    """One post of /wp/v2/posts?_embed as a RawItem. Every field is read defensively: a missing or
    mistyped field becomes None and normalization decides whether the post can still be an article."""
    embedded = post.get("_embedded")
    if not isinstance(embedded, dict):
        embedded = {}
    excerpt = _rendered(post, "excerpt")
    image = _featured_image(embedded)
    link = plain_text(post.get("link"))
    return RawItem(
        where=where,
        url=link,
        title=_rendered(post, "title"),
        title_is_html=True,  # title.rendered carries entities (&#8217;) and sometimes <em>
        guid=html.unescape(_rendered(post, "guid") or "") or None,
        published=_gmt(post.get("date_gmt")) or parse_datetime(plain_text(post.get("date"))),
        updated=_gmt(post.get("modified_gmt")) or parse_datetime(plain_text(post.get("modified"))),
        language=language,
        section=_first_category(embedded),
        author=_author(embedded),
        summary_html=_EXCERPT_MORE.sub("…", excerpt) if excerpt else None,
        content_html=_rendered(post, "content"),
        image_url=image.url,
        image_alt=image.alt,
        image_caption=image.caption,
        image_type=image.type,
        image_length=image.length,
    )


def field_at(holder: object, *keys: str | int) -> Any:
    """holder[k1][k2]... or None when any step is missing or of the wrong type."""
    for key in keys:
        if isinstance(key, int) and isinstance(holder, list) and -len(holder) <= key < len(holder):
            holder = holder[key]
        elif isinstance(key, str) and isinstance(holder, dict):
            holder = holder.get(key)
        else:
            return None
    return holder


def plain_text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _rendered(post: dict[str, Any], key: str) -> str | None:
    """post[key]["rendered"]; a plain string is accepted too (some plugins flatten these)."""
    value = post.get(key)
    return plain_text(value.get("rendered") if isinstance(value, dict) else value)


def _gmt(value: object) -> datetime | None:
    """WordPress writes *_gmt fields without an offset: they are UTC, not site time."""
    moment = parse_datetime(plain_text(value))
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def post_label(post: dict[str, Any], index: int) -> str:
    title = html_to_text(_rendered(post, "title") or "")[:60]
    ident = post.get("id") if isinstance(post.get("id"), int) else f"#{index}"
    return f"post {ident} {title!r}" if title else f"post {ident}"


def _author(embedded: dict[str, Any]) -> str | None:
    # an author the API may not show is an error object ({"code": "rest_user_invalid_id"}), without a name
    return plain_text(field_at(embedded, "author", 0, "name"))


def _first_category(embedded: dict[str, Any]) -> str | None:
    """The first category's slug (stable, often Latin even on Arabic sites), percent-decoded; its name
    when there is no slug. WordPress's catch-all "uncategorized" is no section."""
    groups = embedded.get("wp:term")
    for group in groups if isinstance(groups, list) else []:
        for term in group if isinstance(group, list) else []:
            if not isinstance(term, dict) or term.get("taxonomy") != "category":
                continue
            slug = unquote(plain_text(term.get("slug")) or "")
            if slug.lower() == "uncategorized":
                continue
            name = html_to_text(plain_text(term.get("name")) or "")
            if slug or name:
                return slug or name
    return None


def _featured_image(embedded: dict[str, Any]) -> _Image:
    media = field_at(embedded, "wp:featuredmedia", 0)
    if not isinstance(media, dict) or not plain_text(media.get("source_url")):
        return _Image()  # none, or an error object ({"code": "rest_forbidden"}) for media we may not see
    mime_type = plain_text(media.get("mime_type"))
    if mime_type and not mime_type.lower().startswith("image/"):
        return _Image()
    return _Image(
        url=plain_text(media.get("source_url")),
        alt=plain_text(media.get("alt_text")),
        caption=html_to_text(_rendered(media, "caption") or "") or None,
        type=mime_type.lower() if mime_type else None,
        length=parse_int(field_at(media, "media_details", "filesize")),
    )
