"""The service's jobs against a real store and the real pipeline, with a clock the test moves.

Missed slots within grace are sent, later ones flagged, too-late ones recorded as skipped; a restart
sends nothing twice; digests left unfinished are completed once nobody holds their lease.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import publisher.jobs as service_module
from publisher.config import load_config
from publisher.jobs import ServiceJobs
from publisher.live_config import LiveConfig
from publisher.pipeline.send import LEASE
from publisher.store import Store
from tests.conftest import write_config

DAMASCUS = ZoneInfo("Asia/Damascus")
DAY = date(2026, 11, 20)
SUBSCRIBERS = [f"reader{i}@example.test" for i in range(5)]
SCHEDULE = """schedule:
  collect: "*/15 * * * *"
  feeds: null
  digests:
    en: "0 7 * * *"
  digest_day: today
  grace_minutes: 60
  max_lateness_hours: 6
"""


def local(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=DAMASCUS).astimezone(UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, Store]]:
    articles = tmp_path / "articles"
    articles.mkdir()
    for day in (DAY - timedelta(days=1), DAY):
        for number in range(3):
            (articles / f"story-{day}-{number}.md").write_text(
                f"---\ntitle: Story {number} of {day}\ndate: {day.isoformat()} 0{number + 3}:00\nlanguage: en\n"
                f"section: politics\nsummary: Summary {number}.\n---\nBody {number}.\n",
                encoding="utf-8",
            )
    path = write_config(tmp_path, sources="  - kind: files\n    name: desk\n    path: articles\n", extra=SCHEDULE)
    store = Store.open(load_config(path).store_url)
    for email in SUBSCRIBERS:
        store.subscribers.upsert(email, language="en")
    try:
        yield path, store
    finally:
        store.close()


def jobs_for(path: Path, store: Store, clock: Clock, **kwargs: object) -> ServiceJobs:
    return ServiceJobs(LiveConfig(path), store, threading.Event(), clock=clock, **kwargs)  # type: ignore[arg-type]


def delivered(tmp_path: Path) -> list[str]:
    """Recipients of the messages in the outbox, one entry per message file."""
    new = tmp_path / "outbox" / "new"
    if not new.exists():
        return []
    recipients = []
    for message in new.iterdir():
        for line in message.read_bytes().split(b"\n", 3)[:3]:
            if line.lower().startswith(b"delivered-to:"):
                recipients.append(line.split(b":", 1)[1].strip().decode())
    return sorted(recipients)


def with_history(tmp_path: Path, path: Path, store: Store) -> None:
    """Yesterday's digest went out on time: the service has run before, so today can be missed."""
    jobs_for(path, store, Clock(local(7, 5, DAY - timedelta(days=1)))).maintain()
    assert delivered(tmp_path) == sorted(SUBSCRIBERS)
    (tmp_path / "outbox" / "new").rename(tmp_path / "outbox" / "yesterday")


def slot_rows(store: Store) -> list[tuple[str, datetime, str, str | None]]:
    return [(r.job, r.slot, r.status, r.reason) for r in store.jobs.recent(50)]


def test_a_slot_missed_within_grace_is_sent_once_even_after_restarts(tmp_path: Path, site: tuple[Path, Store]) -> None:
    path, store = site
    jobs_for(path, store, Clock(local(7, 10))).maintain()
    assert delivered(tmp_path) == sorted(SUBSCRIBERS)
    ((job, slot, status, reason),) = slot_rows(store)
    assert (job, slot, status) == ("digest:en", local(7), "done")
    assert reason is not None and "5 sent" in reason and "late" not in reason

    restarted = jobs_for(path, store, Clock(local(7, 40)))
    restarted.maintain()
    restarted.digest("en")  # as APScheduler would fire it
    assert delivered(tmp_path) == sorted(SUBSCRIBERS)
    assert len(slot_rows(store)) == 1


def test_a_slot_between_grace_and_max_lateness_is_sent_and_flagged_late(tmp_path: Path, site: tuple[Path, Store]) -> None:
    path, store = site
    with_history(tmp_path, path, store)
    jobs_for(path, store, Clock(local(9, 30))).maintain()
    assert delivered(tmp_path) == sorted(SUBSCRIBERS)
    (_job, _slot, status, reason), _yesterday = slot_rows(store)
    assert status == "done"
    assert reason is not None and reason.endswith("5 sent, 0 failed, 0 skipped, 0 waiting to retry; late by 2 h 30 min (grace 60 min)")


def test_a_slot_beyond_max_lateness_is_recorded_as_skipped_and_not_sent(tmp_path: Path, site: tuple[Path, Store]) -> None:
    path, store = site
    with_history(tmp_path, path, store)
    jobs_for(path, store, Clock(local(13, 1))).maintain()
    assert delivered(tmp_path) == []
    assert store.digests.find("en", DAY) is None
    (job, slot, status, reason), _yesterday = slot_rows(store)
    assert (job, slot, status) == ("digest:en", local(7), "skipped")
    assert reason == "6 h 01 min late, beyond the maximum lateness of 6 h 00 min: not sent"


def test_a_first_start_after_grace_sends_nothing_and_reports_nothing(tmp_path: Path, site: tuple[Path, Store]) -> None:
    path, store = site
    jobs_for(path, store, Clock(local(9, 30))).maintain()
    assert delivered(tmp_path) == []
    assert slot_rows(store) == []


