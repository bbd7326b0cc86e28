"""`publisher check`, `schedule` and `status`, run as the operator runs them."""

from __future__ import annotations

import os
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.config import load_config
from publisher.pipeline import run_digests
from publisher.pipeline.collect import BROKEN_AFTER, collect
from publisher.store import Store
from tests.conftest import REPO, write_config

PUBLISHER = str(REPO / ".venv" / "bin" / "publisher")
DAMASCUS = ZoneInfo("Asia/Damascus")
LONDON = ZoneInfo("Europe/London")

pytestmark = pytest.mark.slow


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PUBLISHER, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "250"})


def upcoming(zone: ZoneInfo, hour: int, count: int, weekday: int | None = None) -> list[datetime]:
    """The next `count` hh:00 in `zone` (on `weekday`), by plain date arithmetic."""
    now = datetime.now(zone)
    day = now.date()
    found: list[datetime] = []
    while len(found) < count:
        moment = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
        if moment > now and (weekday is None or moment.weekday() == weekday):
            found.append(moment)
        day += timedelta(days=1)
    return found


def test_check_prints_the_schedule_in_the_site_zone(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra='schedule:\n  collect: "*/15 * * * *"\n  feeds: null\n  digests:\n    en: "0 6 * * 0"\n')
    result = cli("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sundays = ", ".join(t.isoformat() for t in upcoming(DAMASCUS, 6, 3, weekday=6))
    assert f"  digest:en  0 6 * * 0  (Asia/Damascus)  next: {sundays}" in result.stdout.splitlines()
    assert "  digest:ar is not scheduled (send it with `publisher run`)" in result.stdout
    assert "sent if at most 60 min late; sent and flagged late up to 6 h" in result.stdout
    jobs = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and "next:" in line]
    assert jobs == ["collect", "digest:en"], "feeds: null schedules no feed job"


def test_a_schedule_in_its_own_zone_is_shown_in_the_site_zone(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra='schedule:\n  timezone: Europe/London\n  digests:\n    en: "0 7 * * *"\n')
    result = cli("schedule", "--config", str(path), "--count", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = ", ".join(t.astimezone(DAMASCUS).isoformat() for t in upcoming(LONDON, 7, 2))
    assert f"  digest:en  0 7 * * *  (Europe/London)  next: {runs}" in result.stdout.splitlines()
    assert "running service" not in result.stdout


def test_check_refuses_a_bad_config_with_file_line_key_and_hint(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="schedule:\n  grace_minute: 5\n")
    line = path.read_text(encoding="utf-8").splitlines().index("  grace_minute: 5") + 1
    result = cli("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{path}:{line}: schedule.grace_minute: unknown key 'grace_minute' (hint: did you mean 'grace_minutes'?)" in result.stderr


def test_check_refuses_a_line_that_never_fires(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra='schedule:\n  digests:\n    en: "0 7 30 2 *"\n')
    result = cli("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{path}: schedule.digests.en: '0 7 30 2 *' never fires" in result.stderr


def test_status_shows_digests_source_health_next_runs_and_skipped_slots(tmp_path: Path) -> None:
    articles = tmp_path / "articles"
    articles.mkdir()
    day = date(2026, 11, 20)
    (articles / "one.md").write_text(
        f"---\ntitle: One\ndate: {day} 05:00\nlanguage: en\nsection: politics\n---\nBody.\n", encoding="utf-8"
    )
    sources = (
        "  - kind: files\n    name: desk\n    path: articles\n"
        "  - kind: feed\n    name: wire\n    url: missing/feed.xml\n"
        "  - kind: files\n    name: archive\n    path: articles\n    enabled: true\n"
    )
    path = write_config(tmp_path, sources=sources, extra='schedule:\n  digests:\n    en: "0 7 * * *"\n')
    config = load_config(path)
    store = Store.open(config.store_url)
    try:
        for email in ("a@example.test", "b@example.test"):
            store.subscribers.upsert(email, language="en")
        for _ in range(BROKEN_AFTER):
            collect(config, store)
        store.sources.record_success("archive", etag=None, last_modified=None, count=1)
        store.sources.record_failure("archive", "read timed out")  # once: not broken
        run_digests(config, store, day, editions=["en"])
        slot = datetime(2026, 11, 21, 7, tzinfo=DAMASCUS)
        store.jobs.start("digest:en", slot, "host:1", status="skipped", reason="13 h late, beyond the maximum lateness")
    finally:
        store.close()

    result = cli("status", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "no `publisher serve` is running from here" in out
    digest_row = next(line for line in out.splitlines() if "2026-11-20" in line)
    assert [cell.strip() for cell in digest_row.strip("│ ").split("│")][:8] == ["en", "2026-11-20", "done", "2", "2", "0", "0", "0"]
    wire = next(line for line in out.splitlines() if "│ wire" in line)
    assert f"BROKEN ({BROKEN_AFTER} failures in a row)" in wire
    archive = next(line for line in out.splitlines() if "│ archive" in line)
    assert "failing once" in archive and "read timed out" in archive and "BROKEN" not in archive
    desk = next(line for line in out.splitlines() if "│ desk" in line)
    assert desk.rstrip(" │").endswith("ok")
    next_en = upcoming(DAMASCUS, 7, 1)[0].isoformat()
    assert f"  digest:en  0 7 * * *  (Asia/Damascus)  next: {next_en}" in out.splitlines()
    assert "  digest:en  2026-11-21T07:00+03:00  SKIPPED: 13 h late, beyond the maximum lateness" in out.splitlines()
