"""The archive: "view in browser" pages of each published digest, and their index. No personal data.

A stored digest holds slots for per-recipient values; here they are filled with neutral ones (the
unsubscribe and preferences links lead to the subscribe page, no name, no address).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from markupsafe import escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from publisher.config import Config
from publisher.render.feeds.formats import feed_format
from publisher.render.slots import fill_slots, public_values
from publisher.render.templates import format_date, text_direction
from publisher.web.context import WebContext
from publisher.web.strings import choose_language

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)

# The digest's own HTML: its inline styles and remote images, nothing else (no scripts, no forms).
ARCHIVE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "public, max-age=300",
}


def feed_links(
    config: Config, names: Mapping[str, str], languages: list[str] | None = None
) -> list[dict[str, str]]:
    """Autodiscovery entries (<link rel="alternate">) for the feeds of some or all languages;
    `names` gives each language's name in that language ("English", "العربية")."""
    base = config.feeds.base_url.rstrip("/")
    links = []
    for language in dict.fromkeys(e.language for e in config.editions):
        if languages is not None and language not in languages:
            continue
        edition = next(e for e in config.editions if e.language == language)
        title = f"{edition.title or config.site.name} — {names.get(language, language)}"
        for spec in map(feed_format, dict.fromkeys(config.feeds.formats)):
            links.append({
                "type": spec.media_type,
                "title": f"{title} ({spec.label})",
                "url": f"{base}/{spec.file_name(language)}",
            })
    return links


def _link_tags(links: list[dict[str, str]]) -> str:
    return "".join(
        f'<link rel="alternate" type="{escape(link["type"])}" title="{escape(link["title"])}" href="{escape(link["url"])}">'
        for link in links
    )


class ArchivePages:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    def routes(self) -> list[Route]:
        return [
            Route("/archive", self.to_index, methods=["GET"]),
            Route("/archive/", self.index, methods=["GET"]),
            Route("/archive/{edition}/{day}", self.issue, methods=["GET"]),
        ]

    def _language_names(self) -> dict[str, str]:
        return {choice.code: choice.name for choice in self.web.language_choices()}

    def to_index(self, request: Request) -> Response:
        return RedirectResponse("/archive/", status_code=308)

    def index(self, request: Request) -> Response:
        config = self.web.config
        language = choose_language(
            request.query_params.get("lang"), request.headers.get("accept-language"), self.web.languages(config)
        )
        names = self._language_names()
        editions: list[dict[str, Any]] = []
        for edition in config.editions:
            days = self.web.store.digests.sent_days(edition.id)
            editions.append({
                "id": edition.id,
                "title": edition.title or config.site.name,
                "language_name": names.get(edition.language, edition.language),
                "language": edition.language,
                "dir": text_direction(edition.language),
                "days": [
                    (f"/archive/{edition.id}/{day.isoformat()}", format_date(day, "full", locale=edition.language))
                    for day in days
                ],
            })
        response = self.web.page(
            "web/archive_index.html.j2",
            language,
            {"editions": editions, "feeds": feed_links(config, names), "switch_languages": True},
            private=False,
            request=request,
        )
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    def issue(self, request: Request) -> Response:
        config = self.web.config
        edition_id = str(request.path_params["edition"])
        day_text = str(request.path_params["day"])
        fallback = choose_language(None, request.headers.get("accept-language"), self.web.languages(config))
        edition = next((e for e in config.editions if e.id == edition_id), None)
        day = _parse_day(day_text)
        record = self.web.store.digests.find(edition.id, day) if edition is not None and day is not None else None
        if edition is None or record is None or record.rendered is None:
            return self.web.notice(fallback, "not_found_title", "not_found_text", status_code=404,
                                   links=[("archive_link", "/archive/")])
        subscribe = self.web.url(f"/subscribe?lang={edition.language}")
        html = fill_slots(
            record.rendered.html,
            public_values(subscribe),
            escape_html=True,
        )
        html = _add_to_head(html, _link_tags(feed_links(config, self._language_names(), [edition.language])))
        return HTMLResponse(html, headers={**ARCHIVE_HEADERS, "Content-Language": edition.language})


def _parse_day(text: str) -> date | None:
    if not _DAY.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _add_to_head(html: str, tags: str) -> str:
    match = _HEAD_END.search(html)
    if match is None:
        return tags + html
    return html[: match.start()] + tags + html[match.start() :]
