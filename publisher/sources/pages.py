"""Article pages by URL: the page is fetched with our deadline and trafilatura finds the article in it.

trafilatura gives title, author, image and body; the exact publication instant, the canonical URL,
the page language, the image caption and alt text are read from the page's own markup (meta tags,
JSON-LD, <time>, <figcaption>), since trafilatura keeps only the date.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime, tzinfo
from html.parser import HTMLParser
from typing import Any, Literal

import requests
from pydantic import Field

from publisher.config.base import SourceSettingsBase
from publisher.errors import SourceError
from publisher.models import SourceResult, SourceState
from publisher.sources.base import SourceContext, SourceKind
from publisher.sources.fetching import download, is_remote
from publisher.sources.htmltext import collapse_whitespace, html_to_text
from publisher.sources.normalize import (
    ItemSkipped,
    RawItem,
    absolute_http_url,
    coerce_datetime,
    normalize_items,
    parse_datetime,
)

MIN_ARTICLE_CHARACTERS = 40
_META_CHARSET = re.compile(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_.:-]+)", re.IGNORECASE)
ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
_LEADING_HEADING = re.compile(r"^\s*(?:<html>\s*)?(?:<body>\s*)?<h[1-3][^>]*>(.*?)</h[1-3]>", re.DOTALL)


class PageSourceSettings(SourceSettingsBase):
    kind: Literal["pages"]
    urls: list[str] = Field(min_length=1, description="article pages, extracted with trafilatura")
    language: str | None = None
    section: str | None = None
    timeout: float = Field(default=15.0, gt=0, le=300)


def utc_now() -> datetime:
    return datetime.now(UTC)


class _PageFacts(HTMLParser):
    """What the page says about itself in markup, collected in one pass with the standard parser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.language: str | None = None
        self.meta: dict[str, str] = {}
        self.canonical: str | None = None
        self.json_ld: list[str] = []
        self.time_datetime: str | None = None
        self.figcaption: str | None = None
        self._in_json_ld = False
        self._in_figcaption = False
        self._buffer: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name.lower(): (value or "") for name, value in attrs}
        if tag == "html" and attributes.get("lang"):
            self.language = attributes["lang"]
        elif tag == "meta":
            key = (
                attributes.get("property") or attributes.get("name") or attributes.get("itemprop") or ""
            ).lower()
            if key and "content" in attributes:
                self.meta.setdefault(key, attributes["content"])
        elif tag == "link" and "canonical" in attributes.get("rel", "").lower().split():
            self.canonical = self.canonical or attributes.get("href")
        elif tag == "script" and attributes.get("type", "").lower() == "application/ld+json":
            self._in_json_ld, self._buffer = True, []
        elif tag == "time" and self.time_datetime is None and attributes.get("datetime"):
            self.time_datetime = attributes["datetime"]
        elif tag == "figcaption" and self.figcaption is None:
            self._in_figcaption, self._buffer = True, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_json_ld:
            self.json_ld.append("".join(self._buffer))
            self._in_json_ld = False
        elif tag == "figcaption" and self._in_figcaption:
            self.figcaption = collapse_whitespace("".join(self._buffer)) or None
            self._in_figcaption = False

    def handle_data(self, data: str) -> None:
        if self._in_json_ld or self._in_figcaption:
            self._buffer.append(data)


def _json_ld_objects(blocks: list[str]) -> Iterator[dict[str, Any]]:
    """Every JSON object in the page's JSON-LD blocks, @graph entries included."""
    for block in blocks:
        try:
            data = json.loads(block)
        except json.JSONDecodeError:
            continue
        stack = data if isinstance(data, list) else [data]
        while stack:
            node = stack.pop(0)
            if isinstance(node, dict):
                yield node
                graph = node.get("@graph")
                if isinstance(graph, list):
                    stack.extend(graph)


