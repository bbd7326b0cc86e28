"""A CMS API: the WordPress REST API (GET /wp-json/wp/v2/posts?_embed), which many news sites run on.

The newest-modified posts come first, so page 1 changes whenever any post changes: its ETag /
Last-Modified alone decide "not modified". Posts are mapped to RawItems and normalized by the shared
code (sanitized HTML, plain-text titles, aware UTC instants).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit

import requests
from pydantic import Field

from publisher.config.base import SourceSettingsBase
from publisher.errors import SourceError
from publisher.models import SourceResult, SourceState
from publisher.sources.base import SourceContext, SourceKind
from publisher.sources.fetching import Answer, get
from publisher.sources.htmltext import collapse_whitespace, html_to_text
from publisher.sources.normalize import RawItem, normalize_items, parse_int
from publisher.sources.wordpress_posts import field_at, plain_text, post_label, post_to_raw_item

POSTS_ROUTE = "/wp/v2/posts"
ACCEPT = "application/json"
_ERROR_TEXT_LIMIT = 200
# WordPress ends generated excerpts with " [&hellip;]" (the excerpt_more default): a plain ellipsis reads better.
_LOGIN_MARKERS = (b"wp-login.php", b'name="pwd"', b'id="loginform"')
_NOT_JSON = object()


class WordPressSourceSettings(SourceSettingsBase):
    """A CMS API: the WordPress REST API (wp-json/wp/v2/posts), which many news sites run on."""

    kind: Literal["wordpress"]
    url: Annotated[str, Field(pattern=r"^https?://")] = Field(description="the site's root; the API is under /wp-json/")
    language: str | None = None
    per_page: int = Field(default=20, ge=1, le=100)
    max_pages: int = Field(default=3, ge=1, le=50)
    username: str | None = None
    application_password: str | None = Field(default=None, description="write it as ${ENV_NAME}", repr=False)
    timeout: float = Field(default=15.0, gt=0, le=300)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Page:
    posts: list[Any] = field(default_factory=list)
    total_pages: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


class WordPressSource:
    """The posts of one WordPress site. fetch() raises SourceError when the API as a whole is unusable;
    a single malformed post only adds a warning."""

    def __init__(
        self,
        settings: WordPressSourceSettings,
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
        self._root = site_root(settings.url)
        self._auth: tuple[str, str] | None = None
        if settings.username and settings.application_password:
            self._auth = (settings.username, settings.application_password)
        self._rest_route_style = False  # True once /wp-json/ proved missing and ?rest_route= worked

    def _setting(self, key: str) -> str:
        return f"sources[{self.name}].{key}"

    def fetch(self, state: SourceState) -> SourceResult:
        self._refuse_credentials_in_clear()
        http = self._session or requests.Session()
        try:
            first = self._first_page(http, state)
            if first.not_modified:
                return SourceResult(
                    self.name, not_modified=True, etag=first.etag, last_modified=first.last_modified
                )
            posts = list(first.posts)
            last = first
            for number in range(2, self.settings.max_pages + 1):
                if len(last.posts) < self.settings.per_page:
                    break
                if last.total_pages is not None and number > last.total_pages:
                    break
                page = self._page(http, number)
                if page is None:
                    break
                posts.extend(page.posts)
                last = page
        finally:
            if self._session is None:
                http.close()
        items, warnings = self._raw_items(posts)
        articles, item_warnings = normalize_items(
            items,
            source_name=self.name,
            zone=self._zone,
            now=self._clock(),
            fallback_language=self.settings.language or self._default_language,
            language_hint=f"WordPress posts name none; set language: in sources[{self.name}] in config.yaml",
            languages=self._languages,
        )
        return SourceResult(
            source_name=self.name,
            articles=articles,
            etag=first.etag,
            last_modified=first.last_modified,
            warnings=warnings + item_warnings,
        )

    # --- HTTP -------------------------------------------------------------------------------------

    def _refuse_credentials_in_clear(self) -> None:
        """An application password over plain http can be read by anyone on the way (WordPress itself
        only accepts them over https); loopback is the one exception (a local test site)."""
        parts = urlsplit(self._root)
        if self._auth and parts.scheme.lower() != "https" and not _is_loopback(parts.hostname or ""):
            raise SourceError(
                self.name,
                f"{self._setting('application_password')} would travel unencrypted over http; "
                f"make {self._setting('url')} https://",
            )

    def posts_url(self, page: int) -> str:
        query: dict[str, str | int] = {"per_page": self.settings.per_page, "page": page, "_embed": 1}
        query |= {"orderby": "modified", "order": "desc"}  # the newest edits come first
        if self._rest_route_style:
            return f"{self._root}/?{urlencode({'rest_route': POSTS_ROUTE, **query})}"
        return f"{self._root}/wp-json{POSTS_ROUTE}?{urlencode(query)}"

    def _first_page(self, http: requests.Session, state: SourceState) -> _Page:
        url = self.posts_url(1)
        answer = self._get(http, url, etag=state.etag, last_modified=state.last_modified)
        if answer.status == 404 and _load_json(answer.body) is _NOT_JSON and not self._rest_route_style:
            # Without "pretty permalinks" /wp-json/ is the theme's 404 page; ?rest_route= still works.
            self._rest_route_style = True
            retry_url = self.posts_url(1)
            retry = self._get(http, retry_url, etag=state.etag, last_modified=state.last_modified)
            if retry.status == 304 or isinstance(_load_json(retry.body), list):
                answer, url = retry, retry_url
            elif _error_object(retry.body) is not None:  # the API is there but refuses (a login, say)
                raise self._failure(retry, retry_url)
            else:
                raise SourceError(
                    self.name,
                    f"no WordPress REST API at {url} (HTTP 404, an HTML page; ?rest_route= failed too): "
                    f"{self._setting('url')} must be the site's root, e.g. https://example.org",
                )
        if answer.status == 304:
            return _Page(
                not_modified=True,
                etag=answer.headers.get("ETag") or state.etag,
                last_modified=answer.headers.get("Last-Modified") or state.last_modified,
            )
        page = self._parse(answer, url)
        page.etag = answer.headers.get("ETag")
        page.last_modified = answer.headers.get("Last-Modified")
        return page

    def _page(self, http: requests.Session, number: int) -> _Page | None:
        """A later page; None when it is past the end (posts deleted or unpublished since page 1)."""
        url = self.posts_url(number)
        answer = self._get(http, url)
        error = _error_object(answer.body)
        if answer.status == 400 and error and error[0] == "rest_post_invalid_page_number":
            return None
        return self._parse(answer, url)

    def _get(
        self, http: requests.Session, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> Answer:
        return get(
            url,
            source_name=self.name,
            setting=self._setting("url"),
            timeout=self.settings.timeout,
            session=http,
            etag=etag,
            last_modified=last_modified,
            accept=ACCEPT,
            auth=self._auth,
        )

    # --- answers ----------------------------------------------------------------------------------

    def _parse(self, answer: Answer, url: str) -> _Page:
        if answer.status >= 400:
            raise self._failure(answer, url)
        document = _load_json(answer.body)
        if document is _NOT_JSON:
            raise SourceError(self.name, self._not_json(answer, url))
        if _error_object(answer.body) is not None:  # an error object with status 200 (some plugins)
            raise self._failure(answer, url)
        if not isinstance(document, list):
            raise SourceError(
                self.name,
                f"{url} answered JSON that is not a list of posts; check {self._setting('url')} "
                "is the site's root",
            )
        return _Page(posts=document, total_pages=parse_int(answer.headers.get("X-WP-TotalPages")))

    def _failure(self, answer: Answer, url: str) -> SourceError:
        status = answer.status
        error = _error_object(answer.body)
        code, message = error or ("", "")
        said = f" ({code}: {message})" if code else ""
        if code == "rest_no_route":
            return SourceError(
                self.name,
                f"{url} has no posts route{said}: the site's REST API may be disabled (a security plugin?) "
                f"or this is not the site's root; check {self._setting('url')} in config.yaml",
            )
        if status in (401, 403) or code in ("rest_forbidden", "rest_cannot_access", "rest_not_logged_in"):
            if self._auth:
                fix = (
                    f"check {self._setting('username')} and {self._setting('application_password')} "
                    "(an application password from the user's profile in wp-admin, not the login password)"
                )
            else:
                fix = (
                    f"the REST API needs a login: set {self._setting('username')} and "
                    f"{self._setting('application_password')}, or ask the site to open it"
                )
            return SourceError(self.name, f"HTTP {status} from {url}{said}: the site refuses access; {fix}")
        if status == 404:
            return SourceError(
                self.name, f"HTTP 404 from {url}{said}: check {self._setting('url')} is the site's root"
            )
        if status == 429:
            return SourceError(
                self.name,
                f"HTTP 429 from {url}{said}: the site is rate-limiting us; collect less often or retry later",
            )
        if status >= 500:
            return SourceError(self.name, f"HTTP {status} from {url}{said}: the site failed; retry later")
        return SourceError(self.name, f"HTTP {status} from {url}{said}; check {self._setting('url')}")

    def _not_json(self, answer: Answer, url: str) -> str:
        if "wp-login.php" in answer.url or any(marker in answer.body for marker in _LOGIN_MARKERS):
            return (
                f"{url} answered with a login page instead of JSON: the site is behind a login; set "
                f"{self._setting('username')} and {self._setting('application_password')}, "
                "or ask the site to open its REST API"
            )
        content_type = (answer.headers.get("Content-Type") or "no content type").split(";")[0]
        start = collapse_whitespace(html_to_text(answer.body[:400].decode("utf-8", "replace")))[:80]
        return (
            f"{url} answered {content_type}, not JSON (it begins {start!r}): an error page, or a caching "
            f"or security plugin in the way? Check {self._setting('url')} is the site's root"
        )

    # --- posts ------------------------------------------------------------------------------------

    def _raw_items(self, posts: list[Any]) -> tuple[list[RawItem], list[str]]:
        items: list[RawItem] = []
        warnings: list[str] = []
        for index, post in enumerate(posts, 1):
            if not isinstance(post, dict):
                warnings.append(f"post {index}: skipped: it is not a JSON object")
                continue
            where = post_label(post, index)
            if post.get("status", "publish") != "publish":
                warnings.append(f"{where}: skipped: its status is {post.get('status')!r}, not publish")
                continue
            if field_at(post, "content", "protected") is True:
                warnings.append(f"{where}: skipped: it is password-protected")
                continue
            items.append(post_to_raw_item(post, where=where, language=plain_text(post.get("lang"))))
        return items, warnings


def site_root(url: str) -> str:
    """The site's root without a trailing slash; an API URL pasted by mistake is cut back to it."""
    root = url.strip().split("?", 1)[0].split("#", 1)[0]
    cut = root.find("/wp-json")
    if cut != -1:
        root = root[:cut]
    return root.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_json(body: bytes) -> Any:
    """The decoded document, or _NOT_JSON (an HTML page, a PHP warning printed before the JSON ...)."""
    try:
        return json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _NOT_JSON


def _error_object(body: bytes) -> tuple[str, str] | None:
    """(code, message) of a WordPress error answer: {"code": "rest_no_route", "message": ..., "data": ...}."""
    document = _load_json(body)
    if not isinstance(document, dict) or not isinstance(document.get("code"), str):
        return None
    message = collapse_whitespace(html_to_text(str(document.get("message") or "")))
    return document["code"], message[:_ERROR_TEXT_LIMIT]


def _build(settings: WordPressSourceSettings, context: SourceContext) -> WordPressSource:
    return WordPressSource(
        settings,
        site_timezone=context.site_timezone,
        default_language=context.default_language,
        languages=context.languages,
        session=context.session,
    )


KIND = SourceKind("wordpress", WordPressSourceSettings, _build, "a WordPress site's REST API (url: the site's root)")
