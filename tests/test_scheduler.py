"""Cron lines as crontab means them, daylight saving, lateness rules, and job changes by id."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.config import Config, load_config
from publisher.scheduler import (
    PlannedJob,
    Scheduler,
    decide,
    digest_day,
    due_slots,
    fire_times,
    next_fire_times,
    planned_jobs,
    validate_schedule,
)
from tests.conftest import write_config

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
DAMASCUS = ZoneInfo("Asia/Damascus")


def job(line: str, zone: str = "UTC") -> PlannedJob:
    return PlannedJob("digest:en", "digest", line, zone, "en")


def local_runs(line: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    return [t.astimezone(zone) for t in fire_times(job(line, zone.key), start, end)]


def make_config(tmp_path: Path, schedule: str) -> Config:
    return load_config(write_config(tmp_path, extra=f"schedule:\n{schedule}"))


# --- crontab meaning -------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["0 6 * * 0", "0 6 * * 7", "0 6 * * sun", "0 6 * * SUN"])
def test_day_of_week_zero_and_seven_are_sunday(line: str) -> None:
    wednesday = datetime(2026, 11, 25, 12, tzinfo=UTC)
    runs = next_fire_times(job(line), wednesday, 3)
    assert [r.date() for r in runs] == [date(2026, 11, 29), date(2026, 12, 6), date(2026, 12, 13)]
    assert all(r.weekday() == 6 and r.hour == 6 for r in runs)


@pytest.mark.parametrize(
    ("line", "weekdays"),
    [("0 6 * * 1-5", {0, 1, 2, 3, 4}), ("0 6 * * 5-7", {4, 5, 6}), ("0 6 * * 0,3", {6, 2}), ("0 6 * * */2", {6, 1, 3, 5})],
)
def test_day_of_week_ranges_and_steps(line: str, weekdays: set[int]) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    runs = fire_times(job(line), start, start + timedelta(days=14))
    assert {r.weekday() for r in runs} == weekdays
    assert len(runs) == 2 * len(weekdays)


def test_day_of_month_and_day_of_week_together_fire_on_either() -> None:
    # crontab(5): "0 7 1 * mon" is the 1st of the month and every Monday, not Mondays that are the 1st
    runs = fire_times(job("0 7 1 * mon"), datetime(2026, 11, 30, 12, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))
    assert [r.day for r in runs] == [1, 7, 14, 21, 28]


# --- daylight saving: a daily 01:30 runs exactly once on change days ---------------------------------


def test_london_spring_forward_runs_once_shifted_by_the_jump() -> None:
    runs = local_runs("30 1 * * *", LONDON, datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert [r.date() for r in runs] == [date(2026, 3, d) for d in (27, 28, 29, 30, 31)]
    change_day = runs[2]
    # 01:30 does not exist on 29 March: it runs once, an hour after 01:00 GMT became 02:00 BST
    assert change_day.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_london_fall_back_runs_once_at_the_first_0130() -> None:
    runs = local_runs("30 1 * * *", LONDON, datetime(2026, 10, 23, tzinfo=UTC), datetime(2026, 10, 28, tzinfo=UTC))
    assert [r.date() for r in runs] == [date(2026, 10, d) for d in (23, 24, 25, 26, 27)]
    assert runs[2].astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 01:30 BST, not 01:30 GMT


@pytest.mark.parametrize(
    ("line", "start", "change_day_utc"),
    [
        ("30 2 * * *", datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),  # 02:30 missing
        ("30 1 * * *", datetime(2026, 10, 30, tzinfo=UTC), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),  # 01:30 twice
    ],
)
def test_new_york_change_days_run_once(line: str, start: datetime, change_day_utc: datetime) -> None:
    runs = local_runs(line, NEW_YORK, start, start + timedelta(days=4))
    dates = [r.date() for r in runs]
    assert len(dates) == len(set(dates)) == 4
    assert change_day_utc in [r.astimezone(UTC) for r in runs]


def test_wildcard_hours_keep_real_time_through_the_repeated_hour() -> None:
    # every 30 minutes: the fall-back day has 25 hours, so 50 runs; the spring day 23 hours, 46 runs
    fall = local_runs("*/30 * * * *", LONDON, datetime(2026, 10, 24, 23, 0, tzinfo=UTC) - timedelta(microseconds=1),
                      datetime(2026, 10, 25, 23, 59, tzinfo=UTC))
    assert len(fall) == 50
    spring = local_runs("*/30 * * * *", LONDON, datetime(2026, 3, 29, 0, 0, tzinfo=UTC) - timedelta(microseconds=1),
                        datetime(2026, 3, 29, 22, 59, tzinfo=UTC))
    assert len(spring) == 46


# --- digest day and lateness --------------------------------------------------------------------


def test_digest_day_is_the_slot_date_in_the_site_zone(tmp_path: Path) -> None:
    slot = datetime(2026, 11, 24, 22, 30, tzinfo=UTC)  # 01:30 on the 25th in Damascus (+03)
    today = make_config(tmp_path, "  digest_day: today\n")
    assert digest_day(slot, today) == date(2026, 11, 25)
    yesterday = make_config(tmp_path, "  digest_day: yesterday\n")
    assert digest_day(slot, yesterday) == date(2026, 11, 24)


def test_lateness_rules_at_their_boundaries() -> None:
    slot = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    grace, most = timedelta(minutes=60), timedelta(hours=6)
    on_time = decide(slot, slot + grace, grace, most)
    assert on_time.run and not on_time.late and on_time.reason is None
    late = decide(slot, slot + grace + timedelta(minutes=1), grace, most)
    assert late.run and late.late and late.reason == "late by 61 min (grace 60 min)"
    still = decide(slot, slot + most, grace, most)
    assert still.run and still.late
    skipped = decide(slot, slot + most + timedelta(seconds=1), grace, most)
    assert not skipped.run and "maximum lateness of 6 h 00 min" in (skipped.reason or "")


DAILY = '  digests:\n    en: "0 7 * * *"\n  digest_day: today\n  grace_minutes: 60\n  max_lateness_hours: 6\n'


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=DAMASCUS).astimezone(UTC)


@pytest.mark.parametrize(
    ("now", "run", "late"),
    [(at(25, 7, 30), True, False), (at(25, 9, 0), True, True), (at(25, 13, 1), False, True)],
)
def test_the_newest_missed_slot_runs_or_is_skipped_by_lateness(tmp_path: Path, now: datetime, run: bool, late: bool) -> None:
    config = make_config(tmp_path, DAILY)
    (digest_job,) = [j for j in planned_jobs(config) if j.kind == "digest"]
    due = due_slots(digest_job, config, since=now - timedelta(days=7), now=now,
                    digest_exists=lambda day: False, last_digest_day=date(2026, 11, 24))
    assert [(d.slot, d.day, d.decision.run, d.decision.late) for d in due] == [(at(25, 7), date(2026, 11, 25), run, late)]
    # with no digest of the edition yet (a first start), only a slot within grace is taken
    first_start = due_slots(digest_job, config, since=now - timedelta(days=7), now=now,
                            digest_exists=lambda day: False, last_digest_day=None)
    assert [d.slot for d in first_start] == ([] if late else [at(25, 7)])


def test_days_missed_while_down_are_reported_after_the_last_digest(tmp_path: Path) -> None:
    config = make_config(tmp_path, DAILY)
    (digest_job,) = [j for j in planned_jobs(config) if j.kind == "digest"]
    now = at(25, 7, 20)
    made = {date(2026, 11, 21)}
    due = due_slots(digest_job, config, since=now - timedelta(days=7), now=now,
                    digest_exists=lambda day: day in made, last_digest_day=date(2026, 11, 21))
    assert [(d.day, d.decision.run) for d in due] == [
        (date(2026, 11, 22), False), (date(2026, 11, 23), False), (date(2026, 11, 24), False), (date(2026, 11, 25), True),
    ]
    assert "superseded by 2026-11-25T07:00+03:00" in (due[0].decision.reason or "")
    # a digest already made for the newest day (a manual run, say) leaves nothing to do for it
    made.add(date(2026, 11, 25))
    due = due_slots(digest_job, config, since=now - timedelta(days=1), now=now,
                    digest_exists=lambda day: day in made, last_digest_day=date(2026, 11, 25))
    assert due == []


def test_validation_refuses_lines_apscheduler_cannot_use_or_that_never_fire(tmp_path: Path) -> None:
    config = make_config(tmp_path, '  collect: "*/0 * * * *"\n  digests:\n    en: "0 7 31 2 *"\n')
    problems = validate_schedule(config, "cfg.yaml")
    assert len(problems) == 2
    assert problems[0].startswith("cfg.yaml: schedule.collect: '*/0 * * * *' is not usable")
    assert problems[1].startswith("cfg.yaml: schedule.digests.en: '0 7 31 2 *' never fires")
    assert validate_schedule(make_config(tmp_path, DAILY)) == []


# --- the running scheduler: jobs follow the config by id ---------------------------------------------


class RecordingRunner:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.maintained = threading.Event()

    def collect(self) -> None:
        self.calls.append("collect")

    def feeds(self) -> None:
        self.calls.append("feeds")

    def digest(self, edition: str) -> None:
        self.calls.append(f"digest {edition}")

    def maintain(self) -> None:
        self.calls.append("maintain")
        self.maintained.set()


def test_apply_adds_changes_and_removes_jobs_by_id(tmp_path: Path) -> None:
    first = make_config(tmp_path, '  collect: "*/15 * * * *"\n  feeds: null\n  digests:\n    en: "0 7 * * *"\n    ar: "0 8 * * 0"\n')
    runner = RecordingRunner()
    scheduler = Scheduler(runner, display_zone=first.site.zone, maintenance_seconds=60)
    scheduler.start(first)
    try:
        assert runner.maintained.wait(30), "the maintenance tick runs at once on start"
        runs = scheduler.next_runs()
        assert set(runs) == {"collect", "digest:en", "digest:ar"}
        now = datetime.now(UTC)
        for job_id, line in (("digest:en", "0 7 * * *"), ("digest:ar", "0 8 * * 0")):
            expected = next_fire_times(PlannedJob(job_id, "digest", line, "Asia/Damascus", job_id[7:]), now, 1)[0]
            found = runs[job_id]
            assert found is not None and found.astimezone(UTC) == expected
            assert found.astimezone(DAMASCUS).hour == int(line.split()[1])
        assert runs["digest:ar"] is not None and runs["digest:ar"].astimezone(DAMASCUS).weekday() == 6  # Sunday

        second = make_config(tmp_path, '  collect: "*/15 * * * *"\n  feeds: "5 * * * *"\n  digests:\n    en: "30 9 * * *"\n')
        changes = scheduler.apply(second)
        assert any(c.startswith("schedule: job digest:ar removed") for c in changes)
        assert any(c.startswith("schedule: job digest:en next run at ") and "T09:30:00+03:00" in c for c in changes)
        assert any(c.startswith("schedule: job feeds next run at ") for c in changes)
        assert not any("collect" in c for c in changes), "an unchanged job is left alone"
        runs = scheduler.next_runs()
        assert set(runs) == {"collect", "digest:en", "feeds"}
        en = runs["digest:en"]
        assert en is not None and (en.astimezone(DAMASCUS).hour, en.astimezone(DAMASCUS).minute) == (9, 30)
    finally:
        scheduler.shutdown()


def test_a_schedule_may_name_its_own_time_zone(tmp_path: Path) -> None:
    from publisher.config import load_config
    from publisher.errors import ConfigError
    from publisher.scheduler import next_fire_times, planned_jobs
    from tests.conftest import write_config

    extra = "schedule:\n  digests: {en: '0 7 * * *', ar: '0 7 * * *'}\n  timezones: {en: Europe/London}\n"
    config = load_config(write_config(tmp_path, extra=extra))
    jobs = {job.id: job for job in planned_jobs(config)}
    assert jobs["digest:en"].timezone == "Europe/London"
    assert jobs["digest:ar"].timezone == "Asia/Damascus"  # the site's, as before
    after = datetime(2024, 12, 2, 12, 0, tzinfo=UTC)
    [london] = next_fire_times(jobs["digest:en"], after)
    [damascus] = next_fire_times(jobs["digest:ar"], after)
    assert london.astimezone(UTC) == datetime(2024, 12, 3, 7, 0, tzinfo=UTC)  # 07:00 GMT
    assert damascus.astimezone(UTC) == datetime(2024, 12, 3, 4, 0, tzinfo=UTC)  # 07:00 +03:00
    bad = "schedule:\n  digests: {en: '0 7 * * *'}\n  timezones: {fr: Europe/Paris}\n"
    with pytest.raises(ConfigError, match="schedule.timezones names fr"):
        load_config(write_config(tmp_path, extra=bad))
