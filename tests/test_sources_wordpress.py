"""The WordPress REST API source against a WordPress-like server on 127.0.0.1: paging, conditional GET,
application passwords, sanitizing, dates, broken sites and posts, and one run through the pipeline."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from publisher.config import WordPressSourceSettings, load_config
from publisher.delivery.mail import InMemoryTransport
from publisher.errors import SourceError
from publisher.models import SourceResult, SourceState
from publisher.pipeline import collect, run_digests
from publisher.sources import build_source
from publisher.sources.wordpress import WordPressSource
from publisher.store import Store
from tests.conftest import write_config
from tests.fixtures.sources.loopback import LoopbackHttpServer, Route, refused_url

FIXTURES = Path(__file__).parent / "fixtures" / "sources" / "wordpress"
ZONE = ZoneInfo("Asia/Damascus")
NOW = datetime(2024, 12, 2, 20, 0, tzinfo=UTC)
POSTS_PATH = "/wp-json/wp/v2/posts"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def wp_json(document: object) -> bytes:
    """As WordPress encodes: ASCII only (\\uXXXX) and escaped slashes."""
    return json.dumps(document, separators=(",", ":")).replace("/", "\\/").encode()


class FakeWordPress:
    """WordPress sites on 127.0.0.1, keyed by their root path ("" or "/ar" for a multisite), answering
    GET <root>/wp-json/wp/v2/posts like WordPress behind a caching plugin: newest-modified first,
    X-WP-Total / X-WP-TotalPages, an ETag per answer, 304 for a matching If-None-Match, and optionally
    application-password basic auth or plain permalinks (only <root>/?rest_route=/wp/v2/posts)."""

    def __init__(self, sites: dict[str, list[dict[str, Any]]]) -> None:
        self.sites = sites
        self.credentials: tuple[str, str] | None = None
        self.plain_permalinks = False
        self.send_totals = True  # some proxies and CDNs strip the X-WP-* headers
        self.requests: list[tuple[str, dict[str, str]]] = []
        wordpress = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                headers = {k.lower(): v for k, v in self.headers.items()}
                wordpress.requests.append((self.path, headers))
                status, extra, body = wordpress.answer(self.path, headers)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def root(self, site: str = "") -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{site}"

    def answer(self, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        site = None
        if not self.plain_permalinks and parts.path.endswith(POSTS_PATH):
            site = parts.path[: -len(POSTS_PATH)]
        elif query.get("rest_route") == "/wp/v2/posts":
            site = parts.path.rstrip("/")
        if site not in self.sites:
            return (
                404,
                {"Content-Type": "text/html; charset=UTF-8"},
                b"<!DOCTYPE html><title>Page not found</title>",
            )
        json_type = {"Content-Type": "application/json; charset=UTF-8"}
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if "authorization" not in headers:
                return 401, json_type, wp_json(fixture("error-not-logged-in.json"))
            if headers["authorization"] != expected:
                return 401, json_type, wp_json(fixture("error-incorrect-password.json"))
        posts = sorted(self.sites[site], key=lambda p: str(_get(p, "modified_gmt")), reverse=True)
        per_page, page = int(query.get("per_page", 10)), int(query.get("page", 1))
        total_pages = max(1, -(-len(posts) // per_page))
        if page > total_pages:
            return 400, json_type, wp_json(fixture("error-invalid-page-number.json"))
        body = wp_json(posts[(page - 1) * per_page : page * per_page])
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        if headers.get("if-none-match") == etag:
            return 304, {"ETag": etag}, b""
        totals = {"X-WP-Total": str(len(posts)), "X-WP-TotalPages": str(total_pages)}
        return 200, {**json_type, "ETag": etag, **(totals if self.send_totals else {})}, body

    def queries(self) -> list[dict[str, str]]:
        return [{k: v[0] for k, v in parse_qs(urlsplit(path).query).items()} for path, _ in self.requests]

    def __enter__(self) -> FakeWordPress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _get(post: object, key: str) -> object:
    return post.get(key) if isinstance(post, dict) else None


@pytest.fixture
def wordpress() -> Iterator[FakeWordPress]:
    with FakeWordPress({"": fixture("posts-en.json"), "/ar": fixture("posts-ar.json")}) as running:
        yield running


@pytest.fixture
def canned() -> Iterator[LoopbackHttpServer]:
    with LoopbackHttpServer() as running:
        yield running


def source(url: str, *, name: str = "cms", **settings: Any) -> WordPressSource:
    return WordPressSource(
        WordPressSourceSettings(kind="wordpress", name=name, url=url, **settings),
        site_timezone=ZONE,
        default_language="en",
        clock=lambda: NOW,
    )


def fetch(wp: WordPressSource, **state: Any) -> SourceResult:
    return wp.fetch(SourceState(name=wp.name, **state))


def by_id(result: SourceResult) -> dict[str, Any]:
    return {article.id: article for article in result.articles}


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- mapping -----------------------------------------------------------------------------------


def test_posts_become_articles_with_every_field(wordpress: FakeWordPress) -> None:
    result = fetch(source(wordpress.root(), per_page=20))
    assert not result.warnings
    assert len(result.articles) == 7
    budget = by_id(result)["https://news.example.org/?p=4821"]
    assert budget.url == "https://news.example.org/2024/12/02/parliament-passes-2025-budget/"
    assert budget.title == "Parliament passes the 2025 budget after a night\u2019s debate"
    assert (budget.published_at, budget.updated_at) == (utc(2024, 12, 2, 15, 10), utc(2024, 12, 2, 16, 2, 41))
    assert (budget.author, budget.section, budget.language) == ("Lina Haddad", "politics", "en")
    assert budget.image_url == "https://news.example.org/wp-content/uploads/2024/12/parliament-vote.jpg"
    assert budget.image_alt == "Members of parliament raising their hands in the chamber"
    assert budget.image_caption == "Members of parliament vote in Damascus on Monday. Photo: L. Haddad"
    assert (budget.image_type, budget.image_length) == ("image/jpeg", 245812)
    assert budget.summary.startswith("Parliament approved the 2025 budget")
    assert "<h2>What changes</h2>" in budget.content_html
    # a relative link in the body is made absolute against the post's own link
    assert 'href="https://news.example.org/2024/11/28/budget-draft/"' in budget.content_html
    assert budget.source_credit is None
    derby = by_id(result)["https://news.example.org/?p=4815"]
    assert derby.summary == "A late header settled the capital\u2019s derby just before midnight…"  # no "[…]"
    weather = by_id(result)["https://news.example.org/?p=4809"]
    assert weather.section is None and weather.image_url is None  # "Uncategorized", no featured image
    query = wordpress.queries()[0]
    assert query == {"per_page": "20", "page": "1", "_embed": "1", "orderby": "modified", "order": "desc"}
    headers = wordpress.requests[0][1]
    assert headers["accept"] == "application/json" and "authorization" not in headers


def test_naive_gmt_dates_are_read_as_utc_not_site_time(wordpress: FakeWordPress) -> None:
    derby = by_id(fetch(source(wordpress.root())))["https://news.example.org/?p=4815"]
    # date_gmt "2024-12-01T22:30:00" is 01:30 on the 2nd in Damascus; as site time it would be the 1st
    assert derby.published_at == utc(2024, 12, 1, 22, 30)
    assert derby.published_at.astimezone(ZONE).date() == date(2024, 12, 2)


def test_arabic_site_under_a_subdirectory(wordpress: FakeWordPress) -> None:
    result = fetch(source(wordpress.root("/ar"), name="cms-ar", language="ar"))
    articles = by_id(result)
    assert len(articles) == 3 and {a.language for a in articles.values()} == {"ar"}
    budget = articles["https://ar.news.example.org/?p=912"]
    assert budget.title == "البرلمان يقر موازنة 2025 بعد جلسة \u201cماراثونية\u201d"
    assert budget.author == "سارة العلي"
    assert budget.section == "politics"  # the category's Latin slug, not its Arabic name
    assert budget.image_caption == "أعضاء المجلس خلال التصويت"
    assert articles["https://ar.news.example.org/?p=910"].section == "اقتصاد"  # percent-encoded slug decoded


def test_hostile_content_is_sanitized(wordpress: FakeWordPress) -> None:
    festival = by_id(fetch(source(wordpress.root())))["https://news.example.org/?p=4817"]
    body = festival.content_html
    for hostile in ("<script", "<iframe", "<style", "<form", "<input", "onclick", "onerror", "javascript:",
                    "widgets.js", "display:none", "style="):  # fmt: skip
        assert hostile not in body, hostile
    assert "twelve films by directors returning from abroad" in body
    assert '<a href="https://festival.example.org/tickets" rel="noopener">on the festival site</a>' in body
    assert festival.title == "Film festival opens with a \u201chomecoming\u201d programme"
    assert festival.image_type == "image/webp" and festival.image_caption is None


# --- paging and conditional GET ------------------------------------------------------------------


def test_pages_are_followed_until_a_short_page(wordpress: FakeWordPress) -> None:
    wordpress.send_totals = False
    result = fetch(source(wordpress.root(), per_page=3, max_pages=10))
    assert [q["page"] for q in wordpress.queries()] == ["1", "2", "3"]  # 3 + 3 + 1 posts
    assert len(result.articles) == 7


def test_paging_stops_at_total_pages_and_at_max_pages(wordpress: FakeWordPress) -> None:
    wordpress.sites[""] = wordpress.sites[""][:6]  # two full pages of 3: X-WP-TotalPages says 2
    fetch(source(wordpress.root(), per_page=3, max_pages=10))
    assert [q["page"] for q in wordpress.queries()] == ["1", "2"]
    wordpress.requests.clear()
    result = fetch(source(wordpress.root(), per_page=2, max_pages=2))
    assert [q["page"] for q in wordpress.queries()] == ["1", "2"]
    assert len(result.articles) == 4
    newest = sorted(wordpress.sites[""], key=lambda p: p["modified_gmt"], reverse=True)[:4]
    assert {a.id for a in result.articles} == {p["guid"]["rendered"] for p in newest}


def test_page_past_the_end_is_not_an_error(wordpress: FakeWordPress) -> None:
    """Posts unpublished between page 1 and page 2: WordPress answers 400 rest_post_invalid_page_number."""
    wp = source(wordpress.root(), per_page=4, max_pages=3)
    original_answer = wordpress.answer

    def shrink_after_first(target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        answer = original_answer(target, headers)
        wordpress.sites[""] = wordpress.sites[""][:4]
        return answer

    wordpress.answer = shrink_after_first  # type: ignore[method-assign]
    result = fetch(wp)
    assert len(result.articles) == 4 and not result.warnings


def test_unchanged_first_page_is_not_modified(wordpress: FakeWordPress) -> None:
    wp = source(wordpress.root(), per_page=3)
    first = fetch(wp)
    assert first.etag and first.etag.startswith('"')
    wordpress.requests.clear()
    again = fetch(wp, etag=first.etag)
    assert again.not_modified and again.articles == [] and again.etag == first.etag
    assert len(wordpress.requests) == 1 and wordpress.requests[0][1]["if-none-match"] == first.etag
    wordpress.sites[""][3] = {**wordpress.sites[""][3], "modified_gmt": "2024-12-02T19:00:00"}
    changed = fetch(wp, etag=first.etag)
    assert not changed.not_modified and changed.etag != first.etag
    assert changed.articles[0].id == "https://news.example.org/?p=4815"  # the edited post comes first


# --- application passwords ---------------------------------------------------------------------


def test_basic_auth_is_sent_only_when_configured(wordpress: FakeWordPress) -> None:
    fetch(source(wordpress.root(), per_page=3))
    assert all("authorization" not in headers for _, headers in wordpress.requests)
    wordpress.credentials = ("digest-bot", "abcd EFGH ijkl MNOP qrst UVWX")
    wordpress.requests.clear()
    result = fetch(
        source(
            wordpress.root(),
            per_page=3,
            username="digest-bot",
            application_password="abcd EFGH ijkl MNOP qrst UVWX",
        )
    )
    assert len(result.articles) == 7 and len(wordpress.requests) == 3
    assert all(headers["authorization"].startswith("Basic ") for _, headers in wordpress.requests)


def test_login_required_or_wrong_password_names_the_settings(wordpress: FakeWordPress) -> None:
    wordpress.credentials = ("digest-bot", "right password")
    with pytest.raises(SourceError) as missing:
        fetch(source(wordpress.root()))
    assert "sources[cms].username" in missing.value.reason
    assert "sources[cms].application_password" in missing.value.reason and "401" in missing.value.reason
    with pytest.raises(SourceError) as wrong:
        fetch(source(wordpress.root(), username="digest-bot", application_password="wrong secret"))
    assert (
        "incorrect_password" in wrong.value.reason
        and "sources[cms].application_password" in wrong.value.reason
    )
    assert "wrong secret" not in str(wrong.value)


def test_password_is_never_sent_in_clear_to_another_host() -> None:
    wp = source("http://news.example.org", username="bot", application_password="secret")
    with pytest.raises(SourceError) as refused:
        fetch(wp)
    assert "https://" in refused.value.reason and "secret" not in str(refused.value)


# --- broken sites and posts ----------------------------------------------------------------------


def test_rest_no_route_says_the_api_may_be_disabled(canned: LoopbackHttpServer) -> None:
    canned.route(
        POSTS_PATH, wp_json(fixture("error-rest-no-route.json")), status=404, content_type="application/json"
    )
    with pytest.raises(SourceError) as failed:
        fetch(source(canned.url("")))
    assert "rest_no_route" in failed.value.reason and "REST API may be disabled" in failed.value.reason
    assert "sources[cms].url" in failed.value.reason


def test_login_page_instead_of_json(canned: LoopbackHttpServer) -> None:
    login = canned.url("/wp-login.php?redirect_to=%2Fwp-json%2Fwp%2Fv2%2Fposts")
    canned.routes[POSTS_PATH] = Route(b"", 302, {"Location": login})
    canned.route(
        "/wp-login.php",
        '<!DOCTYPE html><html lang="en-US"><head><title>Log In &lsaquo; Levant Today</title></head>'
        '<body class="login"><form name="loginform" id="loginform" action="/wp-login.php" method="post">'
        '<input type="text" name="log"><input type="password" name="pwd"></form></body></html>',
        content_type="text/html; charset=UTF-8",
    )
    with pytest.raises(SourceError) as failed:
        fetch(source(canned.url("/")))
    assert "login page" in failed.value.reason and "sources[cms].username" in failed.value.reason


def test_html_error_page_and_server_errors(canned: LoopbackHttpServer) -> None:
    canned.route(
        POSTS_PATH, "<html><body><h1>Service Unavailable</h1></body></html>", content_type="text/html"
    )
    with pytest.raises(SourceError) as not_json:
        fetch(source(canned.url("")))
    assert "not JSON" in not_json.value.reason and "Service Unavailable" in not_json.value.reason
    canned.route(POSTS_PATH, b'{"code":"internal_server_error","message":"<p>There has been a critical error.</p>"}',
                 status=500, content_type="application/json")  # fmt: skip
    with pytest.raises(SourceError) as crashed:
        fetch(source(canned.url("")))
    assert "HTTP 500" in crashed.value.reason and "There has been a critical error." in crashed.value.reason


def test_plain_permalinks_fall_back_to_rest_route(wordpress: FakeWordPress) -> None:
    wordpress.plain_permalinks = True
    result = fetch(source(wordpress.root() + "/", per_page=3))
    assert len(result.articles) == 7
    assert [q.get("rest_route") for q in wordpress.queries()] == [
        None,
        "/wp/v2/posts",
        "/wp/v2/posts",
        "/wp/v2/posts",
    ]
    wordpress.credentials = ("digest-bot", "secret")  # found through ?rest_route=, but it wants a login
    with pytest.raises(SourceError) as refused:
        fetch(source(wordpress.root()))
    assert "rest_not_logged_in" in refused.value.reason and "sources[cms].username" in refused.value.reason


def test_a_site_without_the_api(canned: LoopbackHttpServer) -> None:
    with pytest.raises(SourceError) as failed:
        fetch(source(canned.url("/blog")))
    assert "no WordPress REST API" in failed.value.reason and "sources[cms].url" in failed.value.reason


def test_one_broken_post_is_skipped_with_a_warning(wordpress: FakeWordPress) -> None:
    wordpress.sites["/odd"] = fixture("posts-broken.json")
    result = fetch(source(wordpress.root("/odd")))
    assert [a.id for a in result.articles] == ["https://news.example.org/?p=4819"]
    assert len(result.warnings) == 1 and "post 4830" in result.warnings[0] and "skipped" in result.warnings[0]


def test_password_protected_and_non_object_posts_are_skipped(wordpress: FakeWordPress) -> None:
    protected = copy.deepcopy(wordpress.sites[""][0])
    protected["content"] = {"rendered": "", "protected": True}
    wordpress.sites["/odd"] = [protected, "not a post", wordpress.sites[""][1]]  # type: ignore[list-item]
    result = fetch(source(wordpress.root("/odd")))
    assert len(result.articles) == 1 and len(result.warnings) == 2
    assert any("password-protected" in w for w in result.warnings)
    assert any("not a JSON object" in w for w in result.warnings)


def test_timeout_and_refused_connection(canned: LoopbackHttpServer) -> None:
    canned.route(POSTS_PATH, b"[]", content_type="application/json", hold=True)
    with pytest.raises(SourceError) as slow:
        fetch(source(canned.url(""), timeout=0.3))
    assert canned.completed == {}, "the client gave up before the held answer"
    assert "within 0.3 s" in slow.value.reason and "sources[cms].timeout" in slow.value.reason
    with pytest.raises(SourceError) as refused:
        fetch(source(refused_url("")))
    assert "cannot connect" in refused.value.reason and "sources[cms].url" in refused.value.reason


def test_build_source_and_an_api_url_pasted_as_the_root(wordpress: FakeWordPress) -> None:
    settings = WordPressSourceSettings(kind="wordpress", name="cms", url=wordpress.root() + POSTS_PATH)
    built = build_source(settings, site_base_url="https://news.example.org", site_timezone="Asia/Damascus",
                         default_language="en")  # fmt: skip
    assert isinstance(built, WordPressSource)
    assert built.posts_url(2).startswith(wordpress.root() + POSTS_PATH + "?per_page=20&page=2&")
    assert len(built.fetch(SourceState(name="cms")).articles) == 7


# --- through the pipeline ------------------------------------------------------------------------


def test_wordpress_posts_reach_the_days_digests(wordpress: FakeWordPress, tmp_path: Path) -> None:
    sources = (
        f"  - kind: wordpress\n    name: cms\n    url: {wordpress.root()}\n    language: en\n"
        f"  - kind: wordpress\n    name: cms-ar\n    url: {wordpress.root('/ar')}\n    language: ar\n"
    )
    config = load_config(
        write_config(tmp_path, store_url=f"sqlite:///{tmp_path / 'store.db'}", sources=sources)
    )
    store = Store.open(config.store_url)
    try:
        store.subscribers.upsert("reader@example.org", name="Reader", language="en")
        store.subscribers.upsert("qari@example.org", name="قارئ", language="ar")
        report = collect(config, store)
        assert not report.errors, report.errors
        transport = InMemoryTransport()
        outcomes = run_digests(config, store, date(2024, 12, 2), transport=transport)
        # Dec 2 in Damascus: 4 English posts (the derby at 01:30 local included), 3 Arabic ones
        assert {o.edition: o.articles for o in outcomes} == {"en": 4, "ar": 3}
        messages = {
            m.recipient: message_from_bytes(m.data, policy=policy.default) for m in transport.accepted
        }
        assert sorted(messages) == ["qari@example.org", "reader@example.org"]
        english, arabic = (_html(messages["reader@example.org"]), _html(messages["qari@example.org"]))
        for title in (
            "Parliament passes the 2025 budget",
            "Al-Wahda win the derby",
            "Central bank holds rates",
        ):
            assert title in english
        assert "Talks resume in Geneva" not in english  # the day before
        assert "<script" not in english and "widgets.js" not in english
        assert "المصرف المركزي يثبّت سعر الفائدة" in arabic
    finally:
        store.close()


def _html(message: Any) -> str:
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())
