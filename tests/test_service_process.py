"""`publisher serve` as a real process: live reload of the schedule, refused edits, clean stops.

The running service's schedule is observed three ways: its log lines ("schedule: job X next run at
ISO"), its state file (var/serve-<pid>.json) and `publisher schedule`, which reads that file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import REPO, write_config

PUBLISHER = str(REPO / ".venv" / "bin" / "publisher")
DAMASCUS = ZoneInfo("Asia/Damascus")  # UTC+3 all year: expected times are plain arithmetic

pytestmark = pytest.mark.slow


class ServeProcess:
    """`publisher serve --no-web` in a subprocess, its output in a file the test polls."""

    def __init__(self, config: Path, *extra: str, name: str = "serve") -> None:
        self.config = config
        self.command = [PUBLISHER, "serve", "--config", str(config), "--no-web", "--poll-seconds", "0.3", *extra]
        self.log_path = config.parent / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Self:
        self._log = self.log_path.open("ab")
        environment = {**os.environ, "COLUMNS": "250"}
        self.process = subprocess.Popen(self.command, cwd=self.config.parent, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=environment)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def wait_for(self, pattern: str, *, count: int = 1, timeout: float = 60.0) -> list[re.Match[str]]:
        """Wait until `pattern` has matched `count` times in the output; returns the matches."""
        deadline = time.monotonic() + timeout
        while True:
            matches = list(re.finditer(pattern, self.text()))
            if len(matches) >= count:
                return matches
            if time.monotonic() > deadline or (self.process is not None and self.process.poll() is not None):
                raise AssertionError(f"no {count}x {pattern!r} in the output:\n{self.text()[-4000:]}")
            time.sleep(0.05)

    def send(self, signum: int) -> None:
        """Send a signal and return at once (see wait_for, wait)."""
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code; fails if the process has not exited within `timeout` (a bound, not a stopwatch)."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s later:\n{self.text()[-4000:]}") from None

    def signal(self, signum: int, timeout: float = 60.0) -> int:
        """Send a signal and wait for the process to exit; returns its exit code."""
        self.send(signum)
        return self.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PUBLISHER, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "250"})


def next_local(hour: int, minute: int, weekday: int | None = None) -> datetime:
    """The next hh:mm in Damascus (on `weekday`, Monday=0), computed without any scheduler code."""
    now = datetime.now(DAMASCUS)
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    while candidate <= now or (weekday is not None and candidate.weekday() != weekday):
        candidate += timedelta(days=1)
    return candidate


def schedule_config(tmp_path: Path, digests: str) -> Path:
    return write_config(tmp_path, extra=f"schedule:\n  collect: null\n  feeds: null\n  digests:\n{digests}")


NEXT_RUN = r"schedule: job {job} next run at (\S+) "


def test_an_edited_schedule_is_followed_without_a_restart_and_a_broken_edit_is_refused(tmp_path: Path) -> None:
    path = schedule_config(tmp_path, '    en: "0 7 * * *"\n')
    with ServeProcess(path) as serve:
        first = serve.wait_for(NEXT_RUN.format(job="digest:en"))[0]
        assert datetime.fromisoformat(first.group(1)) == next_local(7, 0)
        state_file = tmp_path / "var" / f"serve-{serve.pid}.json"
        listed = cli("schedule", "--config", str(path), cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert f"running service: pid {serve.pid}" in listed.stdout and "runs the schedule above" in listed.stdout

        # Sunday is day 0 in crontab
        path.write_text(path.read_text(encoding="utf-8").replace('"0 7 * * *"', '"30 8 * * 0"'), encoding="utf-8")
        changed = serve.wait_for(NEXT_RUN.format(job="digest:en"), count=2)[1]
        serve.wait_for(r"config reload: applied")  # the state file is written after the new schedule is logged
        sunday = next_local(8, 30, weekday=6)
        assert datetime.fromisoformat(changed.group(1)) == sunday
        assert "(30 8 * * 0, Asia/Damascus)" in serve.text()
        state = json.loads(state_file.read_text(encoding="utf-8"))
        assert [(j["id"], j["next_run"]) for j in state["jobs"]] == [("digest:en", sunday.isoformat())]

        # a broken edit: refused with file, line and key; the last good schedule keeps running
        broken = path.read_text(encoding="utf-8").replace('"30 8 * * 0"', '"61 8 * * 0"')
        path.write_text(broken, encoding="utf-8")
        line = broken.splitlines().index('    en: "61 8 * * 0"') + 1
        refusal = serve.wait_for(r"config reload refused: (\S+): schedule\.digests: (.*)")[0]
        assert refusal.group(1) == f"{path}:{line}"
        assert "minute 61 is outside 0-59" in refusal.group(2)
        listed = cli("schedule", "--config", str(path), cwd=tmp_path)
        assert listed.returncode == 2
        assert f"config error: {path}:{line}: schedule.digests" in listed.stderr
        assert "refused edit, keeping the last good config" in listed.stdout
        assert f"digest:en  30 8 * * 0  (Asia/Damascus)  next: {sunday.isoformat()}" in listed.stdout

        # jobs are added and removed by id
        path.write_text(broken.replace('    en: "61 8 * * 0"', '    ar: "15 6 * * *"'), encoding="utf-8")
        serve.wait_for(r"schedule: job digest:en removed")
        added = serve.wait_for(NEXT_RUN.format(job="digest:ar"))[0]
        serve.wait_for(r"config reload: applied", count=2)
        assert datetime.fromisoformat(added.group(1)) == next_local(6, 15)
        state = json.loads(state_file.read_text(encoding="utf-8"))
        assert [j["id"] for j in state["jobs"]] == ["digest:ar"] and state["config_problems"] == []

        assert serve.signal(signal.SIGTERM) == 0
        assert not state_file.exists()
        assert "serve: stopped" in serve.text()


def test_serve_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    path = schedule_config(tmp_path, '    en: "*/0 7 * * *"\n')
    result = cli("serve", "--config", str(path), "--no-web", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{path}: schedule.digests.en: '*/0 7 * * *' is not usable" in result.stderr


def test_sigint_stops_an_idle_service_promptly(tmp_path: Path) -> None:
    path = schedule_config(tmp_path, '    en: "0 7 * * *"\n')
    with ServeProcess(path) as serve:
        serve.wait_for(r"serve: running as pid")
        assert serve.signal(signal.SIGINT) == 0
    assert "serve: SIGINT received" in serve.text() and "serve: stopped" in serve.text()
    assert list((tmp_path / "var").glob("serve-*.json")) == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_web_pages_are_served_beside_the_schedule_and_stop_with_it(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path, extra=f'schedule:\n  collect: null\n  feeds: null\nweb:\n  host: 127.0.0.1\n  port: {port}\n')
    serve = ServeProcess(path)
    serve.command.remove("--no-web")
    with serve:
        serve.wait_for(r"serve: running as pid")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        assert serve.signal(signal.SIGTERM) == 0
    assert "serve: stopped" in serve.text()


def test_a_taken_web_port_is_logged_and_the_schedule_keeps_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = schedule_config(tmp_path, '    en: "0 7 * * *"\n').read_text(encoding="utf-8")
        config = tmp_path / "config.yaml"
        config.write_text(path + f"web:\n  host: 127.0.0.1\n  port: {port}\n", encoding="utf-8")
        serve = ServeProcess(config)
        serve.command.remove("--no-web")
        with serve:
            serve.wait_for(rf"web: cannot serve on 127\.0\.0\.1:{port}: .*the scheduler keeps running without it")
            serve.wait_for(r"serve: running as pid")
            assert serve.process is not None and serve.process.poll() is None
            code = serve.signal(signal.SIGTERM)
    assert code == 0
