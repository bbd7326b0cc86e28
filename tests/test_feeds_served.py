"""Feeds served like a CDN serves them: gzip or brotli as the client asks (with Vary and an ETag per
coding), 304 across codings, and WebSub discovery in Link headers. Files come from publish_feeds."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import brotli
import feedparser
import pytest

from publisher.config import Config, load_config
from publisher.pipeline import collect, publish_feeds
from publisher.store import Store
from publisher.web import create_app
from publisher.web.feeds import choose_encoding
from tests.test_syndication_formats import feeds_config
from tests.test_web import TestClient

HUB = "http://127.0.0.1:9/hub"  # never reached here: the ping's failure is reported, not raised


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    config: Config = load_config(
        feeds_config(tmp_path, f"formats: [atom, rss, json]\nmeasure_images: false\nwebsub_hubs: [{HUB}]")
    )
    store = Store.open(config.store_url)
    try:
        collect(config, store)
        report = publish_feeds(config, store)
        assert report.errors and all(e.startswith(f"WebSub hub {HUB}") for e in report.errors)
        with TestClient(create_app(lambda: config, store), base_url="http://127.0.0.1:8080") as client:
            yield client, config.path(config.feeds.directory)
    finally:
        store.close()


def raw(client: TestClient, path: str, accept: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    with client.stream("GET", path, headers={"Accept-Encoding": accept, **headers}) as response:
        body = b"".join(response.iter_raw())
        return response.status_code, dict(response.headers), body


@pytest.mark.parametrize("name", ["ar.atom.xml", "en.rss.xml", "ar.json"])
def test_gzip_and_brotli_answers_decompress_to_the_file(served: tuple[TestClient, Path], name: str) -> None:
    client, directory = served
    original = (directory / name).read_bytes()
    status, headers, body = raw(client, f"/feeds/{name}", "gzip")
    assert status == 200 and headers["content-encoding"] == "gzip" and gzip.decompress(body) == original
    assert len(body) < len(original) / 2
    status, br_headers, br_body = raw(client, f"/feeds/{name}", "gzip, deflate, br")
    assert br_headers["content-encoding"] == "br" and brotli.decompress(br_body) == original
    status, plain_headers, plain = raw(client, f"/feeds/{name}", "identity")
    assert "content-encoding" not in plain_headers and plain == original
    assert {headers["vary"], br_headers["vary"], plain_headers["vary"]} == {"Accept-Encoding"}
    etags = {headers["etag"], br_headers["etag"], plain_headers["etag"]}
    assert len(etags) == 3  # one per representation
    assert headers["content-type"] == plain_headers["content-type"]
    assert feedparser.parse(gzip.decompress(body)).entries or name.endswith(".json")


def test_compressed_bodies_are_the_same_bytes_every_time(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    first = raw(client, "/feeds/en.atom.xml", "gzip")
    second = raw(client, "/feeds/en.atom.xml", "gzip")
    assert first[2] == second[2] and first[1]["etag"] == second[1]["etag"]


def test_a_cached_copy_in_any_coding_gets_304(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    _, gz, _ = raw(client, "/feeds/en.atom.xml", "gzip")
    _, plain, _ = raw(client, "/feeds/en.atom.xml", "identity")
    status, headers, body = raw(client, "/feeds/en.atom.xml", "br", **{"If-None-Match": gz["etag"]})
    assert (status, body) == (304, b"") and headers["etag"].endswith('-br"')
    status, _, _ = raw(client, "/feeds/en.atom.xml", "gzip", **{"If-None-Match": plain["etag"]})
    assert status == 304
    status, _, _ = raw(client, "/feeds/en.atom.xml", "gzip", **{"If-None-Match": '"something-else-gzip"'})
    assert status == 200


def test_head_tells_the_length_of_what_get_would_send(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    _, _, body = raw(client, "/feeds/ar.atom.xml", "gzip")
    head = client.head("/feeds/ar.atom.xml", headers={"Accept-Encoding": "gzip"})
    assert head.status_code == 200 and head.headers["content-length"] == str(len(body))
    assert head.headers["content-encoding"] == "gzip"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None), ("", None), ("identity", None), ("gzip", "gzip"), ("br", "br"), ("gzip, br", "br"),
        ("br;q=0.5, gzip", "gzip"), ("br;q=0, gzip;q=0", None), ("*", "br"), ("*;q=0.2, gzip;q=0.1", "br"),
        ("deflate", None), ("GZIP", "gzip"), ("br;q=bogus, gzip", "gzip"),
    ],
)
def test_accept_encoding_is_negotiated_by_weight(header: str | None, expected: str | None) -> None:
    assert choose_encoding(header) == expected


@pytest.mark.parametrize("name", ["en.atom.xml", "en.rss.xml", "en.json"])
def test_feeds_announce_their_hub_and_self_in_link_headers(served: tuple[TestClient, Path], name: str) -> None:
    client, _ = served
    answer = client.get(f"/feeds/{name}")
    links = {link["rel"]: link["url"] for link in answer.links.values()}
    assert links == {"hub": HUB, "self": f"http://127.0.0.1:8080/feeds/{name}"}
    not_modified = client.get(f"/feeds/{name}", headers={"If-None-Match": answer.headers["etag"]})
    assert not_modified.status_code == 304 and not_modified.headers["link"] == answer.headers["link"]


def test_archive_documents_announce_no_hub(served: tuple[TestClient, Path]) -> None:
    client, directory = served
    (directory / "en.archive").mkdir()
    (directory / "en.archive" / "1.atom.xml").write_bytes((directory / "en.atom.xml").read_bytes())
    answer = client.get("/feeds/en.archive/1.atom.xml")
    assert answer.status_code == 200
    assert {link["rel"]: link["url"] for link in answer.links.values()} == {
        "self": "http://127.0.0.1:8080/feeds/en.archive/1.atom.xml"
    }
