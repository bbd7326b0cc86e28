"""Feed publishing: atomic writes that skip unchanged files, and WebSub pings to real local hubs."""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests

from publisher.delivery.feeds import (
    DirectoryPublisher,
    PublishedFeed,
    WebSubPinger,
    changed_topics,
)
from publisher.errors import PermanentDeliveryError, TemporaryDeliveryError
from publisher.models import FeedFile

ATOM = FeedFile(name="en.atom.xml", content=b"<feed>one</feed>\n", media_type="application/atom+xml")
RSS = FeedFile(name="en.rss.xml", content=b"<rss>one</rss>\n", media_type="application/rss+xml")
AN_HOUR_AGO = time.time_ns() - 3_600_000_000_000


# --- DirectoryPublisher -------------------------------------------------------------------------


def test_publish_writes_every_file_readable_by_a_web_server(tmp_path: Path) -> None:
    directory = tmp_path / "var" / "feeds"  # created on first use
    published = DirectoryPublisher(directory).publish([ATOM, RSS])
    assert published == [
        PublishedFeed(name="en.atom.xml", path=directory / "en.atom.xml", changed=True),
        PublishedFeed(name="en.rss.xml", path=directory / "en.rss.xml", changed=True),
    ]
    assert (directory / "en.atom.xml").read_bytes() == ATOM.content
    assert (directory / "en.rss.xml").read_bytes() == RSS.content
    assert stat.S_IMODE((directory / "en.atom.xml").stat().st_mode) == 0o644
    assert sorted(p.name for p in directory.iterdir()) == ["en.atom.xml", "en.rss.xml"]  # no leftovers


def test_identical_bytes_are_not_rewritten(tmp_path: Path) -> None:
    publisher = DirectoryPublisher(tmp_path)
    publisher.publish([ATOM, RSS])
    for name in ("en.atom.xml", "en.rss.xml"):
        os.utime(tmp_path / name, ns=(AN_HOUR_AGO, AN_HOUR_AGO))
    inode = (tmp_path / "en.atom.xml").stat().st_ino

    again = publisher.publish([ATOM, RSS])

    assert [p.changed for p in again] == [False, False]
    assert (tmp_path / "en.atom.xml").stat().st_mtime_ns == AN_HOUR_AGO
    assert (tmp_path / "en.rss.xml").stat().st_mtime_ns == AN_HOUR_AGO
    assert (tmp_path / "en.atom.xml").stat().st_ino == inode


def test_changed_bytes_replace_the_file_as_a_whole(tmp_path: Path) -> None:
    publisher = DirectoryPublisher(tmp_path)
    publisher.publish([ATOM, RSS])
    os.utime(tmp_path / "en.atom.xml", ns=(AN_HOUR_AGO, AN_HOUR_AGO))
    inode = (tmp_path / "en.atom.xml").stat().st_ino
    with (tmp_path / "en.atom.xml").open("rb") as reader_holding_the_old_file:
        newer = FeedFile(name=ATOM.name, content=b"<feed>two</feed>\n", media_type=ATOM.media_type)
        published = publisher.publish([newer, RSS])
        # a reader that opened the old file still reads all of it: the new one is a new inode
        assert reader_holding_the_old_file.read() == ATOM.content
    assert [p.changed for p in published] == [True, False]
    assert (tmp_path / "en.atom.xml").read_bytes() == b"<feed>two</feed>\n"
    assert (tmp_path / "en.atom.xml").stat().st_ino != inode
    assert (tmp_path / "en.atom.xml").stat().st_mtime_ns > AN_HOUR_AGO


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher = DirectoryPublisher(tmp_path)
    publisher.publish([ATOM])

    def disk_full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    newer = FeedFile(name=ATOM.name, content=b"<feed>two</feed>\n", media_type=ATOM.media_type)
    with pytest.raises(TemporaryDeliveryError, match="en.atom.xml.*free disk space"):
        publisher.publish([newer])
    assert (tmp_path / "en.atom.xml").read_bytes() == ATOM.content
    assert [p.name for p in tmp_path.iterdir()] == ["en.atom.xml"]


def test_a_directory_it_may_not_write_is_a_permanent_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*_args: object, **_kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(PermanentDeliveryError, match="feeds.directory writable"):
        DirectoryPublisher(tmp_path).publish([ATOM])


@pytest.mark.parametrize(
    "name", ["../en.atom.xml", "a/b/en.atom.xml", "/en.atom.xml", "en/../x.xml", "en/.hidden.xml", "", ".hidden.xml"]
)
def test_names_that_leave_the_directory_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(PermanentDeliveryError, match="plain file name"):
        DirectoryPublisher(tmp_path / "feeds").publish([FeedFile(name, b"x", "application/atom+xml")])
    assert not (tmp_path / "en.atom.xml").exists()


def test_a_section_feed_goes_into_its_language_folder(tmp_path: Path) -> None:
    section = FeedFile(name="en/politics.atom.xml", content=b"<feed>p</feed>\n", media_type="application/atom+xml")
    [published] = DirectoryPublisher(tmp_path / "feeds").publish([section])
    assert published == PublishedFeed("en/politics.atom.xml", tmp_path / "feeds" / "en" / "politics.atom.xml", True)
    assert (tmp_path / "feeds" / "en" / "politics.atom.xml").read_bytes() == section.content
    assert [p.changed for p in DirectoryPublisher(tmp_path / "feeds").publish([section])] == [False]
    assert sorted(p.name for p in (tmp_path / "feeds" / "en").iterdir()) == ["politics.atom.xml"]


