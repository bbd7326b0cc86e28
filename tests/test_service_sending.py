"""Two `publisher serve` processes (and a manual `publisher run`) on one store: each digest once.

Counted at a real SMTP server in its own process (tests.support.smtp_sink), so the count does not
depend on anything the publisher says about itself. SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.config import load_config
from publisher.pipeline.collect import collect
from publisher.store import Store
from tests.conftest import write_config
from tests.support.smtp_sink import SmtpSinkProcess, read_record
from tests.test_service_process import ServeProcess, cli

pytestmark = pytest.mark.slow

DAMASCUS = ZoneInfo("Asia/Damascus")
# every minute, so the newest slot is always less than a minute old: a start catches it up at once
EVERY_MINUTE = """schedule:
  collect: "*/15 * * * *"
  feeds: null
  digests:
    en: "* * * * *"
  digest_day: today
"""


def sending_site(tmp_path: Path, *, smtp_port: int, subscribers: int, store_url: str | None = None) -> tuple[Path, list[str]]:
    # the SMTP timeout outlasts any hold a test puts on the sink (tests.support.smtp_sink --hold-after)
    """Articles for today (site zone), subscribers, and articles already collected into the store."""
    articles = tmp_path / "articles"
    articles.mkdir()
    today = datetime.now(DAMASCUS).date()
    for day in (today - timedelta(days=1), today):
        for number in range(3):
            (articles / f"{day}-{number}.md").write_text(
                f"---\ntitle: Story {number} of {day}\ndate: {day.isoformat()} 00:0{number + 1}\nlanguage: en\n"
                f"section: politics\nsummary: Summary {number}.\n---\nBody.\n",
                encoding="utf-8",
            )
    path = write_config(
        tmp_path,
        store_url=store_url,
        sources="  - kind: files\n    name: desk\n    path: articles\n",
        transport=f"kind: smtp\n    host: 127.0.0.1\n    port: {smtp_port}\n    security: none\n    timeout: 90",
        extra=EVERY_MINUTE,
    )
    config = load_config(path)
    store = Store.open(config.store_url)
    emails = [f"reader{i:03d}@example.test" for i in range(subscribers)]
    try:
        for email in emails:
            store.subscribers.upsert(email, language="en")
        collect(config, store)  # so two services starting together do not race to insert articles
    finally:
        store.close()
    return path, emails


def received(record: Path) -> list[str]:
    return [recipient for recipient, _message_id in read_record(record)]


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def digest_status(path: Path) -> str | None:
    config = load_config(path)
    store = Store.open(config.store_url)
    try:
        record = store.digests.find("en", datetime.now(config.site.zone).date())
        return record.status if record else None
    finally:
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def test_two_services_on_one_store_send_each_subscriber_one_digest(tmp_path: Path, store_url: str | None) -> None:
    record = tmp_path / "received.txt"
    with SmtpSinkProcess(record=record) as sink:
        path, emails = sending_site(tmp_path, smtp_port=sink.port, subscribers=40, store_url=store_url)
        with ServeProcess(path, name="first") as first, ServeProcess(path, name="second") as second:
            for serve in (first, second):
                serve.wait_for(r"serve: running as pid")
            wait_until(lambda: len(received(record)) >= len(emails) and digest_status(path) == "done", 60, "the digest")
            for serve in (first, second):
                assert serve.signal(signal.SIGTERM) == 0
            logs = first.text() + second.text()
    # both processes have exited: anything either sent is in the record now
    assert sorted(received(record)) == emails
    assert logs.count("recipients queued") == 1
    assert logs.count(": sending the digest of ") == 1, "one process took the slot"


def test_a_manual_run_during_a_send_does_not_send_the_digest_again(tmp_path: Path) -> None:
    record = tmp_path / "received.txt"
    # the sink accepts 5 messages, then holds the 6th until the manual run has answered
    with SmtpSinkProcess(record=record, hold_after=5) as sink:
        path, emails = sending_site(tmp_path, smtp_port=sink.port, subscribers=60)
        with ServeProcess(path) as serve:
            assert sink.wait_holding() == 5
            manual = cli("run", "--config", str(path), cwd=tmp_path)
            assert "being sent by" in manual.stdout, manual.stdout + manual.stderr
            assert len(received(record)) == 5, "the manual run sent something, or the held send went on"
            assert digest_status(path) == "sending"
            sink.release()
            wait_until(lambda: len(received(record)) >= len(emails) and digest_status(path) == "done", 60, "the digest")
            again = cli("run", "--config", str(path), cwd=tmp_path)
            assert again.returncode == 0, again.stdout + again.stderr
            assert serve.signal(signal.SIGTERM) == 0
    # the service has exited and the second run returned: the record holds everything either sent
    assert sorted(received(record)) == emails
