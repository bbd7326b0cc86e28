"""The whole send of a big list into postfix's smtp-sink, against a bare pipelined loop, same run.

    .venv/bin/python benchmarks/send_many.py --subscribers 100000 200000 \\
        [--store-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--connections 4] [--profile 20000]

Per size and store: N subscribers (half ar, half en: two editions, the real ten-story digest from
samples/articles), `publisher`'s run_digests (fill the ledger, claim, compose, SMTP over C connections,
grouped commits) in its own process; then, in another process, the baseline: a bare loop over the
same C connections (raw sockets, MAIL/RCPT/DATA pipelined, the same message bytes built once) sending
the same number of messages. Printed beside each figure: CPUs and load. Peak RSS is per process
(ru_maxrss of that child). The ledger fill (INSERT ... SELECT ... ON CONFLICT DO NOTHING) is timed
per 100k rows at each size: linear when the figure stays the same. --profile N: cProfile of one
send of N with one connection (every stage then runs in one thread; --profile-connections C: the
claimer thread of a C-connection send), top functions by own time. Each row also prints the CPU per
message spent by each kind of thread (claimer, committer, the senders summed).
--smtplib [pipelined|sendmail|both]: also smtplib loops over the same connections: the issue's "bare
pipelined smtplib loop" (smtplib's replies, MAIL/RCPT/DATA in one write, each message dot-stuffed as
smtplib's data() does), and smtplib.sendmail per message (it dot-stuffs each message and does not
pipeline); both when no kind is named. smtp-sink's own CPU per message (/proc) is printed for
publisher's run and the bare loop's, and publisher's minor page faults per message.
Without --store-url the store is SQLite in a temporary folder. Not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.pipeline_send import fill_subscribers  # noqa: E402
from benchmarks.stores import check_reachable, fresh_store, machine  # noqa: E402
from publisher.config import load_config  # noqa: E402
from publisher.models import Recipient  # noqa: E402
from publisher.pipeline import collect, message_template, run_digests, select_digest  # noqa: E402
from publisher.store import Store  # noqa: E402
from publisher.store.deliveries import DeliveryLedger  # noqa: E402
from tests.conftest import write_config  # noqa: E402

DAY_TEXT = "2024-12-02"
SINK = "/usr/sbin/smtp-sink"


def smtp_config(directory: Path, store_url: str, port: int, connections: int) -> Path:
    transport = f"kind: smtp\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout: 60"
    path = write_config(directory, store_url=store_url, transport=transport, connections=connections)
    path.write_text(path.read_text(encoding="utf-8").replace("  batch_size: 50\n", "  batch_size: 1000\n"),
                    encoding="utf-8")
    return path


# --- the children (one process each, so RSS and CPU are theirs alone) -----------------------------


def child_pipeline(count: int, store_url: str, port: int, connections: int, profile: bool) -> dict[str, Any]:
    from datetime import date

    with tempfile.TemporaryDirectory() as workdir:
        config = load_config(smtp_config(Path(workdir), store_url, port, connections))
        store = Store.open(config.store_url)
        started = time.perf_counter()
        fill_subscribers(store, count // 2, language="ar")
        fill_subscribers(store, count - count // 2, language="en", offset=count // 2)
        fill_seconds = time.perf_counter() - started
        collect(config, store)
        enqueue_seconds: list[float] = []
        original = DeliveryLedger.enqueue

        def timed(self: DeliveryLedger, *args: Any, **kwargs: Any) -> int:
            began = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                enqueue_seconds.append(time.perf_counter() - began)

        DeliveryLedger.enqueue = timed  # type: ignore[method-assign]
        threads = thread_cpu()
        profiler = cProfile.Profile(time.thread_time) if profile else None  # CPU, not waits
        wall, cpu = time.perf_counter(), time.process_time()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        if profiler:
            profiler.enable()
        claimer = time.thread_time()
        outcomes = run_digests(config, store, date.fromisoformat(DAY_TEXT))
        threads["claimer"] = time.thread_time() - claimer
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        sent = sum(o.send.sent for o in outcomes if o.send)
        errors = [o.error or (o.send.error if o.send else None) for o in outcomes]
        store.close()
    result: dict[str, Any] = {
        "sent": sent, "wall": wall, "cpu": cpu, "errors": [e for e in errors if e],
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "faults": faults / max(1, sent), "fill_s": fill_seconds, "enqueue_s": sum(enqueue_seconds), "store": store_url.split(":", 1)[0],
        "threads_us": {name: seconds / max(1, sent) * 1e6 for name, seconds in threads.items()},
    }
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
        top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:15]  # type: ignore[attr-defined]
        result["profile"] = [(f"{Path(f).name}:{line}:{name}", own / total) for (f, line, name), (_, _, own, _, _) in top]
    return result


def thread_cpu() -> dict[str, float]:
    """CPU seconds per kind of thread of the send (claimer, committer, senders summed), filled in
    as each thread ends: time.thread_time() taken inside the thread's own loop."""
    from publisher.pipeline import committer, senders

    spent: dict[str, float] = {"senders": 0.0, "committer": 0.0}
    lock = threading.Lock()
    serve, commit = senders.SenderPool._serve, committer.Committer._serve

    def sender(self: senders.SenderPool, channel: senders.Channel) -> None:
        began = time.thread_time()
        try:
            serve(self, channel)
        finally:
            with lock:
                spent["senders"] += time.thread_time() - began

    def committing(self: committer.Committer) -> None:
        began = time.thread_time()
        try:
            commit(self)
        finally:
            with lock:
                spent["committer"] += time.thread_time() - began

    senders.SenderPool._serve = sender  # type: ignore[method-assign]
    committer.Committer._serve = committing  # type: ignore[method-assign]
    return spent


