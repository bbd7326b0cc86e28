"""One `publisher worker` against two, through RabbitMQ into postfix's smtp-sink, same digest, same list.

    .venv/bin/python benchmarks/broker_send.py [--subscribers 20000] [--connections 4] \\
        [--store-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--broker amqp://guest:guest@127.0.0.1:5672//]

Per worker count (1, then 2): a fresh PostgreSQL database, N subscribers (half ar, half en: the two
sample editions' real ten-story digests), N workers started and consuming a queue of their own, then
the coordinator (run_digests in this process: fill the ledger, enqueue batches of mail.broker.batch,
wait on the ledger) timed from the ledger fill to the last row sent. Each worker sends through
--connections SMTP connections into one smtp-sink. Printed: msg/s, the speed-up of two over one
(the baseline, measured in the same run), the CPU seconds of the sink, the workers and the
coordinator (from /proc/<pid>/stat and this process's own clock), the sink's share of those and of
the whole machine's busy CPU (/proc/stat: RabbitMQ, PostgreSQL and anything else running included),
and the load average before and after. Not a test.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.pipeline_send import fill_subscribers  # noqa: E402
from benchmarks.send_many import Sink, smtp_config  # noqa: E402
from benchmarks.stores import check_reachable, fresh_store, machine  # noqa: E402
from publisher.config import load_config  # noqa: E402
from publisher.pipeline import collect, run_digests  # noqa: E402
from publisher.store import Store  # noqa: E402

DAY = date(2024, 12, 2)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its waited-for children, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (every process: ours, the broker, the store, others')."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICKS


def consumers(broker: str, queue: str) -> int:
    import amqp

    host = broker.split("@", 1)[1].split("/", 1)[0]
    connection = amqp.Connection(host=host, userid="guest", password="guest")
    connection.connect()
    try:
        _name, _messages, count = connection.channel().queue_declare(queue, passive=True)
        return int(count)
    except amqp.exceptions.NotFound:
        return 0
    finally:
        connection.close()


def delete_queue(broker: str, queue: str) -> None:
    import amqp

    host = broker.split("@", 1)[1].split("/", 1)[0]
    connection = amqp.Connection(host=host, userid="guest", password="guest")
    connection.connect()
    try:
        channel = connection.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(queue)
    finally:
        connection.close()


def measure(workers: int, count: int, store_url: str, broker: str, port: int, connections: int, sink_pid: int,
            workdir: Path) -> dict[str, Any]:
    directory = workdir / f"w{workers}"
    directory.mkdir()
    queue = f"publisher.bench.{uuid.uuid4().hex[:8]}"
    path = smtp_config(directory, store_url, port, connections)
    text = path.read_text(encoding="utf-8").replace(
        "  retry:\n", f"  broker:\n    url: {broker}\n    queue: {queue}\n    batch: 500\n    wait_minutes: 5\n  retry:\n", 1)
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    store = Store.open(config.store_url)
    fill_subscribers(store, count // 2, language="ar")
    fill_subscribers(store, count - count // 2, language="en", offset=count // 2)
    collect(config, store)
    logs = [(directory / f"worker-{n}.log").open("wb") for n in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-m", "publisher", "worker", "--config", str(path)], cwd=directory,
                              stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        deadline = time.monotonic() + 60
        while consumers(broker, queue) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"the workers did not start consuming {queue}; see {directory}/worker-*.log")
            time.sleep(0.2)
        before_load = machine()
        sink0, workers0 = cpu_seconds(sink_pid), [cpu_seconds(p.pid) for p in procs]
        busy0 = machine_busy_seconds()
        wall, own = time.perf_counter(), time.process_time()
        outcomes = run_digests(config, store, DAY)
        wall, own = time.perf_counter() - wall, time.process_time() - own
        sink = cpu_seconds(sink_pid) - sink0
        busy = machine_busy_seconds() - busy0
        worker_cpu = sum(cpu_seconds(p.pid) - w0 for p, w0 in zip(procs, workers0, strict=True))
        after_load = machine()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(120)
        for log in logs:
            log.close()
        store.close()
        delete_queue(broker, queue)
    sent = sum(o.send.sent for o in outcomes if o.send)
    errors = [e for e in (o.error or (o.send.error if o.send else None) for o in outcomes) if e]
    if sent != count or errors:
        raise SystemExit(f"{workers} worker(s): sent {sent} of {count}: {errors}")
    return {"workers": workers, "wall": wall, "rate": count / wall, "sink_cpu": sink, "worker_cpu": worker_cpu,
            "coordinator_cpu": own, "busy": busy, "load": f"{before_load} -> {after_load}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4, help="mail.connections of each worker")
    parser.add_argument("--store-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    args = parser.parse_args()
    check_reachable(args.store_url)
    print(f"{args.subscribers} subscribers | {args.connections} connections per worker | RabbitMQ {args.broker.split('@')[-1]}"
          f" | smtp-sink on loopback | {machine()}", flush=True)
    rows = []
    sink = Sink()
    with tempfile.TemporaryDirectory(prefix="broker-send-") as workdir, sink as port:
        sink_pid = sink.process.pid
        for workers in (1, 2):
            with fresh_store(args.store_url, Path(workdir), f"w{workers}") as store_url:
                row = measure(workers, args.subscribers, store_url, args.broker, port, args.connections, sink_pid,
                              Path(workdir))
            rows.append(row)
            total = row["sink_cpu"] + row["worker_cpu"] + row["coordinator_cpu"]
            print(f"{workers} worker(s): {row['rate']:6.0f} msg/s ({row['wall']:.1f} s) | CPU s: sink {row['sink_cpu']:.1f}"
                  f" ({row['sink_cpu'] / row['wall'] * 100:.0f} % of a core), workers {row['worker_cpu']:.1f},"
                  f" coordinator {row['coordinator_cpu']:.1f}; the sink's share {row['sink_cpu'] / total * 100:.0f} % of those,"
                  f" {row['sink_cpu'] / row['busy'] * 100:.0f} % of the machine's busy CPU ({row['busy']:.1f} s)"
                  f" | {row['load']}", flush=True)
    one, two = rows
    print(f"speed-up of two workers over one (baseline, same run): x{two['rate'] / one['rate']:.2f} "
          f"on {os.cpu_count()} CPUs shared by the sink, RabbitMQ, PostgreSQL and the coordinator")


if __name__ == "__main__":
    main()
