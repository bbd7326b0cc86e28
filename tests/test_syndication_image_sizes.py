"""Enclosure lengths from the real image size: a HEAD request at publish time, remembered in a cache
file; failures are logged, leave the length unknown (Atom and JSON omit it, RSS writes 0) and are
retried a day later. Images are served by a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import feedparser
import pytest

from publisher.config import load_config
from publisher.pipeline import collect, publish_feeds
from publisher.pipeline.feeds import IMAGE_SIZES_FILE
from publisher.pipeline.image_sizes import ImageSizes
from publisher.store import Store
from tests.test_syndication_formats import feeds_config

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 48_209  # 48,213 bytes


@dataclass
class ImageServer:
    url: str = ""
    heads: list[str] = field(default_factory=list)
    hang: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def images() -> Iterator[ImageServer]:
    state = ImageServer()

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
            state.heads.append(self.path)
            path = self.path.split("?")[0]
            if path == "/slow.jpg":
                state.hang.wait(5)
            if path in ("/photo.jpg", "/moved.jpg"):
                if path == "/moved.jpg":
                    self.send_response(301)
                    self.send_header("Location", "/photo.jpg")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(JPEG)))
                self.end_headers()
                return
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.hang.set()
        server.shutdown()
        server.server_close()


def article(directory: Path, name: str, image: str, hour: int) -> None:
    (directory / f"{name}.md").write_text(
        f"---\ntitle: {name.title()} story\ndate: 2024-12-02 {hour:02d}:00\nlanguage: en\nsection: culture\n"
        f"image: {image}\nsummary: About {name}.\n---\nThe {name} story.\n",
        encoding="utf-8",
    )


def test_publish_writes_the_measured_length_and_asks_each_image_once(
    tmp_path: Path, images: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    articles = tmp_path / "articles"
    articles.mkdir()
    article(articles, "photo", f"{images.url}/photo.jpg", 9)
    article(articles, "moved", f"{images.url}/moved.jpg", 8)
    article(articles, "missing", f"{images.url}/missing.jpg", 7)
    sources = f"  - kind: files\n    name: desk\n    path: {articles}\n"
    config = load_config(feeds_config(tmp_path, "formats: [atom, rss, json]\nmeasure_images: true", sources=sources))
    store = Store.open(config.store_url)
    try:
        collect(config, store)
        assert publish_feeds(config, store).errors == []
        directory = config.path(config.feeds.directory)
        atom = feedparser.parse((directory / "en.atom.xml").read_bytes())
        rss = feedparser.parse((directory / "en.rss.xml").read_bytes())
        document = json.loads((directory / "en.json").read_bytes())
        by_title = {e.title: e for e in atom.entries}
        assert by_title["Photo story"].enclosures[0].length == "48213"
        assert by_title["Moved story"].enclosures[0].length == "48213"  # the redirect was followed
        assert "length" not in by_title["Missing story"].enclosures[0]  # unknown: left out of Atom
        assert [e.enclosures[0].length for e in rss.entries] == ["48213", "48213", "0"]  # RSS: 0 when unknown
        sizes = [item["attachments"][0].get("size_in_bytes") for item in document["items"]]
        assert sizes == [48213, 48213, None]
        assert sorted(images.heads) == ["/missing.jpg", "/moved.jpg", "/photo.jpg", "/photo.jpg"]
        assert any("missing.jpg" in r.getMessage() and "HTTPError" in r.getMessage() for r in caplog.records)
        cache = json.loads((directory / IMAGE_SIZES_FILE).read_text(encoding="utf-8"))
        assert cache[f"{images.url}/photo.jpg"] == {"length": 48213}

        before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
        report = publish_feeds(config, store)
        assert len(images.heads) == 4  # measured once: the cache answers, the failure waits a day
        assert not [p for p in report.published if p.changed]
        assert {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()} == before
    finally:
        store.close()


def test_nothing_is_measured_unless_asked(tmp_path: Path, images: ImageServer) -> None:
    articles = tmp_path / "articles"
    articles.mkdir()
    article(articles, "photo", f"{images.url}/photo.jpg", 9)
    sources = f"  - kind: files\n    name: desk\n    path: {articles}\n"
    config = load_config(feeds_config(tmp_path, "formats: [atom]", sources=sources))
    assert config.feeds.measure_images is False
    store = Store.open(config.store_url)
    try:
        collect(config, store)
        publish_feeds(config, store)
    finally:
        store.close()
    assert images.heads == []
    assert not (config.path(config.feeds.directory) / ".cache").exists()


def test_failures_are_retried_after_a_day_and_hangs_end_at_the_timeout(
    tmp_path: Path, images: ImageServer
) -> None:
    now = [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]
    path = tmp_path / "sizes.json"
    sizes = ImageSizes(path, timeout=0.2, clock=lambda: now[0])
    urls = [f"{images.url}/slow.jpg", f"{images.url}/missing.jpg", "ftp://example.invalid/x.jpg"]
    assert sizes.lengths(urls) == {}
    assert sorted(images.heads) == ["/missing.jpg", "/slow.jpg"]  # only http(s) is asked
    assert "Timeout" in json.loads(path.read_text())[urls[0]]["error"]
    again = ImageSizes(path, timeout=0.2, clock=lambda: now[0] + timedelta(hours=23))
    assert again.lengths(urls) == {} and len(images.heads) == 2
    images.hang.set()
    later = ImageSizes(path, timeout=0.2, clock=lambda: now[0] + timedelta(days=1))
    assert later.lengths(urls) == {} and len(images.heads) == 4


def test_a_run_measures_at_most_its_budget(tmp_path: Path, images: ImageServer) -> None:
    sizes = ImageSizes(tmp_path / "sizes.json", timeout=2, max_requests=2)
    urls = [f"{images.url}/photo.jpg?n={n}" for n in range(5)]
    assert len(sizes.lengths(urls)) == 2
    assert len(ImageSizes(tmp_path / "sizes.json", timeout=2, max_requests=2).lengths(urls)) == 4
    assert len(images.heads) == 4


def test_an_unreadable_cache_starts_afresh(tmp_path: Path, images: ImageServer) -> None:
    (tmp_path / "sizes.json").write_text("{not json", encoding="utf-8")
    sizes = ImageSizes(tmp_path / "sizes.json", timeout=2)
    assert sizes.lengths([f"{images.url}/photo.jpg"]) == {f"{images.url}/photo.jpg": 48213}
    assert json.loads((tmp_path / "sizes.json").read_text())[f"{images.url}/photo.jpg"] == {"length": 48213}
