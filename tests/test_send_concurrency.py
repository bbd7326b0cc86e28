"""mail.connections: N senders over real SMTP connections, one ledger, grouped commits.

Every subscriber gets the digest exactly once however many connections carry it; a SIGKILL or a
store that goes away mid-send repeats at most `duplicate_bound(connections, max_batch)` messages
(what was handed out: 24 for four SMTP connections), and a rerun loses nobody. The middle of a send is made by
the server holding its replies, never by a clock.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from publisher.config import Config, load_config
from publisher.delivery.mail import SmtpTransport
from publisher.pipeline import EditionOutcome, run_digests
from publisher.pipeline.senders import TokenBucket, duplicate_bound
from publisher.store import Store
from tests.conftest import write_config
from tests.support.send_world import DAY, Recipients, add_subscribers, collected
from tests.support.smtp import ReceivedMessage, RecordingSmtpServer
from tests.support.smtp_sink import SmtpSinkProcess, read_record
from tests.support.waiting import wait_until

PUBLISHER = [sys.executable, "-m", "publisher"]
CONNECTIONS = 4
SMTP_CHUNK = SmtpTransport.max_batch  # what SMTP takes per call with several connections (batch_for)


def smtp(port: int) -> str:
    # the timeout outlasts any hold a test puts on the server
    return f"kind: smtp\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout: 90"


def site(directory: Path, store_url: str, port: int, emails: list[str]) -> Config:
    config = load_config(write_config(directory, store_url=store_url, transport=smtp(port), connections=CONNECTIONS))
    store = Store.open(config.store_url)
    try:
        add_subscribers(store, emails)
    finally:
        store.close()
    return config



def test_four_connections_carry_the_digest_to_everyone_exactly_once(tmp_path: Path, store_url: str) -> None:
    emails = [f"reader{i:03d}@example.test" for i in range(120)]
    seen = Recipients()
    with RecordingSmtpServer(keep_messages=False, on_message=seen, hold_after=0) as server:
        config = site(tmp_path, store_url, server.port, emails)
        store = collected(config)
        outcomes: list[EditionOutcome] = []
        sender = threading.Thread(target=lambda: outcomes.extend(run_digests(config, store, DAY, editions=["en"])))
        sender.start()
        try:
            # the server answers nothing yet: four messages reach DATA at once, one per connection
            wait_until(lambda: server.data_started >= CONNECTIONS, "one message in flight per connection")
            assert server.connections == CONNECTIONS
        finally:
            server.release()
            sender.join(60)
        try:
            [outcome] = outcomes
            assert outcome.send is not None and outcome.send.error is None
            assert outcome.send.sent == len(emails)
            record = store.digests.find("en", DAY)
            assert record is not None
            assert store.deliveries.counts(record.id)["sent"] == len(emails)
        finally:
            store.close()
    assert seen.counts == Counter(dict.fromkeys(emails, 1)), "no row was held by two senders"


def test_the_rate_cap_is_one_bucket_for_all_senders() -> None:
    """Four threads taking 25 slots each from a 100/s bucket are given 100 slots 10 ms apart."""
    bucket = TokenBucket(100.0)
    starts: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(25):
            start = bucket.acquire(1)
            assert start is not None
            with lock:
                starts.append(start)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(starts)
    assert len(ordered) == 100
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    assert min(gaps) >= 0.01 - 1e-9, "no two sends share a slot, whichever thread asks"


@pytest.mark.slow
def test_sigkill_mid_send_over_four_connections_repeats_at_most_the_bound(tmp_path: Path, store_url: str) -> None:
    emails = [f"reader{i:03d}@example.test" for i in range(150)]
    record = tmp_path / "received.txt"
    bound = duplicate_bound(CONNECTIONS, SMTP_CHUNK)
    with SmtpSinkProcess(record=record, hold_after=40) as sink:
        site(tmp_path, store_url, sink.port, emails)
        run = subprocess.Popen([*PUBLISHER, "run", "--date", DAY.isoformat(), "--config", "config.yaml"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert sink.wait_holding() == 40
        finally:
            run.send_signal(signal.SIGKILL)
            run.wait(60)
        sink.release()  # the held messages may be accepted too: they are the ones in flight
        rerun = subprocess.run([*PUBLISHER, "run", "--date", DAY.isoformat(), "--config", "config.yaml"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "Traceback" not in rerun.stderr
    copies = Counter(rcpt for rcpt, _ in read_record(record))
    assert set(copies) == set(emails), "nobody lost"
    repeated = sum(copies.values()) - len(emails)
    assert bound == 32  # README "Sending many messages": 2 chunks of 4 per connection, 4 connections
    assert repeated <= bound, f"{repeated} repeated, more than were handed out ({bound})"


@pytest.mark.postgres
def test_the_store_going_away_mid_send_ends_in_a_summary_and_a_rerun_repeats_at_most_the_bound(
    tmp_path: Path, postgres_url: str
) -> None:
    emails = [f"reader{i:03d}@example.test" for i in range(150)]
    seen = Recipients()
    with RecordingSmtpServer(keep_messages=False, on_message=seen, hold_after=60) as server:
        config = site(tmp_path, postgres_url, server.port, emails)
        store = collected(config)
        outcomes: list[EditionOutcome] = []
        errors: list[BaseException] = []

        def send() -> None:
            try:
                outcomes.extend(run_digests(config, store, DAY, editions=["en"]))
            except BaseException as exc:  # noqa: BLE001 - the test asserts there is none
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        assert server.wait_holding(60)
        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:  # every connection of the sender is cut, as in a restart
                connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        finally:
            admin.dispose()
            server.release()
            sender.join(120)
        assert not errors, errors
        [outcome] = outcomes
        assert outcome.send is not None and outcome.send.error is not None
        assert "store" in outcome.send.error and "Run again" in outcome.send.error
        [again] = run_digests(config, store, DAY, editions=["en"])
        store.close()
        assert again.send is not None and again.send.error is None, again
    copies = seen.counts
    assert set(copies) == set(emails), "nobody lost"
    repeated = sum(copies.values()) - len(emails)
    assert repeated <= duplicate_bound(CONNECTIONS, SMTP_CHUNK), repeated


def test_a_stop_mid_send_over_four_connections_repeats_nothing_and_a_rerun_sends_the_rest(
    tmp_path: Path, store_url: str
) -> None:
    # SIGTERM's path (serve sets the stop event): each sender ends after its message in flight, the
    # rest of an SMTP batch of 4 and the chunks still queued stay pending, every acceptance is committed
    emails = [f"reader{i:03d}@example.test" for i in range(150)]
    seen = Recipients()
    stop = threading.Event()

    def on_message(message: ReceivedMessage) -> None:
        seen(message)
        if sum(seen.counts.values()) >= 30:
            stop.set()

    with RecordingSmtpServer(keep_messages=False, on_message=on_message) as server:
        config = site(tmp_path, store_url, server.port, emails)
        store = collected(config)
        try:
            [outcome] = run_digests(config, store, DAY, editions=["en"], stop=stop)
            at_stop = sum(seen.counts.values())
            digest = store.digests.find("en", DAY)
            assert digest is not None
            assert outcome.send is not None and outcome.send.interrupted, outcome
            assert 30 <= at_stop <= 30 + CONNECTIONS, "the messages in flight are finished, no other is begun"
            assert store.deliveries.counts(digest.id)["sent"] == at_stop, "every acceptance is committed"
            server.on_message = seen
            [again] = run_digests(config, store, DAY, editions=["en"])
            assert again.send is not None and again.send.error is None, again
        finally:
            store.close()
    assert seen.counts == Counter(emails), "everyone exactly once: a stop repeats nothing"
