"""mail.broker: `publisher worker` processes share one digest through Celery on the real RabbitMQ.

Two real workers against the real broker, PostgreSQL as the store, aiosmtpd on 127.0.0.1 counting
messages per recipient. One worker is killed with SIGKILL while the SMTP server holds the answer to
the DATA each worker has in flight (a gate, not a clock); the rest finishes. Counted: nobody lost,
repeats within `killed_worker_bound`, every ledger row sent.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from publisher.config import Config, load_config, parse_config
from publisher.errors import ConfigError
from publisher.pipeline.batch import BatchSender, killed_worker_bound
from publisher.store import Store
from publisher.store.row_locks import held_rows
from tests.conftest import reachable, require, write_config
from tests.support.send_world import DAY, Recipients, add_subscribers, collected
from tests.support.smtp import RecordingSmtpServer
from tests.support.waiting import wait_until

PUBLISHER = [sys.executable, "-m", "publisher"]
BROKER = "amqp://guest:guest@127.0.0.1:5672//"
BATCH = 20


@pytest.fixture
def queue_name() -> Iterator[str]:
    """A queue of this test's own on the real RabbitMQ, deleted afterwards (with its exchange)."""
    require(reachable("127.0.0.1", 5672), "RabbitMQ is not listening on 127.0.0.1:5672")
    import amqp

    name = f"publisher.test.{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        connection = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest")
        connection.connect()
        try:
            channel = connection.channel()
            channel.queue_delete(name)
            channel.exchange_delete(name)
        finally:
            connection.close()


def broker_yaml(queue: str, *, wait_minutes: float = 2.0) -> str:
    return (f"  broker:\n    url: {BROKER}\n    queue: {queue}\n    batch: {BATCH}\n"
            f"    wait_minutes: {wait_minutes}\n")


def site(directory: Path, store_url: str, port: int, queue: str, *, wait_minutes: float = 2.0) -> Config:
    transport = f"kind: smtp\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout: 90"
    path = write_config(directory, store_url=store_url, transport=transport)
    text = path.read_text(encoding="utf-8").replace("  retry:\n", broker_yaml(queue, wait_minutes=wait_minutes)
                                                    + "  retry:\n", 1)
    path.write_text(text, encoding="utf-8")
    return load_config(path)



