"""When things run: crontab lines as triggers, the jobs config.yaml implies, and the one APScheduler.

APScheduler is used in this module and nowhere else. Jobs live in memory only (two schedulers
sharing a job store fire jobs twice); which process runs a digest slot is decided by the store
(job_runs is unique per job and slot), so several `publisher serve` processes may run side by side.

Crontab lines mean what they mean in crontab(5):
- day-of-week 0 and 7 are Sunday (APScheduler's from_crontab reads 0 as Monday; we build the
  trigger from publisher.crontab's day names instead);
- when both day-of-month and day-of-week are restricted, either one matching fires ("0 7 1 * mon"
  is the 1st of the month *and* every Monday);
- daylight saving: a fixed time that falls in the hour skipped when clocks go forward runs once,
  shifted by the jump (01:30 runs at 02:30 new time); a fixed time that occurs twice when clocks go
  back runs once, at its first occurrence. Lines with a wildcard hour (every 15 minutes, say) keep
  running in real time through the repeated hour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from publisher.config import Config
from publisher.crontab import CronSpec, CrontabError, parse_crontab

log = logging.getLogger(__name__)

COLLECT = "collect"
FEEDS = "feeds"
DIGEST_PREFIX = "digest:"
MAINTENANCE = "maintenance"

# A collect or feed run more than this late is dropped: the next one comes soon anyway.
ROUTINE_MISFIRE_SECONDS = 300
# Safety net for iterating slots of very frequent lines over a long window.
MAX_SLOTS = 20_000

JobKind = Literal["collect", "feeds", "digest"]


class CrontabTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """A crontab line in a time zone, with cron's meaning (see the module docstring)."""

    def __init__(self, spec: CronSpec, zone: ZoneInfo) -> None:
        self.spec = spec
        self.zone = zone
        fields = {"minute": spec.minute, "hour": spec.hour, "month": spec.month, "timezone": zone}
        if spec.day != "*" and spec.day_of_week != "*":
            # crontab ORs the two day fields when both are restricted; CronTrigger would AND them
            self._triggers = [
                CronTrigger(day=spec.day, day_of_week="*", **fields),
                CronTrigger(day="*", day_of_week=spec.day_of_week, **fields),
            ]
        else:
            self._triggers = [CronTrigger(day=spec.day, day_of_week=spec.day_of_week, **fields)]
        self._fixed_hour = not spec.hour.startswith("*")

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        candidates = [t for t in (trigger.get_next_fire_time(previous_fire_time, now) for trigger in self._triggers) if t]
        if not candidates:
            return None
        chosen: datetime = min(candidates, key=lambda t: t.astimezone(UTC))
        if self._fixed_hour and _second_occurrence(chosen, self.zone):
            # CronTrigger fires a time repeated by the fall-back change twice; cron runs it once
            return self.get_next_fire_time(chosen, chosen)
        return chosen

    def __str__(self) -> str:
        return f"crontab[{self.spec.line!r}, {self.zone.key}]"


def _second_occurrence(moment: datetime, zone: ZoneInfo) -> bool:
    """True if `moment` is the later of two instants sharing one wall-clock time (clocks went back)."""
    wall = moment.astimezone(zone).replace(tzinfo=None)
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None and second is not None
    return first > second and moment.astimezone(zone).utcoffset() == second


@dataclass(frozen=True)
class PlannedJob:
    """One scheduled job as config.yaml implies it; id is stable across reloads."""

    id: str
    kind: JobKind
    line: str
    timezone: str
    edition: str | None = None

    def trigger(self) -> CrontabTrigger:
        return CrontabTrigger(parse_crontab(self.line), ZoneInfo(self.timezone))


def planned_jobs(config: Config) -> list[PlannedJob]:
    schedule, site_zone = config.schedule, config.site.timezone
    jobs = []
    if schedule.collect:
        jobs.append(PlannedJob(COLLECT, "collect", schedule.collect, schedule.zone_for("collect", site_zone)))
    for edition in config.editions:
        line = schedule.digests.get(edition.id)
        if line:
            zone = schedule.zone_for(edition.id, site_zone)
            jobs.append(PlannedJob(DIGEST_PREFIX + edition.id, "digest", line, zone, edition.id))
    if schedule.feeds:
        jobs.append(PlannedJob(FEEDS, "feeds", schedule.feeds, schedule.zone_for("feeds", site_zone)))
    return jobs


