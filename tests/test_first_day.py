"""First-day traps: a run before the list exists, and `run` without --date."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from publisher.config import load_config
from publisher.delivery.mail import InMemoryTransport
from publisher.pipeline import run_day
from publisher.store import Store
from tests.conftest import write_config

DAY = date(2024, 12, 2)


def test_readers_imported_after_a_first_empty_run_still_get_the_current_digest(tmp_path: Path, store_url: str) -> None:
    config = load_config(write_config(tmp_path, store_url=store_url))
    store = Store.open(config.store_url)
    try:
        transport = InMemoryTransport()
        first = run_day(config, store, DAY, transport=transport)
        en = next(e for e in first.editions if e.edition == "en")
        assert en.send is not None and en.send.recipients == 0 and transport.accepted == []

        store.subscribers.upsert("layla@example.org", language="en")  # the list is imported afterwards
        again = run_day(config, store, DAY, transport=transport)
        assert transport.recipients == ["layla@example.org"]
        en = next(e for e in again.editions if e.edition == "en")
        assert en.send is not None and en.send.sent == 1

        run_day(config, store, DAY, transport=transport)  # and a third run sends nothing twice
        assert transport.recipients == ["layla@example.org"]

        # past its send deadline (mail.retry.deadline_hours) the digest is history: a newcomer is not sent it
        record = store.digests.find("en", DAY)
        assert record is not None
        store.digests.set_status(record.id, "done", started_at=datetime.now(UTC) - timedelta(hours=13))
        store.subscribers.upsert("late@example.org", language="en")
        run_day(config, store, DAY, transport=transport)
        assert "late@example.org" not in transport.recipients
    finally:
        store.close()


def test_a_run_with_nobody_to_send_to_says_so(tmp_path: Path) -> None:
    write_config(tmp_path)
    result = subprocess.run([sys.executable, "-m", "publisher", "run", "--date", DAY.isoformat(), "--config",
                             "config.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "no recipients" in " ".join(result.stdout.split())


def test_run_without_a_date_follows_schedule_digest_day(tmp_path: Path) -> None:
    from publisher.cli.common import parse_day

    config = load_config(write_config(tmp_path, extra="schedule:\n  digest_day: yesterday\n"))
    local_today = datetime.now(UTC).astimezone(config.site.zone).date()
    # a run right at local midnight could straddle the day: accept the day before either reading
    assert parse_day(None, config) in {local_today - timedelta(days=1), local_today - timedelta(days=2)}
    today_config = load_config(write_config(tmp_path, extra="schedule:\n  digest_day: today\n"))
    assert parse_day(None, today_config) in {local_today, local_today - timedelta(days=1)}


def test_a_digest_stops_being_current_once_a_later_day_exists(tmp_path: Path, store_url: str) -> None:
    from publisher.store.schema import digests

    store = Store.open(store_url)
    try:
        now = datetime.now(UTC)
        with store.engine.begin() as connection:
            ids = [connection.execute(digests.insert().values(edition=edition, day=day, status="done", created_at=now))
                   .inserted_primary_key[0] for edition, day in (("en", DAY), ("ar", DAY + timedelta(days=1)))]
        assert store.digests.is_newest(ids[0])  # another edition's later digest does not count
        with store.engine.begin() as connection:
            connection.execute(digests.insert().values(edition="en", day=DAY + timedelta(days=1), status="done",
                                                       created_at=now))
        assert not store.digests.is_newest(ids[0]) and store.digests.is_newest(ids[1])
    finally:
        store.close()
