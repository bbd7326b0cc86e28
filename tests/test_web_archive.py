"""The web face, part 3: the archive, served feeds (validators, 304, traversal), /healthz, and the
server thread on a real socket."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from datetime import date
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from publisher.pipeline import collect
from publisher.pipeline.digest import render_digest, select_digest
from publisher.store import Store
from publisher.web import create_app
from publisher.web.server import WebServer
from tests.test_web import PUBLIC, Harness, TestClient, web  # noqa: F401

DAY = date(2024, 12, 2)


def publish_digests(web: Harness) -> None:  # noqa: F811
    """Select and render (not send) the sample day's digests, as the pipeline stores them."""
    collect(web.config, web.store)
    for edition in web.config.editions:
        render_digest(web.config, web.store, select_digest(web.config, web.store, edition, DAY))


# --- archive -------------------------------------------------------------------------------------


def test_archive_pages_show_each_digest_without_personal_data(web: Harness) -> None:  # noqa: F811
    publish_digests(web)
    index = web.client.get("/archive/")
    assert index.status_code == 200
    assert 'href="/archive/en/2024-12-02"' in index.text and 'href="/archive/ar/2024-12-02"' in index.text
    assert 'rel="alternate" type="application/atom+xml"' in index.text
    for edition, direction in (("en", "ltr"), ("ar", "rtl")):
        page = web.client.get(f"/archive/{edition}/2024-12-02")
        assert page.status_code == 200, edition
        html = page.text
        assert "PUBSLOT" not in html  # every per-recipient slot was filled
        assert f'lang="{edition}"' in html and f'dir="{direction}"' in html
        assert f"{PUBLIC}/subscribe?lang={edition}" in html  # unsubscribe/preferences lead to the form
        assert "/unsubscribe/" not in html and "/preferences/" not in html
        head = html[: html.lower().index("</head>")]
        assert '<link rel="alternate" type="application/atom+xml"' in head
        assert f'href="http://127.0.0.1:8080/feeds/{edition}.atom.xml"' in head
        assert f'href="http://127.0.0.1:8080/feeds/{edition}.rss.xml"' in head
        assert "script-src" not in page.headers["content-security-policy"]
        assert page.headers["cache-control"].startswith("public")
        record = web.store.digests.find(edition, DAY)
        assert record is not None and record.rendered is not None
        assert record.rendered.subject in html or record.rendered.subject.replace("'", "&#39;") in html


@pytest.mark.parametrize("path", [
    "/archive/en/2024-12-03", "/archive/fr/2024-12-02", "/archive/en/2024-13-02", "/archive/en/yesterday",
    "/archive/en/2024-12-02x", "/archive/%3Cscript%3E/2024-12-02",
])
def test_archive_answers_404_for_what_does_not_exist(web: Harness, path: str) -> None:  # noqa: F811
    publish_digests(web)
    page = web.client.get(path)
    assert page.status_code == 404 and "Page not found" in page.text and "<script>" not in page.text


def test_an_empty_archive_says_so(web: Harness) -> None:  # noqa: F811
    page = web.client.get("/archive/?lang=ar")
    assert page.status_code == 200 and "لم يُنشر أي عدد بعد" in page.text and 'dir="rtl"' in page.text


# --- feeds ---------------------------------------------------------------------------------------


