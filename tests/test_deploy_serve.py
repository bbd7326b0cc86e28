"""A second `publisher serve` from the same config finds the web port taken and says by whom, plainly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


def start(directory: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = directory / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "publisher", "serve"], cwd=directory, stdout=out,
                                   stderr=subprocess.STDOUT, env={**env, "COLUMNS": "250"})  # fmt: skip
    return process, log


def wait_for(log: Path, process: subprocess.Popen[bytes], pattern: str, bound: float = 30.0) -> str:
    def text() -> str:
        return log.read_text(encoding="utf-8", errors="replace")

    wait_until(lambda: re.search(pattern, text()) is not None or process.poll() is not None,
               lambda: f"no {pattern!r} in:\n{text()[-3000:]}", bound, poll=0.05)
    found = text()
    assert re.search(pattern, found), f"exited with {process.returncode}, no {pattern!r} in:\n{found[-3000:]}"
    return found


def test_a_second_serve_names_the_first_one(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_config(tmp_path, extra=f"schedule:\n  collect: null\n  feeds: null\nweb:\n  host: 127.0.0.1\n  port: {port}\n")
    first, first_log = start(tmp_path, "first")
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(first_log, first, r"serve: running as pid")
        second, second_log = start(tmp_path, "second")
        text = wait_for(second_log, second, r"web: cannot serve on")
        assert f"another `publisher serve`, pid {first.pid}, already runs from {tmp_path}" in " ".join(text.split())
        assert "Traceback" not in text
    finally:
        for process in (second, first):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(20)
