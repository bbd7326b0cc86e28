"""The recording SMTP server as a separate process, for tests whose counting must outlive them.

Run:  python -m tests.support.smtp_sink --port 0 --record received.txt [--hold-after 10]
It prints one line "READY 127.0.0.1 <port>" (flushed) once it accepts connections, appends one line
"<recipient>\\t<Message-ID>" per accepted recipient to the record file (flushed at once, so a reader
sees every acceptance even if the sending process is killed with -9), and runs until SIGTERM/SIGINT.
With --hold-after N it accepts N messages, then holds its answer to the next DATA (printing
"HOLDING <accepted>") until it receives SIGUSR1: the test decides when a send may go on, no clock does.

From a test, SmtpSinkProcess starts it, waits for READY and stops it:

    with SmtpSinkProcess(record=tmp_path / "received.txt", hold_after=10) as sink:
        sender = start_publisher_subprocess(smtp_port=sink.port)
        sink.wait_holding()          # exactly 10 accepted, the 11th in flight
        ...                          # kill or signal the sender, run another command
        sink.release()
    assert read_record(tmp_path / "received.txt") == [...]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tests.support.smtp import LOOPBACK, ReceivedMessage, RecordingSmtpServer, Scripted

REPO_ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.smtp_sink", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one (default)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering each DATA")
    parser.add_argument("--record", type=Path, help="append '<recipient>\\t<Message-ID>' lines to this file")
    parser.add_argument("--reject", action="append", default=[], metavar="ADDRESS=REPLY",
                        help="answer RCPT for ADDRESS with REPLY, e.g. 'a@x.test=550 5.1.1 no such user'")
    parser.add_argument("--disconnect-after", type=int, help="close the connection after the Nth message, once")
    parser.add_argument("--no-pipelining", action="store_true", help="do not offer PIPELINING")
    parser.add_argument("--hold-after", type=int, metavar="N",
                        help="after N accepted messages hold every DATA answer until SIGUSR1")
    args = parser.parse_args(argv)

    replies: dict[str, str | Scripted] = {}
    for item in args.reject:
        address, _, reply = item.partition("=")
        if not reply[:3].isdigit():
            parser.error(f"--reject {item!r}: expected ADDRESS=CODE TEXT")
        replies[address] = reply
    record: IO[str] | None = open(args.record, "a", encoding="utf-8") if args.record else None  # noqa: SIM115
    write_lock = threading.Lock()

    def on_message(message: ReceivedMessage) -> None:
        if record is None:
            return
        with write_lock:
            for recipient in message.rcpt_tos:
                record.write(f"{recipient}\t{message.message_id or ''}\n")
            record.flush()

    server = RecordingSmtpServer(
        port=args.port, delay=args.delay, replies=replies, disconnect_after=args.disconnect_after,
        keep_messages=False, on_message=on_message, pipelining=not args.no_pipelining,
        hold_after=args.hold_after,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGUSR1, lambda *_: server.release())

    def announce_hold() -> None:
        if server.wait_holding(timeout=None):
            print(f"HOLDING {server.received}", flush=True)

    server.start()
    print(f"READY {LOOPBACK} {server.port}", flush=True)
    threading.Thread(target=announce_hold, daemon=True).start()
    try:
        stopped.wait()
    finally:
        server.stop()
        if record is not None:
            record.close()
        print(f"STOPPED received={server.received} connections={server.connections}", flush=True)
    return 0


def read_record(path: Path) -> list[tuple[str, str]]:
    """The (recipient, Message-ID) pairs a sink recorded, in arrival order."""
    if not path.exists():
        return []
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        recipient, _, message_id = line.partition("\t")
        pairs.append((recipient, message_id))
    return pairs


class SmtpSinkProcess:
    """Starts `python -m tests.support.smtp_sink` and waits until it listens."""

    def __init__(self, *, record: Path | None = None, delay: float = 0.0, port: int = 0,
                 rejects: dict[str, str] | None = None, disconnect_after: int | None = None,
                 pipelining: bool = True, hold_after: int | None = None, startup_timeout: float = 30.0) -> None:
        self.command = [sys.executable, "-m", "tests.support.smtp_sink", "--port", str(port), "--delay", str(delay)]
        if record is not None:
            self.command += ["--record", str(record)]
        for address, reply in (rejects or {}).items():
            self.command += ["--reject", f"{address}={reply}"]
        if disconnect_after is not None:
            self.command += ["--disconnect-after", str(disconnect_after)]
        if not pipelining:
            self.command.append("--no-pipelining")
        if hold_after is not None:
            self.command += ["--hold-after", str(hold_after)]
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.final_line = ""
        self.held_at: int | None = None  # messages accepted when the hold began (from "HOLDING <n>")
        self._stderr: IO[str] | None = None
        self._stderr_text = ""  # what it wrote, kept when the file is closed at stop()
        self._lines: list[str] = []
        self._ready = threading.Event()
        self._holding = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    def start(self) -> Self:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
        # stderr goes to a file: an undrained pipe could fill up and stall the sink mid-test
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self.process = subprocess.Popen(self.command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE,
                                        stderr=self._stderr, text=True)
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._ready.wait(self.startup_timeout)
        line = self._lines[0] if self._lines else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"smtp_sink did not start: {line!r} {self.stderr_text()[-2000:]}")
        self.port = int(line.split()[2])
        return self

    def _read_stdout(self) -> None:
        for line in self._stdout():
            self._lines.append(line.strip())
            if line.startswith("READY "):
                self._ready.set()
            elif line.startswith("HOLDING "):
                self.held_at = int(line.split()[1])
                self._holding.set()
        self._ready.set()  # the sink exited: whoever waits for READY looks at what it printed

    def wait_holding(self, timeout: float = 60.0) -> int:
        """Wait until the sink holds a DATA (hold_after); returns how many it had accepted by then."""
        if not self._holding.wait(timeout) or self.held_at is None:
            raise AssertionError(f"the sink held no message within {timeout} s: {self._lines} {self.stderr_text()[-2000:]}")
        return self.held_at

    def release(self) -> None:
        """Let the held DATA and every later one be answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        self.final_line = self._lines[-1] if self._lines else ""
        if self._stderr is not None:
            self._stderr_text = self.stderr_text()
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _stdout(self) -> IO[str]:
        assert self.process is not None and self.process.stdout is not None
        return self.process.stdout

    def stderr_text(self) -> str:
        """What the sink wrote to stderr so far (tracebacks, aiosmtpd warnings)."""
        if self._stderr is None:
            return self._stderr_text
        self._stderr.seek(0)
        return self._stderr.read()


if __name__ == "__main__":
    sys.exit(main())