def _config_key(job: PlannedJob) -> str:
    if job.kind == "digest":
        return f"schedule.digests.{job.edition}"
    return f"schedule.{job.kind}"


def validate_schedule(config: Config, source: str = "config.yaml") -> list[str]:
    """What APScheduler would refuse, or what would never run, as 'file: key: what (hint: ...)'."""
    problems = []
    now = datetime.now(UTC)
    for job in planned_jobs(config):
        try:
            trigger = job.trigger()
        except (CrontabError, ValueError) as exc:
            problems.append(f"{source}: {_config_key(job)}: {job.line!r} is not usable: {exc} (hint: check the cron line)")
            continue
        if trigger.get_next_fire_time(None, now) is None:
            problems.append(
                f"{source}: {_config_key(job)}: {job.line!r} never fires (hint: check day and month, e.g. 31 2 is never)"
            )
    return problems


def fire_times(job: PlannedJob, since: datetime, until: datetime) -> list[datetime]:
    """The job's slots in (since, until], oldest first, as UTC instants (at most MAX_SLOTS, the newest)."""
    trigger = job.trigger()
    found: list[datetime] = []
    moment = trigger.get_next_fire_time(None, since + timedelta(microseconds=1))
    limit = until.astimezone(UTC)
    while moment is not None and moment.astimezone(UTC) <= limit:
        found.append(moment.astimezone(UTC))
        if len(found) > MAX_SLOTS:
            del found[0]
        moment = trigger.get_next_fire_time(moment, moment)
    return found


def next_fire_times(job: PlannedJob, after: datetime, count: int = 1) -> list[datetime]:
    """The next `count` slots strictly after `after`, as UTC instants."""
    trigger = job.trigger()
    found: list[datetime] = []
    moment = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    while moment is not None and len(found) < count:
        found.append(moment.astimezone(UTC))
        moment = trigger.get_next_fire_time(moment, moment)
    return found


def digest_day(slot: datetime, config: Config) -> date:
    """The day whose articles a slot sends: schedule.digest_day, in the site's time zone."""
    local = slot.astimezone(config.site.zone).date()
    return local - timedelta(days=1) if config.schedule.digest_day == "yesterday" else local


# --- lateness -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotDecision:
    """Whether a digest slot still runs, given how late it is.

    - up to grace_minutes late: runs, as if on time;
    - between grace and max_lateness_hours: runs, logged as a warning and recorded "late" in status
      (a reader still wants this morning's digest at 10:00; silence would hide the outage);
    - beyond max_lateness_hours: not sent; recorded as skipped with the reason.
    """

    run: bool
    late: bool
    reason: str | None


def decide(slot: datetime, now: datetime, grace: timedelta, max_lateness: timedelta) -> SlotDecision:
    lateness = now - slot
    if lateness <= grace:
        return SlotDecision(True, False, None)
    if lateness <= max_lateness:
        return SlotDecision(True, True, f"late by {_duration(lateness)} (grace {_duration(grace)})")
    return SlotDecision(
        False, True, f"{_duration(lateness)} late, beyond the maximum lateness of {_duration(max_lateness)}: not sent"
    )


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass(frozen=True)
class DueSlot:
    slot: datetime  # UTC
    day: date
    decision: SlotDecision


def due_slots(
    job: PlannedJob,
    config: Config,
    *,
    since: datetime,
    now: datetime,
    digest_exists: Callable[[date], bool],
    last_digest_day: date | None,
) -> list[DueSlot]:
    """Digest slots in (since, now] that nobody has made a digest for, with what to do about each.

    Only the newest slot may run; an older day whose slot passed unseen (the service was down) is
    reported as skipped, but only after the edition's last known digest. A store with no digest of
    the edition yet (a first start) takes the newest slot only if it is within grace, and reports
    nothing older: nothing was missed before the service existed.
    """
    slots = fire_times(job, since, now)
    newest_per_day: dict[date, datetime] = {}
    for slot in slots:
        newest_per_day[digest_day(slot, config)] = slot
    if not newest_per_day:
        return []
    newest_day = max(newest_per_day, key=lambda d: newest_per_day[d])
    due = []
    for day, slot in sorted(newest_per_day.items(), key=lambda item: item[1]):
        if day != newest_day and (last_digest_day is None or day <= last_digest_day):
            continue
        if digest_exists(day):
            continue
        if day == newest_day:
            decision = decide(slot, now, config.schedule.grace, config.schedule.max_lateness)
            if decision.late and last_digest_day is None:
                continue  # no digest of this edition yet: nothing was missed, a first start is not late
        else:
            newer = newest_per_day[newest_day].astimezone(config.site.zone).isoformat(timespec="minutes")
            decision = SlotDecision(False, True, f"missed while the service was not running; superseded by {newer}")
        due.append(DueSlot(slot, day, decision))
    return due


