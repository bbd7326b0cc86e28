"""Surveying a site from its address: home page, language alternates, linked and common feeds, WordPress."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

from publisher.discovery.feed import FeedFacts, NotAFeed, read_feed
from publisher.discovery.fetch import Fetcher, FetchFailed
from publisher.discovery.page import FeedLink, Logo, PageFacts, looks_like_html, read_page
from publisher.discovery.zone import ZoneGuess, guess_zone

COMMON_FEED_PATHS = ("/feed", "/rss.xml", "/atom.xml", "/feed.json", "/rss", "/index.xml", "/feed.xml")
MAX_ALTERNATE_PAGES = 6
MAX_SECTIONS = 8


@dataclass
class FoundFeed:
    facts: FeedFacts
    language: str | None
    language_from: str  # "the feed", "hreflang", "the page linking it", "the home page"
    how: str  # "linked from URL" or "common path /feed"


@dataclass
class SiteSurvey:
    url: str  # as given, normalized
    base_url: str  # scheme://host/ of the site
    reachable: bool = False
    error: str | None = None
    pages: list[PageFacts] = field(default_factory=list)  # home first, then language alternates
    feeds: list[FoundFeed] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "URL (linked from X): not a feed: reason"
    duplicates: list[str] = field(default_factory=list)
    wordpress_api: str | None = None
    zone: ZoneGuess = field(default_factory=lambda: ZoneGuess(None, "not looked at"))

    @property
    def home(self) -> PageFacts | None:
        return self.pages[0] if self.pages else None

    @property
    def languages(self) -> list[str]:
        """Every language found: feeds first (they make editions that send), then the pages'."""
        found = [f.language for f in self.feeds if f.language]
        for page in self.pages:
            if page.language:
                found.append(page.language)
            found.extend(page.alternates)
        return list(dict.fromkeys(found))

    def feeds_in(self, language: str) -> list[FoundFeed]:
        return [f for f in self.feeds if f.language == language]

    def sections(self, language: str) -> list[str]:
        counts: Counter[str] = Counter()
        for found in self.feeds_in(language):
            for name, count in found.facts.categories.items():
                counts[" ".join(name.lower().split())] += count
        return [name for name, _ in counts.most_common(MAX_SECTIONS)]

    def site_name(self, language: str | None = None) -> str | None:
        pages = [p for p in self.pages if language is None or p.language == language] or self.pages
        for page in pages:
            if page.name_guess:
                return page.name_guess
        titles = [f.facts.title for f in self.feeds if f.facts.title]
        return titles[0] if titles else None

    @property
    def logos(self) -> list[Logo]:
        ranked = {"header logo": 0, "apple-touch-icon": 1, "og:image": 2}
        all_logos = [logo for page in self.pages for logo in page.logos]
        return sorted(dict.fromkeys(all_logos), key=lambda logo: ranked.get(logo.where, 9))


def normalize_url(url: str) -> str:
    text = url.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, ""))


def survey_site(url: str, *, timeout: float = 10.0) -> SiteSurvey:
    start = normalize_url(url)
    parts = urlsplit(start)
    survey = SiteSurvey(url=start, base_url=urlunsplit((parts.scheme, parts.netloc, "/", "", "")))
    survey.zone = ZoneGuess(None, "the site could not be read")
    fetcher = Fetcher(timeout)
    try:
        _survey(survey, fetcher)
    finally:
        fetcher.close()
    return survey


def _survey(survey: SiteSurvey, fetcher: Fetcher) -> None:
    try:
        home = fetcher.get(survey.url)
    except FetchFailed as exc:
        survey.error = str(exc)
        return
    if not home.ok:
        survey.error = f"{survey.url} answered HTTP {home.status}; is this the site's home page?"
        return
    survey.reachable = True
    if not looks_like_html(home.body, home.content_type):
        try:  # the address of a feed rather than of the site
            facts = read_feed(home)
            survey.feeds.append(
                FoundFeed(facts, facts.language, "the feed" if facts.language else "", "the address given")
            )
        except NotAFeed as exc:
            survey.error = f"{survey.url} is neither an HTML page nor a feed ({exc})"
    else:
        survey.pages.append(read_page(home.body, home.url))
        _read_alternates(survey, fetcher)
    links = [link for page in survey.pages for link in page.feeds]
    for link in dict.fromkeys(links):
        _probe(survey, fetcher, link.url, f"linked from {link.found_on}", link)
    if not survey.feeds:
        for path in COMMON_FEED_PATHS:
            _probe(survey, fetcher, urljoin(survey.base_url, path), f"common path {path}", None, quiet=True)
    _find_wordpress(survey, fetcher)
    _assign_languages(survey)
    dates = [moment for found in survey.feeds for moment in found.facts.dates]
    survey.zone = guess_zone(dates, survey.languages)


def _read_alternates(survey: SiteSurvey, fetcher: Fetcher) -> None:
    home = survey.pages[0]
    seen = {home.url, survey.url}
    for language, address in list(home.alternates.items())[:MAX_ALTERNATE_PAGES]:
        if address in seen:
            continue
        seen.add(address)
        try:
            fetched = fetcher.get(address)
        except FetchFailed as exc:
            survey.rejected.append(f"{address} (hreflang={language}): {exc}")
            continue
        if fetched.ok and looks_like_html(fetched.body, fetched.content_type):
            page = read_page(fetched.body, fetched.url)
            page.language = page.language or language
            survey.pages.append(page)


def _probe(
    survey: SiteSurvey, fetcher: Fetcher, url: str, how: str, link: FeedLink | None, *, quiet: bool = False
) -> None:
    if any(found.facts.url == url for found in survey.feeds):
        return
    try:
        facts = read_feed(fetcher.get(url))
    except (FetchFailed, NotAFeed) as exc:
        if not quiet:
            survey.rejected.append(f"{url} ({how}) is not a usable feed: {exc}")
        return
    for found in survey.feeds:
        known = found.facts
        if facts.url == known.url or (facts.links and len(facts.links & known.links) * 2 > len(facts.links)):
            survey.duplicates.append(f"{url} ({how}) carries the same articles as {known.url}: left out")
            return
    language, origin = facts.language, "the feed"
    if language is None and link is not None and link.hreflang:
        language, origin = link.hreflang, "hreflang"
    if language is None and link is not None:
        page = next((p for p in survey.pages if p.url == link.found_on), None)
        if page is not None and page.language:
            language, origin = page.language, "the page linking it"
    survey.feeds.append(FoundFeed(facts, language, origin, how))


def _assign_languages(survey: SiteSurvey) -> None:
    home_language = survey.home.language if survey.home else None
    for found in survey.feeds:
        if found.language is None and home_language:
            found.language, found.language_from = home_language, "the home page"


def _find_wordpress(survey: SiteSurvey, fetcher: Fetcher) -> None:
    address = urljoin(survey.base_url, "/wp-json/")
    try:
        fetched = fetcher.get(address)
    except FetchFailed:
        return
    if not fetched.ok:
        return
    try:
        data = json.loads(fetched.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return
    if isinstance(data, dict) and "wp/v2" in (data.get("namespaces") or []):
        survey.wordpress_api = address
