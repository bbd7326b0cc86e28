"""The daily job end to end, through the `publisher` command, into a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO, write_config
from tests.support.smtp import RecordingSmtpServer
from tests.support.smtp_sink import SmtpSinkProcess, read_record

PUBLISHER = [sys.executable, "-m", "publisher"]

HOSTILE_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Wire</title><link>https://wire.example.net/</link><language>en</language>
<item><title>Wire report &lt;script&gt;alert(1)&lt;/script&gt; on the border</title>
<link>https://wire.example.net/border?utm_source=x</link><guid>wire-border-1</guid>
<pubDate>Mon, 02 Dec 2024 09:30:00 +0000</pubDate><category>politics</category>
<description><![CDATA[<p onclick="steal()">Border talks <script>alert('x')</script><iframe src="https://evil.example/"></iframe>
<a href="javascript:alert(1)">more</a> resumed <img src="/img/border.jpg" onerror="x()"></p>]]></description>
</item></channel></rss>"""


class _Feeds(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/wire.xml":
            body = HOSTILE_FEED.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
        else:
            body = b"<html><body>Internal error</body></html>"
            self.send_response(500)
            self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def feed_server():  # type: ignore[no-untyped-def]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Feeds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def publisher(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PUBLISHER, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def import_subscribers(directory: Path, rows: list[tuple[str, str, str]]) -> None:
    csv = directory / "subscribers.csv"
    csv.write_text("email,name,language\n" + "".join(f"{e},{n},{lang}\n" for e, n, lang in rows), encoding="utf-8")
    result = publisher("subscribers", "import", str(csv), "--config", "config.yaml", cwd=directory)
    assert result.returncode == 0, result.stderr


def smtp_transport(port: int) -> str:
    # the timeout outlasts any hold a test puts on the sink (tests.support.smtp_sink --hold-after)
    return f"kind: smtp\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout: 90"


def wait_for_line(path: Path, text: str, timeout: float = 60.0) -> None:
    """Wait (with a bound) until `text` appears in the file a subprocess writes its output to."""
    deadline = time.monotonic() + timeout
    while text not in path.read_text(encoding="utf-8", errors="replace"):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in {path}:\n{path.read_text(encoding='utf-8', errors='replace')}")
        time.sleep(0.05)


def test_daily_run_delivers_both_editions_and_feeds(tmp_path: Path, feed_server: str) -> None:
    sources = (
        f"  - kind: files\n    name: sample-newsroom\n    path: {REPO / 'samples' / 'articles'}\n"
        f"  - kind: feed\n    name: wire\n    url: {feed_server}/wire.xml\n    timeout: 5\n"
        f"  - kind: feed\n    name: broken-wire\n    url: {feed_server}/down.xml\n    timeout: 5\n"
    )
    with RecordingSmtpServer() as smtp:
        write_config(tmp_path, transport=smtp_transport(smtp.port), sources=sources)
        import_subscribers(
            tmp_path,
            [("layla@example.org", "Layla Haddad", "en"), ("sara@example.org", "سارة العلي", "ar")],
        )
        result = publisher("run", "--date", "2024-12-02", "--config", "config.yaml", cwd=tmp_path)
        # the broken source is reported by name and makes the exit code say "look at me"...
        assert result.returncode == 1, result.stdout + result.stderr
        assert "broken-wire" in result.stdout + result.stderr and "500" in result.stdout + result.stderr
        # ...but everything good was delivered
        messages = {m.rcpt_tos[0]: message_from_bytes(m.data, policy=policy.default) for m in smtp.messages}
        assert set(messages) == {"layla@example.org", "sara@example.org"}

        english, arabic = messages["layla@example.org"], messages["sara@example.org"]
        for message in (english, arabic):
            assert isinstance(message, EmailMessage)
            assert message.get_content_type() == "multipart/alternative"
            assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
            for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe"):
                assert message[header], header
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            unsubscribe = str(message["List-Unsubscribe"])
            assert "<http://127.0.0.1:8080/unsubscribe/" in unsubscribe and "<mailto:" in unsubscribe
            assert "@example.org" not in unsubscribe.split("mailto:")[0]  # a signed token, not the address
        html_en = english.get_body(("html",)).get_content()  # type: ignore[union-attr]
        html_ar = arabic.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert '<html lang="ar" dir="rtl"' in html_ar and 'dir="rtl"' in html_ar.split("<body", 1)[1]
        assert "سارة" in arabic["To"]
        # the hostile wire item arrived sanitized: text kept, script gone
        assert "Wire report" in html_en
        for bad in ("<script", "javascript:", "onclick", "onerror", "<iframe"):
            assert bad not in html_en.lower()
        # feeds written
        assert (tmp_path / "feeds" / "en.atom.xml").exists() and (tmp_path / "feeds" / "ar.rss.xml").exists()

        again = publisher("run", "--date", "2024-12-02", "--config", "config.yaml", cwd=tmp_path)
        assert len(smtp.messages) == 2, again.stdout  # nothing sent twice


def test_demo_config_runs_with_no_server(tmp_path: Path) -> None:
    """The README's demo: outbox delivery, SQLite, sample subscribers, from a copy of the repo's config."""
    config = (REPO / "config.yaml").read_text(encoding="utf-8").replace("samples/articles", str(REPO / "samples/articles"))
    (tmp_path / "config.yaml").write_text(config, encoding="utf-8")
    result = publisher("subscribers", "import", str(REPO / "samples" / "subscribers.csv"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = publisher("run", "--date", "2024-12-02", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    outbox = list((tmp_path / "var" / "outbox" / "new").iterdir())
    assert len(outbox) == 4  # 2 English + 2 Arabic active sample subscribers; the unsubscribed one gets none
    assert (tmp_path / "var" / "feeds" / "ar.atom.xml").exists()
    preview = publisher("preview", "--date", "2024-12-02", "--edition", "ar", cwd=tmp_path)
    assert preview.returncode == 0, preview.stderr
    assert "ar-2024-12-02.html" in preview.stdout


@pytest.mark.slow
def test_sigkill_mid_send_then_rerun_delivers_everyone_once(tmp_path: Path) -> None:
    recipients = [(f"reader{i:02d}@example.org", f"Reader {i}", "en") for i in range(40)]
    record = tmp_path / "received.txt"
    # the sink accepts 12 messages and holds the 13th: the kill lands mid-send, by construction
    with SmtpSinkProcess(record=record, hold_after=12) as sink:
        write_config(tmp_path, transport=smtp_transport(sink.port))
        import_subscribers(tmp_path, recipients)
        run = subprocess.Popen(
            [*PUBLISHER, "run", "--date", "2024-12-02", "--config", "config.yaml"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        assert sink.wait_holding() == 12
        os.kill(run.pid, signal.SIGKILL)
        run.wait(60)
        assert len(read_record(record)) == 12
        sink.release()  # the held message may be accepted too: it is the one in flight
        result = publisher("run", "--date", "2024-12-02", "--config", "config.yaml", cwd=tmp_path, timeout=180)
        assert result.returncode in (0, 1), result.stderr
    received = Counter(rcpt for rcpt, _ in read_record(record) if rcpt.startswith("reader"))
    assert set(received) == {email for email, _, _ in recipients}  # nobody lost
    duplicates = {r: n for r, n in received.items() if n > 1}
    assert len(duplicates) <= 1 and all(n == 2 for n in duplicates.values()), duplicates  # only the one in flight


@pytest.mark.slow
def test_sigterm_mid_send_stops_cleanly_and_rerun_finishes(tmp_path: Path) -> None:
    recipients = [(f"reader{i:02d}@example.org", f"Reader {i}", "en") for i in range(30)]
    record = tmp_path / "received.txt"
    output = tmp_path / "run.log"
    with SmtpSinkProcess(record=record, hold_after=8) as sink:
        write_config(tmp_path, transport=smtp_transport(sink.port))
        import_subscribers(tmp_path, recipients)
        with output.open("wb") as log:
            run = subprocess.Popen(
                [*PUBLISHER, "run", "--date", "2024-12-02", "--config", "config.yaml"],
                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
            )
            assert sink.wait_holding() == 8  # the 9th message is in flight
            run.send_signal(signal.SIGTERM)
            wait_for_line(output, "signal SIGTERM: finishing the message in flight")
            sink.release()
            assert run.wait(60) == 130, output.read_text(encoding="utf-8")
        assert "interrupted" in output.read_text(encoding="utf-8")
        assert len(read_record(record)) == 9, "the message in flight is finished, no other is begun"
        result = publisher("run", "--date", "2024-12-02", "--config", "config.yaml", cwd=tmp_path, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
    received = Counter(rcpt for rcpt, _ in read_record(record) if rcpt.startswith("reader"))
    assert received == Counter({email: 1 for email, _, _ in recipients})  # SIGTERM: not even one twice


def test_dry_run_renders_but_sends_and_freezes_nothing(tmp_path: Path) -> None:
    with RecordingSmtpServer() as smtp:
        write_config(tmp_path, transport=smtp_transport(smtp.port))
        import_subscribers(tmp_path, [("layla@example.org", "Layla Haddad", "en")])
        result = publisher("run", "--date", "2024-12-02", "--dry-run", "--config", "config.yaml", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "dry run" in result.stdout
        assert smtp.messages == []
        assert not (tmp_path / "feeds").exists()
        # nothing was frozen: the real run afterwards still chooses and sends the day's digest
        result = publisher("run", "--date", "2024-12-02", "--config", "config.yaml", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert [m.rcpt_tos[0] for m in smtp.messages] == ["layla@example.org"]