def test_days_missed_while_down_are_recorded_as_skipped(tmp_path: Path, site: tuple[Path, Store]) -> None:
    path, store = site
    with_history(tmp_path, path, store)
    later = DAY + timedelta(days=3)
    jobs_for(path, store, Clock(local(7, 30, later))).maintain()
    assert delivered(tmp_path) == [], "the newest slot has no articles; the missed days are not sent"
    rows = {(row[1].astimezone(DAMASCUS).date(), row[2]) for row in slot_rows(store)}
    assert rows == {(DAY - timedelta(days=1), "done"), (DAY, "skipped"), (DAY + timedelta(days=1), "skipped"),
                    (DAY + timedelta(days=2), "skipped"), (later, "done")}
    reasons = {row[3] for row in slot_rows(store) if row[2] == "skipped"}
    assert reasons == {"missed while the service was not running; superseded by 2026-11-23T07:00+03:00"}


@contextmanager
def stop_after(count: int, stop: threading.Event) -> Iterator[Callable[[str, int], Callable[[int, int], None]]]:
    def factory(_edition: str, _total: int) -> Callable[[int, int], None]:
        def report(done: int, _all: int) -> None:
            if done >= count:
                stop.set()

        return report

    yield factory


def test_an_interrupted_digest_is_completed_once_the_lease_is_free(tmp_path: Path, site: tuple[Path, Store]) -> None:
    path, store = site
    first = jobs_for(path, store, Clock(local(7, 1)))
    first.progress = lambda: stop_after(2, first.stop)
    first.maintain()
    assert len(delivered(tmp_path)) == 2
    ((_job, _slot, status, _reason),) = slot_rows(store)
    assert status == "interrupted"
    record = store.digests.find("en", DAY)
    assert record is not None and record.status == "sending"

    # a process that died while sending still holds the lease: nobody else may send yet
    dead = "elsewhere:4242:1"
    assert store.digests.claim(record.id, dead, LEASE)
    second = jobs_for(path, store, Clock(local(7, 2)))
    second.maintain()
    assert len(delivered(tmp_path)) == 2

    # the lease runs out (as LEASE after a SIGKILL): the next tick completes the digest
    assert store.digests.claim(record.id, dead, timedelta(seconds=-1))
    second.maintain()
    assert delivered(tmp_path) == sorted(SUBSCRIBERS)
    done = store.digests.find("en", DAY)
    assert done is not None and done.status == "done"
    ((_job, _slot, status, reason),) = slot_rows(store)
    assert status == "done" and reason is not None and reason.startswith("completed later by")


def test_a_slot_whose_owner_died_before_making_the_digest_is_run(
    tmp_path: Path, site: tuple[Path, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, store = site
    assert store.jobs.start("digest:en", local(7), "elsewhere:4242")  # taken, then its process died
    monkeypatch.setattr(service_module, "STALE_RUN", timedelta(0))
    jobs = jobs_for(path, store, Clock(local(7, 20)))
    jobs.maintain()
    assert delivered(tmp_path) == sorted(SUBSCRIBERS)
    ((_job, _slot, status, reason),) = slot_rows(store)
    assert status == "done" and reason is not None and "5 sent" in reason


def test_two_services_racing_for_one_slot_send_each_digest_once(tmp_path: Path, site: tuple[Path, Store]) -> None:
    path, store = site
    others = [jobs_for(path, Store.open(load_config(path).store_url), Clock(local(7, 5))) for _ in range(3)]
    threads = [threading.Thread(target=jobs.maintain) for jobs in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert delivered(tmp_path) == sorted(SUBSCRIBERS)
    assert [row[2] for row in slot_rows(store)] == ["done"]
    for jobs in others:
        jobs.store.close()


def test_an_edited_schedule_never_sends_retroactively(tmp_path: Path, site: tuple[Path, Store]) -> None:
    path, store = site
    with_history(tmp_path, path, store)
    clock = Clock(local(7, 30))
    live = LiveConfig(path)
    jobs = ServiceJobs(live, store, threading.Event(), clock=clock)
    live.add_listener(jobs.on_config)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('en: "0 7 * * *"', 'en: "0 9 * * *"'), encoding="utf-8")
    assert live.check_now()
    jobs.maintain()  # 09:00 has not come; yesterday's 09:00 has no digest but yesterday was sent
    assert delivered(tmp_path) == []
    # at 07:31 the operator moves the digest back to 07:00: the 07:00 that just passed is not sent
    clock.now = local(7, 31)
    path.write_text(text, encoding="utf-8")
    assert live.check_now()
    jobs.maintain()
    assert delivered(tmp_path) == []
    # a new edition added by an edit starts from now as well: its 07:00, 31 minutes ago, is not run
    path.write_text(text.replace('en: "0 7 * * *"', 'en: "0 7 * * *"\n    ar: "0 7 * * *"'), encoding="utf-8")
    assert live.check_now()
    jobs.maintain()
    assert delivered(tmp_path) == []
    assert [row[0] for row in slot_rows(store)] == ["digest:en"], "only yesterday's slot is recorded"
    # the next 07:00 runs as usual, for both
    clock.now = local(7, 1, DAY + timedelta(days=1))
    jobs.maintain()
    assert {(row[0], row[2]) for row in slot_rows(store) if row[1] == local(7, 0, DAY + timedelta(days=1))} == {
        ("digest:en", "done"), ("digest:ar", "done")}