def _json_ld_article(facts: _PageFacts) -> dict[str, Any]:
    for node in _json_ld_objects(facts.json_ld):
        kinds = node.get("@type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if any(isinstance(k, str) and k.endswith("Article") for k in kinds) or "datePublished" in node:
            return node
    return {}


def _first_date(*candidates: object) -> datetime | None:
    for candidate in candidates:
        if isinstance(candidate, str):
            moment = parse_datetime(candidate)
            if moment is not None:
                return moment
    return None


class PageSource:
    """A list of article page URLs. A page that fails is a warning; all pages failing is a SourceError.

    The configured section wins over the page's own article:section (an operator who lists pages
    for a source is choosing their section); the page's <html lang> wins over the configured language.
    Pages are fetched unconditionally: SourceState keeps one ETag per source, not one per page.
    """

    def __init__(
        self,
        settings: PageSourceSettings,
        *,
        site_timezone: tzinfo,
        default_language: str | None = None,
        languages: Collection[str] = (),
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._zone = site_timezone
        self._default_language = default_language
        self._languages = tuple(languages)
        self._session = session
        self._clock = clock

    def fetch(self, state: SourceState) -> SourceResult:
        items: list[RawItem] = []
        failures: list[str] = []
        for index, url in enumerate(self.settings.urls):
            setting = f"sources[{self.name}].urls[{index}]"
            try:
                items.append(self._page(url, setting))
            except (SourceError, ItemSkipped) as exc:
                failures.append(exc.reason if isinstance(exc, SourceError) else str(exc))
        if failures and not items:
            raise SourceError(self.name, "no page could be read: " + "; ".join(failures))
        articles, warnings = normalize_items(
            items,
            source_name=self.name,
            zone=self._zone,
            now=self._clock(),
            fallback_language=self.settings.language or self._default_language,
            language_hint=f"the page has no <html lang>; set language: in sources[{self.name}] in config.yaml",
            languages=self._languages,
        )
        return SourceResult(source_name=self.name, articles=articles, warnings=failures + warnings)

    def _page(self, url: str, setting: str) -> RawItem:
        if not is_remote(url):
            raise SourceError(self.name, f"{url} is not an http(s) URL; fix {setting} in config.yaml")
        fetched = download(
            url,
            source_name=self.name,
            setting=setting,
            timeout=self.settings.timeout,
            session=self._session,
            accept=ACCEPT,
        )
        page = _decode(fetched.body, fetched.charset)
        return self.extract(page, url=fetched.url)

    def extract(self, page: str, *, url: str) -> RawItem:
        """One article from one HTML page; `url` is where it was fetched from (the base for links)."""
        facts = _PageFacts()
        facts.feed(page)
        facts.close()
        import trafilatura  # slow to import: only when pages are read
        from trafilatura.metadata import extract_metadata

        metadata = extract_metadata(page, default_url=url)
        # no url given to trafilatura: it resolves "../x" wrongly; our sanitizer resolves links instead
        body = trafilatura.extract(
            page,
            output_format="html",
            include_images=True,
            include_links=True,
            include_formatting=True,
            include_comments=False,
            with_metadata=False,
        )
        # trafilatura falls back to any text at all (a lone "Home" link): less than a sentence is no article
        if not body or len(html_to_text(body)) < MIN_ARTICLE_CHARACTERS:
            raise ItemSkipped(f"{url}: skipped: no article text found in the page")
        title = metadata.title or facts.meta.get("og:title")
        body = _without_leading_title(body, title)
        ld = _json_ld_article(facts)
        canonical = absolute_http_url(facts.canonical, url) or url
        published = _first_date(
            facts.meta.get("article:published_time"),
            ld.get("datePublished"),
            facts.meta.get("datepublished"),
            facts.time_datetime,
        )
        if published is None and metadata.date:  # trafilatura knows only the day: midnight, site time
            try:
                published = coerce_datetime(metadata.date)
            except ValueError:
                published = None
        updated = _first_date(facts.meta.get("article:modified_time"), ld.get("dateModified"))
        image = metadata.image or facts.meta.get("og:image")
        return RawItem(
            where=url,
            url=canonical,
            title=title,
            published=published,
            updated=updated,
            language=facts.language or facts.meta.get("og:locale"),
            section=self.settings.section or facts.meta.get("article:section"),
            author=metadata.author,
            summary_html=_escape(metadata.description),
            content_html=body,
            image_url=absolute_http_url(image, canonical) if image else None,
            image_caption=facts.figcaption,
            image_alt=facts.meta.get("og:image:alt"),
        )


def _decode(body: bytes, header_charset: str | None) -> str:
    """The HTTP charset, else the page's <meta charset>, else UTF-8; undecodable bytes become U+FFFD."""
    declared = _META_CHARSET.search(body[:4096])
    for charset in (header_charset, declared.group(1).decode("ascii") if declared else None, "utf-8"):
        if charset:
            try:
                return body.decode(charset, errors="replace")
            except LookupError:  # a charset name Python does not know
                continue
    return body.decode("utf-8", errors="replace")


def _escape(text: str | None) -> str | None:
    return html.escape(text) if text else None


def _without_leading_title(body: str, title: str | None) -> str:
    """trafilatura keeps the page's <h1>; the title is shown separately, so a duplicate is removed."""
    match = _LEADING_HEADING.match(body)
    if (
        match
        and title
        and collapse_whitespace(re.sub(r"<[^>]+>", "", match.group(1))) == collapse_whitespace(title)
    ):
        return body[match.end() :]
    return body


def _build(settings: PageSourceSettings, context: SourceContext) -> PageSource:
    return PageSource(
        settings,
        site_timezone=context.site_timezone,
        default_language=context.default_language,
        languages=context.languages,
        session=context.session,
    )


KIND = SourceKind("pages", PageSourceSettings, _build, "article pages (urls), extracted with trafilatura")
