"""How fast SmtpTransport sends, against a bare smtplib loop over one connection, in the same run.

    .venv/bin/python benchmarks/smtp_send.py                      # 5,000 x ~25 KB, aiosmtpd sink
    .venv/bin/python benchmarks/smtp_send.py --sink fast -n 20000 # a leaner sink: stresses the sender

The sink runs in a separate process so it does not share the sender's GIL: "aiosmtpd" is the tests'
recording server (tests/support/smtp_sink.py, nothing kept in memory), "fast" a minimal asyncio SMTP
responder in this file that reads DATA in one piece (closer to postfix's smtp-sink). The N messages
are split into rounds; each round runs both sides on the same messages, alternating which goes first,
so warm-up, drift and a busy machine do not favour either. Printed per
side: messages/s (wall clock) and the sender's CPU time per message; then the ratio transport / bare
(target >= 0.9). Not a pytest test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(REPO))

from publisher.config import SmtpSettings  # noqa: E402
from publisher.delivery.mail import SmtpTransport  # noqa: E402
from publisher.models import OutgoingMessage  # noqa: E402
from tests.support.messages import sample_message  # noqa: E402
from tests.support.smtp_sink import SmtpSinkProcess  # noqa: E402

LOOPBACK = "127.0.0.1"


@dataclass
class Run:
    side: str
    messages: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.wall


# --- the two senders -----------------------------------------------------------------------------


def send_with_transport(port: int, batch: list[OutgoingMessage], batch_size: int) -> int:
    settings = SmtpSettings(kind="smtp", host=LOOPBACK, port=port, security="none", timeout=30,
                            local_hostname="bench.test")
    sent = 0
    with SmtpTransport(settings) as transport:
        for start in range(0, len(batch), batch_size):
            sent += transport.send(batch[start : start + batch_size]).sent
    return sent


def send_bare(port: int, batch: list[OutgoingMessage], _batch_size: int) -> int:
    with smtplib.SMTP(LOOPBACK, port, local_hostname="bench.test", timeout=30) as connection:
        for message in batch:
            connection.sendmail(message.sender, [message.recipient], message.data)
    return len(batch)


def measure(side: str, sender: Callable[[int, list[OutgoingMessage], int], int], port: int,
            batch: list[OutgoingMessage], batch_size: int) -> Run:
    wall, cpu = time.perf_counter(), time.process_time()
    sent = sender(port, batch, batch_size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if sent != len(batch):
        raise SystemExit(f"{side}: only {sent} of {len(batch)} messages accepted")
    return Run(side, sent, wall, cpu)


# --- a lean sink (python benchmarks/smtp_send.py --serve-fast-sink) ------------------------------


async def _serve_fast_sink(pipelining: bool) -> None:
    received = 0

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        writer.write(b"220 sink.test ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                received += 1
                writer.write(b"250 2.0.0 Ok: queued as F%d\r\n" % received)
            elif verb == b"EHLO":
                writer.write(b"250-sink.test\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"") + b"250 8BITMIME\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(session, LOOPBACK, 0, limit=64 * 1024 * 1024)
    print(f"READY {LOOPBACK} {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


class FastSinkProcess:
    def __init__(self, pipelining: bool) -> None:
        self.command = [sys.executable, __file__, "--serve-fast-sink"] + ([] if pipelining else ["--no-pipelining"])

    def __enter__(self) -> FastSinkProcess:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            self.process.kill()
            raise SystemExit(f"fast sink did not start: {line!r}")
        self.port = int(line.split()[2])
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=5_000)
    parser.add_argument("--size", type=int, default=25_000, help="approximate bytes per message")
    parser.add_argument("--batch", type=int, default=500, help="messages per SmtpTransport.send() call")
    parser.add_argument("--rounds", type=int, default=10,
                        help="N is split into this many rounds; each runs both sides, order alternating")
    parser.add_argument("--sink", choices=["aiosmtpd", "fast"], default="aiosmtpd")
    parser.add_argument("--no-pipelining", action="store_true",
                        help="the sink does not offer PIPELINING (bare smtplib never uses it)")
    parser.add_argument("--serve-fast-sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fast_sink:
        asyncio.run(_serve_fast_sink(not args.no_pipelining))
        return

    template = sample_message(0, "reader@example.test", size=args.size)
    batch = [
        OutgoingMessage(n, template.sender, f"reader{n}@example.test", f"<{n}.bench@example.test>", template.data)
        for n in range(args.messages)
    ]
    print(f"{args.messages} messages of {len(template.data):,} bytes (multipart/alternative, QP), "
          f"sink: {args.sink} in its own process, PIPELINING {'offered' if not args.no_pipelining else 'not offered'}, "
          f"transport batches of {args.batch}, {os.cpu_count()} CPUs")
    sides = {"transport": send_with_transport, "bare smtplib": send_bare}
    runs: list[Run] = []
    per_round = [batch[i :: args.rounds] for i in range(args.rounds)]  # each side sends all N in total
    pipelining = not args.no_pipelining
    sink = FastSinkProcess(pipelining) if args.sink == "fast" else SmtpSinkProcess(pipelining=pipelining)
    with sink:
        port = sink.port
        measure("warm-up", send_bare, port, batch[: min(200, len(batch))], args.batch)
        for number, chunk in enumerate(per_round):
            order = list(sides) if number % 2 == 0 else list(reversed(sides))
            pair = {side: measure(side, sides[side], port, chunk, args.batch) for side in order}
            runs += pair.values()
            print(f"  round {number + 1:2}: transport {pair['transport'].rate:6.0f}/s, "
                  f"bare {pair['bare smtplib'].rate:6.0f}/s, ratio {pair['transport'].rate / pair['bare smtplib'].rate:.3f}"
                  f"  ({order[0]} first)")
    totals = {}
    for side in sides:
        mine = [r for r in runs if r.side == side]
        wall, cpu, count = sum(r.wall for r in mine), sum(r.cpu for r in mine), sum(r.messages for r in mine)
        totals[side] = count / wall
        print(f"{side:>12}: {count / wall:8.0f} messages/s  ({count / wall * len(template.data) / 1e6:.1f} MB/s), "
              f"sender CPU {cpu / count * 1e6:.0f} µs/message")
    ratios = [a.rate / b.rate for a, b in zip(runs[0::2], runs[1::2], strict=True)]
    ratios = [r if runs[2 * i].side == "transport" else 1 / r for i, r in enumerate(ratios)]
    print(f"ratio transport / bare: {totals['transport'] / totals['bare smtplib']:.3f} overall, "
          f"{statistics.median(ratios):.3f} median of rounds (target >= 0.9)")


if __name__ == "__main__":
    main()