def test_changed_topics_are_the_public_urls_of_changed_feeds(tmp_path: Path) -> None:
    published = [
        PublishedFeed("en.atom.xml", tmp_path / "en.atom.xml", changed=True),
        PublishedFeed("en.rss.xml", tmp_path / "en.rss.xml", changed=False),
    ]
    assert changed_topics(published, "https://news.example.org/feeds/") == [
        "https://news.example.org/feeds/en.atom.xml"
    ]


# --- WebSubPinger against real hubs on 127.0.0.1 ------------------------------------------------


@dataclass
class Hub:
    url: str
    requests: list[dict[str, object]] = field(default_factory=list)
    answered: int = 0  # answers written to the end
    release: threading.Event = field(default_factory=threading.Event)  # a holding hub answers once set


def _serve(status: int, hold: bool = False, location: str | None = None) -> Iterator[Hub]:
    hub = Hub(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hub.requests.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "user_agent": self.headers.get("User-Agent"),
                    "form": parse_qs(body.decode("ascii"), strict_parsing=True),
                }
            )
            if hold:
                hub.release.wait(60)  # a bound, so a broken test cannot hang for ever
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            payload = b"" if status < 300 else b"hub says no"
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                self.wfile.write(payload)
                self.wfile.flush()
                hub.answered += 1
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}/hub"
    try:
        yield hub
    finally:
        hub.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def accepting_hub() -> Iterator[Hub]:
    yield from _serve(204)


@pytest.fixture
def failing_hub() -> Iterator[Hub]:
    yield from _serve(500)


@pytest.fixture
def redirecting_hub() -> Iterator[Hub]:
    yield from _serve(302, location="http://127.0.0.1:9/elsewhere")


@pytest.fixture
def slow_hub() -> Iterator[Hub]:
    yield from _serve(204, hold=True)


@pytest.fixture
def closed_port_url() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hub"


TOPICS = ["https://news.example.org/feeds/en.atom.xml", "https://news.example.org/feeds/en.rss.xml"]


def test_each_hub_is_told_of_each_topic_with_the_publish_form(accepting_hub: Hub) -> None:
    results = WebSubPinger([accepting_hub.url], timeout=5).ping(TOPICS)
    assert [(r.hub, r.topic, r.ok, r.status, r.error) for r in results] == [
        (accepting_hub.url, TOPICS[0], True, 204, None),
        (accepting_hub.url, TOPICS[1], True, 204, None),
    ]
    assert [r["form"] for r in accepting_hub.requests] == [
        {"hub.mode": ["publish"], "hub.url": [TOPICS[0]], "hub.topic": [TOPICS[0]]},
        {"hub.mode": ["publish"], "hub.url": [TOPICS[1]], "hub.topic": [TOPICS[1]]},
    ]
    assert {r["content_type"] for r in accepting_hub.requests} == {"application/x-www-form-urlencoded"}
    assert {r["path"] for r in accepting_hub.requests} == {"/hub"}


def test_failures_are_reported_not_raised(
    accepting_hub: Hub, failing_hub: Hub, closed_port_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    hubs = [failing_hub.url, closed_port_url, accepting_hub.url]
    results = WebSubPinger(hubs, timeout=2).ping(TOPICS[:1])
    by_hub = {r.hub: r for r in results}
    assert by_hub[failing_hub.url].ok is False
    assert by_hub[failing_hub.url].status == 500
    assert by_hub[failing_hub.url].error == "HTTP 500: hub says no"
    assert by_hub[closed_port_url].ok is False
    assert by_hub[closed_port_url].status is None
    assert "ConnectionError" in (by_hub[closed_port_url].error or "")
    assert by_hub[accepting_hub.url].ok is True  # one bad hub does not stop the others
    assert len(accepting_hub.requests) == 1
    assert (
        sum("WebSub hub" in record.getMessage() for record in caplog.records if record.levelname == "WARNING")
        == 2
    )


def test_a_hub_that_does_not_answer_is_given_up_after_the_timeout(slow_hub: Hub) -> None:
    # the hub holds its answer until released: only the pinger's own timeout can end the wait
    [result] = WebSubPinger([slow_hub.url], timeout=0.3).ping(TOPICS[:1])
    assert result.ok is False
    assert "Timeout" in (result.error or "")
    assert slow_hub.answered == 0, "given up before any answer"


def test_a_redirect_is_not_taken_as_acceptance(redirecting_hub: Hub) -> None:
    [result] = WebSubPinger([redirecting_hub.url], timeout=2).ping(TOPICS[:1])
    assert (result.ok, result.status) == (False, 302)
    assert "http://127.0.0.1:9/elsewhere" in (result.error or "")


def test_nothing_changed_or_no_hubs_sends_nothing(accepting_hub: Hub) -> None:
    assert WebSubPinger([accepting_hub.url], timeout=2).ping([]) == []
    assert WebSubPinger([], timeout=2).ping(TOPICS) == []
    assert accepting_hub.requests == []


def test_a_given_session_is_used_and_left_open(accepting_hub: Hub) -> None:
    with requests.Session() as session:
        session.headers["User-Agent"] = "publisher-test"
        WebSubPinger([accepting_hub.url], timeout=2, session=session).ping(TOPICS[:1])
        WebSubPinger([accepting_hub.url], timeout=2, session=session).ping(TOPICS[1:])
    assert [r["user_agent"] for r in accepting_hub.requests] == ["publisher-test", "publisher-test"]


def test_a_timeout_is_required() -> None:
    with pytest.raises(ValueError, match="timeout"):
        WebSubPinger(["http://127.0.0.1:1/"], timeout=0)
