"""The systemd units in deploy/systemd: `systemd-analyze verify` finds nothing to say, and the commands
they run work as written (the unit's Environment=, ExecStartPre=, ExecStart= and KillSignal=)."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require, write_config
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
UNITS = REPO / "deploy" / "systemd"
VENV_BIN = str(Path(sys.executable).parent)


def localized(unit: str, root: Path) -> str:
    """The unit with this checkout's venv for /opt/publisher/.venv/bin and `root` for /srv/publisher."""
    text = (UNITS / unit).read_text(encoding="utf-8")
    return text.replace("/opt/publisher/.venv/bin", VENV_BIN).replace("/srv/publisher", str(root))


def service_section(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser["Service"]


@pytest.mark.parametrize("units", [["publisher.service"], ["publisher-backup.service", "publisher-backup.timer"],
                                   ["publisher-worker@.service"]])
def test_systemd_analyze_verify_is_silent(tmp_path: Path, units: list[str]) -> None:
    tool = shutil.which("systemd-analyze")
    require(tool is not None, "systemd-analyze is not installed (Debian: apt install systemd)")
    assert tool is not None
    paths = []
    for unit in units:
        path = tmp_path / unit.replace("@.", "@1.")  # a template is verified as one of its instances
        path.write_text(localized(unit, tmp_path), encoding="utf-8")
        paths.append(str(path))
    result = subprocess.run([tool, "verify", *paths], capture_output=True, text=True, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if any(unit.split("@")[0] in line for unit in units)]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_the_units_commands_run_as_written(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_config(tmp_path, extra=f"schedule:\n  collect: null\n  feeds: null\nweb:\n  host: 127.0.0.1\n  port: {port}\n")
    (tmp_path / "var").mkdir()
    service = service_section(localized("publisher.service", tmp_path))
    name, _, value = service["Environment"].partition("=")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}, name: value}
    cwd = service["WorkingDirectory"]
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert Path(value) == tmp_path / "config.yaml"
    pre = subprocess.run(shlex.split(service["ExecStartPre"]), cwd=other, env=env, capture_output=True, text=True, timeout=60)
    assert pre.returncode == 0, pre.stdout + pre.stderr
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(shlex.split(service["ExecStart"]), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "serve: running as pid" in log.read_text(errors="replace") or process.poll() is not None,
                   lambda: log.read_text(errors="replace"), 30, poll=0.05)
        assert process.poll() is None, log.read_text(errors="replace")
        assert '"level": "info"' in log.read_text(errors="replace")  # --log-format json, for the journal
        process.send_signal(getattr(signal, service["KillSignal"]))
        assert process.wait(float(service["TimeoutStopSec"])) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    assert int(service["RestartPreventExitStatus"]) == 2  # a config error: restarting cannot fix it

    backup = service_section(localized("publisher-backup.service", tmp_path))
    run = subprocess.run(shlex.split(backup["ExecStart"]), cwd=backup["WorkingDirectory"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert list((tmp_path / "var" / "backup").glob("publisher-*.db"))