class Worker:
    """A `publisher worker` subprocess with its output in a file (read when something goes wrong)."""

    def __init__(self, directory: Path, number: int) -> None:
        self.log = directory / f"worker-{number}.log"
        self._out: IO[bytes] = self.log.open("wb")
        self.process = subprocess.Popen([*PUBLISHER, "worker", "--config", "config.yaml"], cwd=directory,
                                        stdout=self._out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        finally:
            self._out.close()


def run_with_one_worker(directory: Path, config: Config, emails: list[str]) -> subprocess.CompletedProcess[str]:
    """The list in the store, one `publisher worker`, then `publisher run` as the coordinator; the
    worker is stopped with SIGTERM afterwards and must exit 0."""
    store = Store.open(config.store_url)
    try:
        add_subscribers(store, emails)
    finally:
        store.close()
    worker = Worker(directory, 1)
    try:
        return subprocess.run([*PUBLISHER, "run", "--date", DAY.isoformat(), "--config", "config.yaml"],
                              cwd=directory, capture_output=True, text=True, timeout=300)
    finally:
        assert worker.stop() == 0, worker.output()


def ledger_counts(config: Config) -> dict[str, int]:
    store = Store.open(config.store_url)
    try:
        digest = store.digests.find("en", DAY)
        assert digest is not None
        return store.deliveries.counts(digest.id)
    finally:
        store.close()


@pytest.mark.postgres
def test_two_workers_one_killed_mid_digest_lose_nobody_and_repeat_at_most_the_bound(
    tmp_path: Path, postgres_url: str, queue_name: str
) -> None:
    emails = [f"reader{i:03d}@example.test" for i in range(200)]
    recipients = Recipients()
    hold_after = 50
    with RecordingSmtpServer(hold_after=hold_after, on_message=recipients) as server:
        config = site(tmp_path, postgres_url, server.port, queue_name)
        store = Store.open(config.store_url)
        try:
            add_subscribers(store, emails)
        finally:
            store.close()
        workers = [Worker(tmp_path, 1), Worker(tmp_path, 2)]
        run = subprocess.Popen([*PUBLISHER, "run", "--date", DAY.isoformat(), "--config", "config.yaml"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # each worker (one task, one connection) has one DATA held: both are mid-digest
            wait_until(lambda: server.data_started >= hold_after + 2, "both workers holding a message in flight")
            killed = workers[0]
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait(30)
            server.release()
            out, err = run.communicate(timeout=300)
        finally:
            if run.poll() is None:
                run.kill()
            codes = [w.stop() for w in workers]
        assert run.returncode == 0, out + err + workers[1].output()
        assert "Traceback" not in err
        assert codes[1] == 0, workers[1].output()  # SIGTERM: a warm shutdown
    copies = recipients.counts
    assert set(copies) == set(emails), f"lost: {sorted(set(emails) - set(copies))[:5]}"
    repeated = sum(copies.values()) - len(emails)
    bound = killed_worker_bound(1, 1, 1)  # one task at a time, one connection: SMTP sends one message per call
    print(f"repeated after the SIGKILL: {repeated} (bound {bound})")
    assert bound == 1
    assert repeated <= bound, f"{repeated} repeated, more than the killed worker had in flight ({bound})"
    counts = ledger_counts(config)
    assert counts["sent"] == len(emails) and counts["pending"] == 0, counts
    store = Store.open(config.store_url)
    try:
        digest = store.digests.find("en", DAY)
        assert digest is not None and digest.status == "done"
    finally:
        store.close()


@pytest.mark.postgres
def test_without_a_worker_the_coordinator_gives_up_in_bounded_time_and_names_what_is_queued(
    tmp_path: Path, postgres_url: str, queue_name: str
) -> None:
    with RecordingSmtpServer() as server:
        config = site(tmp_path, postgres_url, server.port, queue_name, wait_minutes=0.05)
        store = Store.open(config.store_url)
        try:
            add_subscribers(store, [f"r{i}@example.test" for i in range(30)])
        finally:
            store.close()
        run = subprocess.run([*PUBLISHER, "run", "--date", DAY.isoformat(), "--config", "config.yaml"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert server.received == 0
    said = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 1, said
    assert "30 deliveries still queued" in said and "start `publisher worker`" in said, said
    assert "Traceback" not in run.stderr
    assert ledger_counts(config)["pending"] == 30


@pytest.mark.postgres
def test_a_task_given_twice_sends_nothing_twice_and_rows_held_elsewhere_are_left_alone(
    tmp_path: Path, postgres_url: str, queue_name: str
) -> None:
    """What a redelivered task does (no broker needed): it re-reads its rows and skips what is sent."""
    recipients = Recipients()
    with RecordingSmtpServer(on_message=recipients) as server:
        config = site(tmp_path, postgres_url, server.port, queue_name)
        store = collected(config)
        try:
            add_subscribers(store, [f"r{i}@example.test" for i in range(10)])
            from publisher.pipeline import message_template, select_digest

            edition = config.edition("en")
            selected = select_digest(config, store, edition, DAY)
            message_template(config, edition, selected, store)  # renders and freezes it
            assert selected.record is not None
            digest_id = selected.record.id
            store.deliveries.enqueue(digest_id, "en")
            ids = [row.id for row in store.deliveries.due(digest_id, after_id=0, limit=100)]
            sender = BatchSender(config, store)
            with held_rows(store.engine, ids[:3]) as held:  # another task holds three of them
                assert held == ids[:3]
                first = sender.send(digest_id, ids)
            assert (first.sent, first.held_elsewhere, first.error) == (7, 3, None)
            again = sender.send(digest_id, ids)  # the same task once more: only the three it had left
            assert (again.sent, again.held_elsewhere) == (3, 0)
            assert sender.send(digest_id, ids).sent == 0
        finally:
            store.close()
    assert sorted(recipients.counts.values()) == [1] * 10


def test_broker_mode_on_sqlite_is_refused_at_config_load(tmp_path: Path) -> None:
    path = write_config(tmp_path, store_url="sqlite:///store.db")
    text = path.read_text(encoding="utf-8").replace("  retry:\n", broker_yaml("q") + "  retry:\n", 1)
    line = text[: text.index("  broker:")].count("\n") + 1
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml", base_dir=tmp_path)
    problem = caught.value.problems[0]
    assert problem.startswith(f"config.yaml:{line}: mail.broker: ")
    assert "shared store" in problem and "postgresql+psycopg://" in problem
    path.write_text(text, encoding="utf-8")
    check = subprocess.run([*PUBLISHER, "worker", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 2 and "mail.broker" in check.stderr and "Traceback" not in check.stderr


def test_worker_without_mail_broker_says_so(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = subprocess.run([*PUBLISHER, "worker", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "mail.broker is not set" in " ".join(result.stderr.split())


@pytest.mark.postgres
def test_sigterm_finishes_the_task_in_hand_exits_0_and_the_next_worker_repeats_nothing(
    tmp_path: Path, postgres_url: str, queue_name: str
) -> None:
    emails = [f"reader{i:03d}@example.test" for i in range(3 * BATCH)]
    recipients = Recipients()
    with RecordingSmtpServer(hold_after=5, on_message=recipients) as server:
        config = site(tmp_path, postgres_url, server.port, queue_name)
        store = Store.open(config.store_url)
        try:
            add_subscribers(store, emails)
        finally:
            store.close()
        first = Worker(tmp_path, 1)
        run = subprocess.Popen([*PUBLISHER, "run", "--date", DAY.isoformat(), "--config", "config.yaml"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        second: Worker | None = None
        try:
            assert server.wait_holding(60), first.output()
            first.process.send_signal(signal.SIGTERM)  # mid-task: 5 accepted, the 6th held
            server.release()
            assert first.stop() == 0, first.output()
            # the task in hand was finished and committed, and no other was started
            assert ledger_counts(config)["sent"] == BATCH
            second = Worker(tmp_path, 2)
            out, err = run.communicate(timeout=300)
        finally:
            if run.poll() is None:
                run.kill()
            if second is not None:
                assert second.stop() == 0, second.output()
    assert run.returncode == 0, out + err
    assert sorted(recipients.counts.values()) == [1] * len(emails), "SIGTERM repeats nothing"


@pytest.mark.postgres
def test_a_greylisted_recipient_is_retried_within_the_task_and_sent_once(
    tmp_path: Path, postgres_url: str, queue_name: str
) -> None:
    from tests.support.smtp import Scripted

    emails = [f"reader{i:03d}@example.test" for i in range(BATCH + 5)]
    recipients = Recipients()
    greylisted = {emails[3]: Scripted("451 4.7.1 greylisted, try again", times=1)}
    with RecordingSmtpServer(replies=greylisted, on_message=recipients) as server:
        config = site(tmp_path, postgres_url, server.port, queue_name)
        run = run_with_one_worker(tmp_path, config, emails)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(recipients.counts.values()) == [1] * len(emails)
    assert ledger_counts(config) == {"pending": 0, "sent": len(emails), "failed": 0, "skipped": 0}


@pytest.mark.postgres
def test_a_dead_address_is_a_handled_bounce_counted_from_the_ledger(
    tmp_path: Path, postgres_url: str, queue_name: str
) -> None:
    from publisher.models import SubscriberStatus
    from tests.support.smtp import Scripted

    emails = [f"reader{i:03d}@example.test" for i in range(BATCH + 5)]
    recipients = Recipients()
    dead = {emails[7]: Scripted(f"550 5.1.1 <{emails[7]}>: no such user")}
    with RecordingSmtpServer(replies=dead, on_message=recipients) as server:
        config = site(tmp_path, postgres_url, server.port, queue_name)
        run = run_with_one_worker(tmp_path, config, emails)
    said = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 0, said  # a bounce is handled: the subscriber is marked, nobody needs to look
    assert "1 bounced" in said, said
    assert sorted(recipients.counts) == sorted(set(emails) - {emails[7]})
    assert ledger_counts(config) == {"pending": 0, "sent": len(emails) - 1, "failed": 1, "skipped": 0}
    store = Store.open(config.store_url)
    try:
        found = store.subscribers.by_email(emails[7])
        assert found is not None and found.status is SubscriberStatus.BOUNCED
    finally:
        store.close()


@pytest.mark.postgres
def test_a_broker_that_cannot_be_reached_ends_the_run_with_the_hint(tmp_path: Path, postgres_url: str) -> None:
    with RecordingSmtpServer() as server:
        config = site(tmp_path, postgres_url, server.port, "unreachable")
        path = tmp_path / "config.yaml"
        closed = socket_port_nobody_listens_on()
        path.write_text(path.read_text(encoding="utf-8").replace("127.0.0.1:5672", f"127.0.0.1:{closed}"),
                        encoding="utf-8")
        store = Store.open(config.store_url)
        try:
            add_subscribers(store, ["only@example.test"])
        finally:
            store.close()
        run = subprocess.run([*PUBLISHER, "run", "--date", DAY.isoformat(), "--config", "config.yaml"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    said = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 1, said
    assert "cannot enqueue on mail.broker" in said and "is RabbitMQ running" in said, said
    assert "Traceback" not in run.stderr
    assert ledger_counts(config)["pending"] == 1


def socket_port_nobody_listens_on() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.postgres
def test_a_refusal_about_us_stops_the_digest_with_the_hint_and_fails_nobody(
    tmp_path: Path, postgres_url: str, queue_name: str
) -> None:
    from tests.support.smtp import Scripted

    relay = {"digest@news.example.org": Scripted("554 5.7.1 Relay access denied", at="mail")}
    with RecordingSmtpServer(replies=relay) as server:
        config = site(tmp_path, postgres_url, server.port, queue_name)
        run = run_with_one_worker(tmp_path, config, [f"r{i}@example.test" for i in range(2 * BATCH)])
        assert server.received == 0
    said = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 1, said
    assert "Relay access denied" in said and "hint:" in said and "mail.transport" in said, said
    assert ledger_counts(config) == {"pending": 2 * BATCH, "sent": 0, "failed": 0, "skipped": 0}


def test_the_broker_free_default_never_imports_celery(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    script = ("import sys\nimport publisher.cli as cli\n"
              f"sys.argv = ['publisher', 'run', '--date', '{DAY.isoformat()}', '--config', {str(path)!r}]\n"
              "try:\n    cli.main()\nexcept SystemExit as exit:\n    code = exit.code\n"
              "print('CELERY' if any(m.split('.')[0] in ('celery', 'kombu') for m in sys.modules) else 'NONE', code)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "NONE 0", done.stdout + done.stderr


@pytest.mark.postgres
def test_check_transport_logs_in_to_the_broker_and_counts_its_workers(
    tmp_path: Path, postgres_url: str, queue_name: str
) -> None:
    with RecordingSmtpServer() as server:
        site(tmp_path, postgres_url, server.port, queue_name)
        check = [*PUBLISHER, "check", "--transport", "--config", "config.yaml"]
        before = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert before.returncode == 0, before.stdout + before.stderr
        assert f"queue {queue_name} does not exist yet" in " ".join(before.stdout.split())
        worker = Worker(tmp_path, 1)
        try:
            def consuming() -> bool:
                said = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, timeout=120).stdout
                return "1 worker(s) consuming" in " ".join(said.split())

            wait_until(consuming, "the worker consuming its queue", timeout=90)
        finally:
            assert worker.stop() == 0, worker.output()
        path = tmp_path / "config.yaml"
        path.write_text(path.read_text(encoding="utf-8").replace("127.0.0.1:5672", f"127.0.0.1:{socket_port_nobody_listens_on()}"),
                        encoding="utf-8")
        refused = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    said = " ".join(refused.stdout.split())
    assert "cannot connect" in said and "mail.broker.url" in said and "guest" not in said.split("broker ")[1], said