@pytest.fixture
def feeds(web: Harness) -> Path:  # noqa: F811
    directory = web.config.path(web.config.feeds.directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "en.atom.xml").write_bytes(b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"/>')
    (directory / "en.rss.xml").write_bytes(b'<?xml version="1.0"?><rss version="2.0"/>')
    (directory / ".en.atom.xml.tmp").write_bytes(b"half written")
    (web.path.parent / "secret.atom.xml").write_bytes(b"outside the feeds directory")
    os.symlink(web.path.parent / "secret.atom.xml", directory / "link.atom.xml")
    return directory


def test_feeds_are_served_with_their_media_types_and_validators(web: Harness, feeds: Path) -> None:  # noqa: F811
    atom = web.client.get("/feeds/en.atom.xml")
    assert atom.status_code == 200 and atom.content == (feeds / "en.atom.xml").read_bytes()
    assert atom.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert web.client.get("/feeds/en.rss.xml").headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert atom.headers["etag"].startswith('"') and atom.headers["last-modified"].endswith("GMT")
    modified = parsedate_to_datetime(atom.headers["last-modified"])
    assert abs(modified.timestamp() - (feeds / "en.atom.xml").stat().st_mtime) < 1
    head = web.client.head("/feeds/en.atom.xml")
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == atom.headers["etag"]


def test_conditional_feed_requests_get_304_until_the_feed_changes(web: Harness, feeds: Path) -> None:  # noqa: F811
    first = web.client.get("/feeds/en.atom.xml")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"other", W/{etag}'}, {"If-None-Match": "*"},
                    {"If-Modified-Since": last_modified}):
        answer = web.client.get("/feeds/en.atom.xml", headers=headers)
        assert answer.status_code == 304 and answer.content == b"", headers
        assert answer.headers["etag"] == etag
    # If-None-Match decides when both are sent (RFC 9110): a stale ETag means 200 even if not modified
    assert web.client.get("/feeds/en.atom.xml", headers={"If-None-Match": '"stale"',
                                                         "If-Modified-Since": last_modified}).status_code == 200
    earlier = format_datetime(parsedate_to_datetime(last_modified).replace(year=2000), usegmt=True)
    assert web.client.get("/feeds/en.atom.xml", headers={"If-Modified-Since": earlier}).status_code == 200
    assert web.client.get("/feeds/en.atom.xml", headers={"If-Modified-Since": "not a date"}).status_code == 200
    feed = feeds / "en.atom.xml"
    before = feed.stat().st_mtime_ns
    feed.write_bytes(b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><id>2</id></feed>')
    os.utime(feed, ns=(before + 10**9, before + 10**9))  # a later mtime, whatever the clock's resolution
    changed = web.client.get("/feeds/en.atom.xml", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


@pytest.mark.parametrize("name", [
    "..%2Fconfig.yaml", "..%2F..%2Fetc%2Fpasswd", "%2E%2E%2Fsecret.atom.xml", ".en.atom.xml.tmp", "link.atom.xml",
    "missing.atom.xml", "en.atom.xml%00.txt", "config.yaml", "%2e%2e", "%2E%2E%2F%2E%2E%2Fconfig.yaml",
])
def test_feeds_cannot_reach_outside_their_directory(web: Harness, feeds: Path, name: str) -> None:  # noqa: F811
    answer = web.client.get(f"/feeds/{name}")
    assert answer.status_code == 404, name
    assert b"outside the feeds directory" not in answer.content and b"secret" not in answer.content
    assert b"site:" not in answer.content


# --- health --------------------------------------------------------------------------------------


def test_healthz_reports_the_store_and_recent_digests(web: Harness) -> None:  # noqa: F811
    publish_digests(web)
    answer = web.client.get("/healthz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["ok"] is True and body["store"] == "ok"
    assert {(d["edition"], d["day"], d["status"]) for d in body["digests"]} == {
        ("en", "2024-12-02", "rendered"), ("ar", "2024-12-02", "rendered")
    }
    assert body["jobs"] == [] and body["last_run"] is None


def test_healthz_answers_503_when_the_store_is_unreachable(web: Harness, tmp_path: Path) -> None:  # noqa: F811
    broken = Store(create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'store.db'}"))
    client = TestClient(create_app(lambda: web.config, broken), base_url=PUBLIC)
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json() == {"ok": False, "store": "unreachable"}


# --- the server thread ---------------------------------------------------------------------------


def test_the_server_listens_on_an_ephemeral_port_and_stops(web: Harness) -> None:  # noqa: F811
    server = WebServer(create_app(lambda: web.config, web.store), "127.0.0.1", 0).start()
    try:
        assert server.port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as response:
            assert response.status == 200 and json.loads(response.read())["store"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/subscribe?lang=ar", timeout=5) as response:
            assert '<html lang="ar" dir="rtl">' in response.read().decode()
    finally:
        server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_a_taken_port_is_reported(web: Harness) -> None:  # noqa: F811
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        with pytest.raises(OSError, match="web.port"):
            WebServer(create_app(lambda: web.config, web.store), "127.0.0.1", holder.getsockname()[1]).start()
    finally:
        holder.close()
