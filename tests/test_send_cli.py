"""`publisher run` says when it did not finish: exit codes, deferred deliveries, signals, literal names.

The command runs as a subprocess against a real SMTP server on 127.0.0.1; signals are sent once the
run is known (by an event from the server it talks to) to be at the point under test.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from publisher.cli.common import handles_errors
from publisher.errors import PublisherError
from publisher.store import Store
from tests.conftest import REPO
from tests.support.send_world import Recipients, add_subscribers, make_config
from tests.support.smtp import ReceivedMessage, RecordingSmtpServer

PUBLISHER = [sys.executable, "-m", "publisher"]
RUN = [*PUBLISHER, "run", "--date", "2024-12-02", "--config", "config.yaml"]
WAIT = 60.0  # upper bound on any wait for the other side; never a measurement

FEED = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Wire</title><link>https://wire.example.net/</link><language>en</language>
<item><title>Wire report</title><link>https://wire.example.net/a</link><guid>wire-a</guid>
<pubDate>Mon, 02 Dec 2024 09:30:00 +0000</pubDate><category>politics</category><description>Text</description>
</item></channel></rss>"""


def run(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(RUN, cwd=cwd, capture_output=True, text=True, timeout=180)


def world(tmp_path: Path, port: int, emails: list[str], ar: list[str] = (), **kwargs: str) -> None:  # type: ignore[assignment]
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", port, **kwargs)
    store = Store.open(config.store_url)
    add_subscribers(store, emails)
    add_subscribers(store, ar, language="ar")
    store.close()


def test_a_deferred_delivery_exits_75_with_a_warning_and_the_next_attempt(tmp_path: Path) -> None:
    seen = Recipients()
    emails = ["a@one.example.org", "b@two.example.org", "c@three.example.org"]
    replies = {"b@two.example.org": "451 4.7.1 Greylisted, please try again later"}
    with RecordingSmtpServer(replies=replies, on_message=seen, keep_messages=False) as server:
        world(tmp_path, server.port, emails, retry="first_delay: 120")
        result = run(tmp_path)
    assert result.returncode == 75, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "en: 1 of 3 deliveries not done yet, deferred because: 451 4.7.1 Greylisted" in out
    assert re.search(r"Next attempt due at 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in (1\d\d s|2 min)\)", out), out
    assert " WARNING " in result.stderr and "not done yet" in result.stderr
    assert set(seen.counts) == {"a@one.example.org", "c@three.example.org"}


def test_a_mail_server_that_cannot_be_reached_exits_1_and_says_what_waits(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    world(tmp_path, port, ["a@one.example.org", "b@two.example.org"])
    result = run(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "en: 2 of 2 deliveries not done yet, deferred because: cannot connect to SMTP server" in out
    assert "check mail.transport.host" in out and "Next attempt due now" in out
    assert " WARNING " in result.stderr


def test_an_all_done_run_exits_0_and_a_rerun_sends_nothing(tmp_path: Path) -> None:
    seen = Recipients()
    with RecordingSmtpServer(on_message=seen, keep_messages=False) as server:
        world(tmp_path, server.port, ["a@one.example.org"], ["b@two.example.org"])
        first, again = run(tmp_path), run(tmp_path)
    assert (first.returncode, again.returncode) == (0, 0), first.stdout + first.stderr
    assert seen.counts == {"a@one.example.org": 1, "b@two.example.org": 1}


class _SlowFeed(BaseHTTPRequestHandler):
    requested: threading.Event
    release: threading.Event

    def do_GET(self) -> None:  # noqa: N802
        type(self).requested.set()
        type(self).release.wait(WAIT)
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(FEED)))
        self.end_headers()
        self.wfile.write(FEED)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_feed() -> Iterator[tuple[str, type[_SlowFeed]]]:
    handler = type("Handler", (_SlowFeed,), {"requested": threading.Event(), "release": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/wire.xml", handler
    handler.release.set()
    server.shutdown()
    server.server_close()


def test_sigterm_while_collecting_exits_130_and_says_nothing_was_sent(tmp_path: Path, slow_feed) -> None:  # type: ignore[no-untyped-def]
    url, handler = slow_feed
    seen = Recipients()
    with RecordingSmtpServer(on_message=seen, keep_messages=False) as server:
        world(tmp_path, server.port, ["a@one.example.org"], ["b@two.example.org"])
        config = tmp_path / "config.yaml"
        text = config.read_text(encoding="utf-8").replace(
            "sources:\n", f"sources:\n  - kind: feed\n    name: slow-wire\n    url: {url}\n    timeout: 30\n", 1)
        config.write_text(text, encoding="utf-8")
        process = subprocess.Popen(RUN, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert handler.requested.wait(WAIT), "the run never asked for the feed"
            process.send_signal(signal.SIGTERM)
            handler.release.set()
            output, _ = process.communicate(timeout=WAIT)
        finally:
            process.kill()
        assert process.returncode == 130, output
        flat = " ".join(output.split())
        assert "not started: stopped by a signal" in flat and "left undone: en, ar, feeds" in flat
        assert seen.counts == {}
        again = run(tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
    assert seen.counts == {"a@one.example.org": 1, "b@two.example.org": 1}


def test_sigterm_between_editions_exits_130_and_the_rerun_sends_the_rest_once(tmp_path: Path) -> None:
    english = [f"reader{i}@site{i}.example.org" for i in range(3)]
    reached, release = threading.Event(), threading.Event()
    seen = Recipients()

    def on_message(message: ReceivedMessage) -> None:
        seen(message)
        if sum(seen.counts.values()) == len(english):  # the English edition's last message
            reached.set()
            release.wait(WAIT)

    with RecordingSmtpServer(on_message=on_message, keep_messages=False) as server:
        world(tmp_path, server.port, english, ["arabic@one.example.org"])
        process = subprocess.Popen(RUN, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert reached.wait(WAIT), "the English edition never finished"
            process.send_signal(signal.SIGTERM)
            release.set()
            output, _ = process.communicate(timeout=WAIT)
        finally:
            release.set()
            process.kill()
        assert process.returncode == 130, output
        assert "left undone: ar" in " ".join(output.split())
        assert "arabic@one.example.org" not in seen.counts
        again = run(tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
    assert seen.counts == {email: 1 for email in [*english, "arabic@one.example.org"]}


def test_names_and_reasons_are_printed_literally(tmp_path: Path) -> None:
    seen = Recipients()
    with RecordingSmtpServer(replies={"b@two.example.org": "550 5.7.1 [/red] rejected [bold]"},
                             on_message=seen, keep_messages=False) as server:
        world(tmp_path, server.port, ["a@one.example.org", "b@two.example.org"])
        config = tmp_path / "config.yaml"
        samples = REPO / "samples" / "articles"
        text = config.read_text(encoding="utf-8").replace("name: sample-newsroom", "name: '[/red]'")
        text = text.replace("sources:\n", f"sources:\n  - kind: files\n    name: /ar/rss\n    path: {samples}\n", 1)
        config.write_text(text, encoding="utf-8")
        result = run(tmp_path)
    assert "MarkupError" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr  # a refusal that is not a bounce needs a look
    assert "[/red]" in result.stdout and "/ar/rss" in result.stdout
    assert "not delivered to b@two.example.org: 550 5.7.1 [/red] rejected [bold]" in " ".join(result.stdout.split())


def test_a_runtime_error_prints_its_message_literally_without_markup() -> None:
    @click.command()
    @handles_errors
    def broken() -> None:
        raise PublisherError("source '[/red]' is broken (hint: fix [bold]this[/bold])")

    result = CliRunner().invoke(broken)
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: source '[/red]' is broken (hint: fix [bold]this[/bold])"