# --- the scheduler --------------------------------------------------------------------------------


class JobRunner(Protocol):
    """What the scheduler calls; the service implements it (the scheduler knows no pipeline)."""

    def collect(self) -> None: ...

    def feeds(self) -> None: ...

    def digest(self, edition: str) -> None: ...

    def maintain(self) -> None: ...


class Scheduler:
    """One BackgroundScheduler whose jobs follow config.yaml: apply() adds, changes and removes by id."""

    def __init__(self, runner: JobRunner, *, display_zone: tzinfo, maintenance_seconds: float = 30.0) -> None:
        self._runner = runner
        self._display_zone = display_zone
        self._maintenance_seconds = maintenance_seconds
        self._planned: dict[str, PlannedJob] = {}
        # our own log lines say what changed and when jobs run next; APScheduler's repeat them
        quiet = logging.getLogger("apscheduler.scheduler")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )

    def start(self, config: Config) -> None:
        self._scheduler.start()
        # the maintenance tick catches up missed slots and resumes unfinished digests: first at once
        self._scheduler.add_job(
            self._runner.maintain,
            IntervalTrigger(seconds=self._maintenance_seconds, timezone=UTC),
            id=MAINTENANCE,
            name=MAINTENANCE,
            next_run_time=datetime.now(UTC),
            misfire_grace_time=int(self._maintenance_seconds) + 1,
            max_instances=2,  # the runner lets only one work; the other returns at once
        )
        self.apply(config)

    def apply(self, config: Config) -> list[str]:
        """Make the running jobs those `config` implies. Returns log lines describing the changes."""
        self._display_zone = config.site.zone
        wanted = {job.id: job for job in planned_jobs(config)}
        changes = []
        for job_id in list(self._planned):
            if job_id not in wanted:
                self._scheduler.remove_job(job_id)
                del self._planned[job_id]
                changes.append(f"schedule: job {job_id} removed")
        for job_id, job in wanted.items():
            if self._planned.get(job_id) == job:
                continue
            function, arguments = self._call(job)
            self._scheduler.add_job(
                function,
                job.trigger(),
                args=arguments,
                id=job_id,
                name=job_id,
                replace_existing=True,
                # Digests: APScheduler never drops a late run (None = no limit); our own lateness
                # rules (decide) run it, flag it or record it as skipped.
                misfire_grace_time=None if job.kind == "digest" else ROUTINE_MISFIRE_SECONDS,
            )
            self._planned[job_id] = job
            changes.append(f"schedule: job {job_id} next run at {self._next_text(job_id)} ({job.line}, {job.timezone})")
        for line in changes:
            log.info("%s", line)
        return changes

    def _call(self, job: PlannedJob) -> tuple[Callable[..., None], list[Any]]:
        if job.kind == "digest":
            assert job.edition is not None
            return self._runner.digest, [job.edition]
        return (self._runner.collect if job.kind == "collect" else self._runner.feeds), []

    def _next_text(self, job_id: str) -> str:
        moment = self.next_runs().get(job_id)
        return moment.astimezone(self._display_zone).isoformat() if moment else "never"

    def next_runs(self) -> dict[str, datetime | None]:
        """Each configured job's next run time, as the running scheduler has it."""
        runs: dict[str, datetime | None] = {}
        for job_id in self._planned:
            found = self._scheduler.get_job(job_id)
            runs[job_id] = getattr(found, "next_run_time", None) if found else None
        return runs

    @property
    def planned(self) -> list[PlannedJob]:
        return list(self._planned.values())

    def shutdown(self) -> None:
        """Stop firing; jobs already running are left to finish (the service waits for them)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