def sample_messages(port: int, *, wire: bool = True) -> list[tuple[str, bytes]]:
    """The two editions' messages as the pipeline sends them, built once: wire form (dot-stuffed,
    the end marker included), or as a message (wire=False, for smtplib, which stuffs it itself)."""
    from datetime import date

    with tempfile.TemporaryDirectory() as workdir:
        config = load_config(smtp_config(Path(workdir), f"sqlite:///{workdir}/m.db", port, 1))
        store = Store.open(config.store_url)
        collect(config, store)
        built = []
        for language in ("ar", "en"):
            edition = config.edition(language)
            selected = select_digest(config, store, edition, date.fromisoformat(DAY_TEXT), dry_run=True)
            template = message_template(config, edition, selected, None)
            person = Recipient(1, "reader1@example.org", "قارئ 1", "<d.1.1.abcdef@news.example.org>",
                               "http://127.0.0.1:8080/unsubscribe/tok", "http://127.0.0.1:8080/preferences/tok")
            message, stuffed = template.personalize_for_smtp(person)
            built.append((language, stuffed if wire else message))
        store.close()
    return built


def child_bare(count: int, port: int, connections: int) -> dict[str, Any]:
    messages = sample_messages(port)

    def loop(number: int, total: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            reader = sock.makefile("rb")
            reader.readline()
            sock.sendall(b"EHLO bare.test\r\n")
            while reader.readline()[3:4] != b" ":
                pass
            for i in range(total):
                _language, wire = messages[i % 2]
                sock.sendall(b"MAIL FROM:<digest@news.example.org>\r\nRCPT TO:<r%d.%d@example.org>\r\nDATA\r\n"
                             % (number, i))
                for _ in range(3):
                    reader.readline()
                sock.sendall(wire)
                if not reader.readline().startswith(b"250"):
                    raise SystemExit("bare loop: the sink refused a message")
            sock.sendall(b"QUIT\r\n")

    return {**run_loops(loop, count, connections), "bytes": sum(len(w) for _, w in messages) / 2}


def child_sendmail(count: int, port: int, connections: int) -> dict[str, Any]:
    """The issue's baseline: smtplib's sendmail per message (it dot-stuffs each one, one round trip
    per command: smtplib does not pipeline) over the same connections, the same message bytes."""
    import smtplib

    messages = sample_messages(port, wire=False)

    def loop(number: int, total: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="bare.test", timeout=60) as client:
            for i in range(total):
                client.sendmail("digest@news.example.org", [f"r{number}.{i}@example.org"], messages[i % 2][1])

    return run_loops(loop, count, connections)


def child_pipelined(count: int, port: int, connections: int) -> dict[str, Any]:
    """The baseline as the issue names it, "a bare pipelined smtplib loop": smtplib's connection and
    reply parsing, MAIL/RCPT/DATA in one write, each message dot-stuffed as smtplib's data() does it."""
    import smtplib

    messages = sample_messages(port, wire=False)

    def loop(number: int, total: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="bare.test", timeout=60) as client:
            client.ehlo()
            for i in range(total):
                client.send(b"MAIL FROM:<digest@news.example.org>\r\nRCPT TO:<r%d.%d@example.org>\r\nDATA\r\n"
                            % (number, i))
                for _ in range(3):
                    client.getreply()
                stuffed = smtplib._quote_periods(messages[i % 2][1])  # what SMTP.data() sends
                client.send(stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n")
                if client.getreply()[0] != 250:
                    raise SystemExit("pipelined smtplib loop: the sink refused a message")

    return run_loops(loop, count, connections)


def run_loops(loop: Callable[[int, int], None], count: int, connections: int) -> dict[str, Any]:
    """`loop(number, total)` on one thread per connection, the count shared out; wall and CPU timed."""
    share = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
    threads = [threading.Thread(target=loop, args=(n, share[n])) for n in range(connections)]
    wall, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"sent": count, "wall": wall, "cpu": cpu, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# --- the parent ---------------------------------------------------------------------------------


def run_child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


SINK_PID: list[int] = []


def sink_cpu(pid: int) -> float:
    """CPU seconds smtp-sink has used so far (user + system, from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sink:
    def __enter__(self) -> int:
        if not Path(SINK).exists():
            raise SystemExit(f"{SINK} not found: install postfix (its smtp-sink is the server measured against)")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.process = subprocess.Popen([SINK, "-u", "nobody", f"127.0.0.1:{self.port}", "1000"])
        SINK_PID[:] = [self.process.pid]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self.port
            except OSError:
                time.sleep(0.05)
        raise SystemExit("smtp-sink did not start")

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="*", default=[100_000, 200_000])
    parser.add_argument("--store-url", action="append", default=[],
                        help="a PostgreSQL server (a fresh database per measurement) or a SQLite file; repeatable")
    parser.add_argument("--sqlite", action="store_true", help="also measure SQLite in a temporary folder")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--smtplib", nargs="?", const="both", choices=["pipelined", "sendmail", "both"],
                        help="also the issue's pipelined smtplib loop, smtplib.sendmail per message, or both (the "
                             "default); both stuff each message")
    parser.add_argument("--profile", type=int, default=0, help="profile one send of this many (one connection)")
    parser.add_argument("--profile-connections", type=int, default=1,
                        help="connections of the profiled send (more than one: cProfile sees the claimer thread only)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "pipeline":
            count, url, port, connections, profile = rest
            result = child_pipeline(int(count), url, int(port), int(connections), profile == "1")
        else:
            count, port, connections = rest
            loop = {"bare": child_bare, "sendmail": child_sendmail, "pipelined": child_pipelined}[kind]
            result = loop(int(count), int(port), int(connections))
        print(json.dumps(result))
        return
    stores: list[str | None] = list(args.store_url) or [None]
    if args.store_url and args.sqlite:
        stores.append(None)
    for url in stores:
        if url:
            check_reachable(url)
    print(f"{shutil.which('python3')} | smtp-sink {SINK} on loopback | {args.connections} connections | {machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="send-many-"))
    rows = []
    with Sink() as port:
        sink_pid = SINK_PID[0]
        for url in stores:
            for count in args.subscribers:
                with fresh_store(url, workdir, f"n{count}") as store_url:
                    before = machine()
                    sink = sink_cpu(sink_pid)
                    ours = run_child("pipeline", str(count), store_url, str(port), str(args.connections), "0")
                    ours["sink_us"] = (sink_cpu(sink_pid) - sink) / count * 1e6
                    sink = sink_cpu(sink_pid)
                    bare = run_child("bare", str(count), str(port), str(args.connections))
                    bare["sink_us"] = (sink_cpu(sink_pid) - sink) / count * 1e6
                    if args.smtplib:
                        for kind in ("pipelined", "sendmail") if args.smtplib == "both" else (args.smtplib,):
                            bare[kind] = run_child(kind, str(count), str(port), str(args.connections))
                    if ours["sent"] != count or ours["errors"]:
                        raise SystemExit(f"the pipeline sent {ours['sent']} of {count}: {ours['errors']}")
                    rows.append((count, ours, bare, before, machine()))
                    report(rows[-1])
        if args.profile:
            with fresh_store(stores[0], workdir, "profile") as store_url:
                profiled = run_child("pipeline", str(args.profile), store_url, str(port), str(args.profile_connections), "1")
            print(f"\nwhere the time goes: {args.profile} messages, {args.profile_connections} connection(s), {profiled['store']} "
                  f"(cProfile, own time; cProfile itself slows the run) | {machine()}")
            for name, share in profiled["profile"]:
                print(f"  {share * 100:5.1f} %  {name}")
    shutil.rmtree(workdir, ignore_errors=True)
    by_store: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for count, ours, _bare, _a, _b in rows:
        by_store.setdefault(ours["store"], []).append((count, ours))
    for store, measured in by_store.items():
        if len(measured) > 1:
            (small, a), (large, b) = measured[0], measured[-1]
            print(f"{store}: peak RSS x{b['rss_mib'] / a['rss_mib']:.2f} for x{large / small:.0f} subscribers "
                  f"(target <= 1.2); ledger fill {a['enqueue_s'] / small * 1e5:.2f} s then "
                  f"{b['enqueue_s'] / large * 1e5:.2f} s per 100k rows (linear: the same)")


def report(row: tuple[int, dict[str, Any], dict[str, Any], str, str]) -> None:
    count, ours, bare, before, after = row
    rate, bare_rate = count / ours["wall"], count / bare["wall"]
    cpu, bare_cpu = ours["cpu"] / count * 1e6, bare["cpu"] / count * 1e6
    print(f"{ours['store']:>10} {count:>8}: publisher {rate:6.0f} msg/s, CPU {cpu:5.0f} µs/msg, RSS {ours['rss_mib']:5.1f} MiB"
          f" | bare loop {bare_rate:6.0f} msg/s, CPU {bare_cpu:5.0f} µs/msg, RSS {bare['rss_mib']:5.1f} MiB"
          f" | throughput ratio {rate / bare_rate:.2f} (>= 0.9), CPU ratio {cpu / bare_cpu:.2f} (<= 1.3)"
          f" | CPU µs/msg by thread: {', '.join(f'{k} {v:.0f}' for k, v in ours['threads_us'].items())}"
          f" | smtp-sink CPU µs/msg: {ours['sink_us']:.0f} with publisher, {bare['sink_us']:.0f} with the bare loop"
          f"{smtplib_line(count, rate, cpu, bare.get('pipelined'), 'pipelined smtplib loop')}"
          f"{smtplib_line(count, rate, cpu, bare.get('sendmail'), 'smtplib sendmail loop')}"
          f" | page faults {ours['faults']:.1f}/msg | fill {ours['fill_s']:.1f} s, ledger {ours['enqueue_s']:.1f} s | {before} -> {after}"
          f" | {bare['bytes'] / 1024:.0f} KiB/msg", flush=True)


def smtplib_line(count: int, rate: float, cpu: float, baseline: dict[str, Any] | None, what: str) -> str:
    if baseline is None:
        return ""
    their_rate, their_cpu = count / baseline["wall"], baseline["cpu"] / count * 1e6
    return (f" | {what} {their_rate:6.0f} msg/s, CPU {their_cpu:5.0f} µs/msg:"
            f" throughput ratio {rate / their_rate:.2f}, CPU ratio {cpu / their_cpu:.2f}")


if __name__ == "__main__":
    main()
