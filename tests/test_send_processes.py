"""mail.processes: one digest sent by two processes of this machine, each over its part of the ledger.

Real SMTP servers on 127.0.0.1 count messages per recipient; the sender processes are real spawned
processes. A kill or a stop comes while the server holds the answer to a DATA (a gate, not a clock).
Counted: nobody lost, nobody twice unless a process was killed, and then no more than what it had
in flight (`processes_bound`).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from publisher.config import Config, load_config
from publisher.pipeline import EditionOutcome, run_digests, sender_processes
from publisher.pipeline.processes import connections_each, processes_bound
from publisher.store import Store
from publisher.store.deliveries import Part
from tests.conftest import write_config
from tests.support.send_world import DAY, Recipients, add_subscribers, collected
from tests.support.smtp import ReceivedMessage, RecordingSmtpServer, Scripted
from tests.support.smtp_sink import SmtpSinkProcess, read_record

PUBLISHER = [sys.executable, "-m", "publisher"]
PROCESSES, CONNECTIONS, SMTP_CHUNK = 2, 4, 4


def site(directory: Path, store_url: str, port: int, emails: list[str]) -> Config:
    transport = f"kind: smtp\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout: 90"
    path = write_config(directory, store_url=store_url, transport=transport, connections=CONNECTIONS)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("  connections:", f"  processes: {PROCESSES}\n  connections:", 1), encoding="utf-8")
    config = load_config(path)
    store = Store.open(config.store_url)
    try:
        add_subscribers(store, emails)
    finally:
        store.close()
    return config


def emails(count: int) -> list[str]:
    return [f"reader{i:03d}@example.test" for i in range(count)]


def run_command(directory: Path) -> list[str]:
    return [*PUBLISHER, "run", "--date", DAY.isoformat(), "--config", str(directory / "config.yaml")]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)


def sender_pids(coordinator: int) -> list[int]:
    """The spawned sender processes of a coordinator (not multiprocessing's resource tracker)."""
    found = []
    for child in Path(f"/proc/{coordinator}/task/{coordinator}/children").read_text().split():
        command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in command:
            found.append(int(child))
    return found


def test_the_parts_of_a_digest_are_disjoint_and_cover_it(tmp_path: Path, store_url: str) -> None:
    everyone = emails(41)
    with RecordingSmtpServer() as server:
        config = site(tmp_path, store_url, server.port, everyone)
    store = collected(config)
    try:
        from publisher.pipeline import select_digest

        record = select_digest(config, store, config.edition("en"), DAY).record
        assert record is not None
        store.deliveries.enqueue(record.id, "en")
        whole = [row.id for row in store.deliveries.due(record.id, after_id=0, limit=100)]
        parts = [[row.id for row in store.deliveries.due(record.id, after_id=0, limit=100, ids=Part(k, 3))]
                 for k in range(3)]
        assert sorted(sum(parts, [])) == whole and len(whole) == 41
        assert all(row_id % 3 == k for k, part in enumerate(parts) for row_id in part)
        # the store's other views of a part agree with its rows (SQLAlchemy's path, not the cursor's)
        assert [store.deliveries.counts(record.id, ids=Part(k, 3))["pending"] for k in range(3)] == [len(p) for p in parts]
        assert store.deliveries.waiting(record.id, ids=Part(1, 3)).count == len(parts[1])
    finally:
        store.close()


def test_two_processes_carry_the_digest_to_everyone_exactly_once(
    tmp_path: Path, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    everyone = emails(90)
    seen = Recipients()
    outcomes: list[EditionOutcome] = []
    with RecordingSmtpServer(keep_messages=False, on_message=seen, hold_after=0) as server:
        config = site(tmp_path, store_url, server.port, everyone)
        store = collected(config)
        try:
            with caplog.at_level(logging.INFO, logger="publisher.processes"):
                sender = threading.Thread(target=lambda: outcomes.extend(run_digests(config, store, DAY, editions=["en"])))
                sender.start()
                try:
                    # the server answers nothing yet: four messages reach DATA at once, two per process
                    wait_until(lambda: server.data_started >= CONNECTIONS, "one message in flight per connection")
                    assert server.connections == CONNECTIONS
                finally:
                    server.release()
                    sender.join(120)
            [outcome] = outcomes
            assert outcome.send is not None and outcome.send.error is None, outcome
            assert outcome.send.sent == len(everyone) and outcome.send.deferred == 0
            record = store.digests.find("en", DAY)
            assert record is not None and record.status == "done"
            assert store.deliveries.counts(record.id)["sent"] == len(everyone)
        finally:
            store.close()
    assert "2 sender processes, 2 connections each" in caplog.text
    assert seen.counts == Counter(dict.fromkeys(everyone, 1)), "no row in two parts"


def test_a_stop_reaches_every_process_repeats_nothing_and_a_rerun_sends_the_rest(tmp_path: Path) -> None:
    everyone = emails(150)
    seen = Recipients()
    stop = threading.Event()

    def on_message(message: ReceivedMessage) -> None:
        seen(message)
        if sum(seen.counts.values()) >= 30:
            stop.set()

    with RecordingSmtpServer(keep_messages=False, on_message=on_message) as server:
        config = site(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", server.port, everyone)
        store = collected(config)
        try:
            [outcome] = run_digests(config, store, DAY, editions=["en"], stop=stop)
            at_stop = sum(seen.counts.values())
            record = store.digests.find("en", DAY)
            assert record is not None
            assert outcome.send is not None and outcome.send.interrupted, outcome
            assert at_stop < len(everyone), "the stop came before the end"
            assert store.deliveries.counts(record.id)["sent"] == at_stop, "every acceptance is committed"
            server.on_message = seen
            [again] = run_digests(config, store, DAY, editions=["en"])
            assert again.send is not None and again.send.error is None, again
        finally:
            store.close()
    assert seen.counts == Counter(everyone), "everyone exactly once: a stop repeats nothing"


def test_a_refusal_about_us_in_one_part_stops_the_send_with_the_hint_and_fails_nobody(tmp_path: Path) -> None:
    relay = {"digest@news.example.org": Scripted("554 5.7.1 Relay access denied", at="mail")}
    with RecordingSmtpServer(replies=relay) as server:
        config = site(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", server.port, emails(40))
        store = collected(config)
        try:
            [outcome] = run_digests(config, store, DAY, editions=["en"])
            assert outcome.send is not None and outcome.send.error is not None
            assert "Relay access denied" in outcome.send.error and "hint:" in outcome.send.error
            record = store.digests.find("en", DAY)
            assert record is not None
            assert store.deliveries.counts(record.id) == {"pending": 40, "sent": 0, "failed": 0, "skipped": 0}
        finally:
            store.close()
        assert server.received == 0


@pytest.mark.slow
def test_a_sender_process_killed_mid_send_is_named_and_a_rerun_repeats_at_most_its_bound(
    tmp_path: Path, store_url: str
) -> None:
    everyone = emails(200)
    record = tmp_path / "received.txt"
    with SmtpSinkProcess(record=record, hold_after=40) as sink:
        site(tmp_path, store_url, sink.port, everyone)
        run = subprocess.Popen(run_command(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        try:
            assert sink.wait_holding() == 40
            [victim, _other] = sender_pids(run.pid)
            subprocess.run(["kill", "-KILL", str(victim)], check=True)
        finally:
            sink.release()
            said, _ = run.communicate(timeout=300)
        assert run.returncode == 1, said
        assert "before it reported" in said and "killed by signal 9" in said and "run again" in said, said
        assert "Traceback" not in said, said
        rerun = subprocess.run(run_command(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    copies = Counter(rcpt for rcpt, _ in read_record(record))
    assert set(copies) == set(everyone), "nobody lost"
    repeated = sum(copies.values()) - len(everyone)
    one_process = processes_bound(1, connections_each(load_config(tmp_path / "config.yaml"), PROCESSES), SMTP_CHUNK)
    assert one_process == 16  # README "Sending many messages": 2 chunks of 4 on each of its 2 connections
    assert repeated <= one_process, f"{repeated} repeated, more than the killed process had in flight"


@pytest.mark.slow
def test_the_coordinator_killed_mid_send_stops_its_senders_and_a_rerun_repeats_at_most_the_bound(
    tmp_path: Path,
) -> None:
    everyone = emails(200)
    record = tmp_path / "received.txt"
    with SmtpSinkProcess(record=record, hold_after=40) as sink:
        site(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", sink.port, everyone)
        run = subprocess.Popen(run_command(tmp_path), cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            assert sink.wait_holding() == 40
            senders = sender_pids(run.pid)
            assert len(senders) == PROCESSES
        finally:
            run.send_signal(signal.SIGKILL)
            run.wait(60)
        sink.release()  # the held messages may be accepted: they are the ones in flight
        for pid in senders:  # the kernel told them (PDEATHSIG): each ends after its messages in flight
            _wait_gone(pid)
        rerun = subprocess.run(run_command(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    copies = Counter(rcpt for rcpt, _ in read_record(record))
    assert set(copies) == set(everyone), "nobody lost"
    repeated = sum(copies.values()) - len(everyone)
    bound = processes_bound(PROCESSES, CONNECTIONS // PROCESSES, SMTP_CHUNK)
    assert bound == 32  # the same as one process with all four connections
    assert repeated <= bound, f"{repeated} repeated, more than were in flight ({bound})"


def test_processes_are_used_only_with_the_configured_transport_and_a_shared_store(tmp_path: Path) -> None:
    config = site(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", 2525, [])
    from publisher.delivery.mail import build_transport

    store = Store.open(config.store_url)
    own = build_transport(config.mail.transport, base_dir=config.base_dir)
    other = build_transport(config.mail.transport.model_copy(), base_dir=config.base_dir)
    try:
        assert sender_processes(config, store, own) == PROCESSES
        assert sender_processes(config, store, other) == 1, "a caller's own transport is used alone"
    finally:
        own.close()
        other.close()
        store.close()
    memory = Store.open("sqlite://")
    try:
        assert sender_processes(config, memory, own) == 1, "an in-memory store cannot be shared"
    finally:
        memory.close()


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"sender process {pid} outlived its coordinator by 60 s")
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"
