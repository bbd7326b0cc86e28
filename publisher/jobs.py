"""The work behind each scheduled job of `publisher serve`: collect, feeds, digests, and upkeep.

A digest slot is taken by inserting its job_runs row (unique per job and slot), so one process runs
it; slots that passed unseen are run or recorded as skipped (scheduler.due_slots); digests left
unfinished are completed once nobody holds their lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, date, datetime, timedelta

from publisher.config import Config
from publisher.live_config import LiveConfig
from publisher.pipeline import EditionOutcome, ProgressFactory, collect, publish_feeds, run_digests
from publisher.pipeline.channels import run_channel, run_channels
from publisher.pipeline.send import holder_is_dead
from publisher.scheduler import (
    DueSlot,
    PlannedJob,
    decide,
    digest_day,
    due_slots,
    planned_jobs,
)
from publisher.store import DigestStatus, Store
from publisher.store.channel_posts import posts_due

log = logging.getLogger(__name__)

STOP_SECONDS = 10.0  # how long a stop waits for the job in flight before abandoning it
LOOKBACK = timedelta(days=7)  # how far back a start looks for slots missed while it was down
STALE_RUN = timedelta(minutes=10)  # a 'running' slot with no digest after this long lost its owner
UNFINISHED = (DigestStatus.SELECTED, DigestStatus.RENDERED, DigestStatus.SENDING)
RESUME_BACKOFF, RESUME_BACKOFF_MAX = timedelta(seconds=30), timedelta(minutes=15)

ProgressContext = Callable[[], AbstractContextManager[ProgressFactory]]


class ServiceJobs:
    """What the scheduled jobs do. Every method reads the newest config when it starts."""

    def __init__(
        self,
        live: LiveConfig,
        store: Store,
        stop: threading.Event,
        *,
        progress: ProgressContext | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.live = live
        self.store = store
        self.stop = stop
        self.progress = progress
        self.clock = clock  # tests move time; the scheduler itself runs on the real clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.on_tick: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        self._maintaining = threading.Lock()
        self._running = 0
        self._busy: set[str] = set()  # editions this process is running right now
        self._checked: dict[str, datetime] = {}  # digest job id -> slots up to here were looked at
        self._started = False
        self._failed_resumes: dict[int, tuple[int, datetime]] = {}  # digest id -> (failures, retry at)
        self._failed_posts: dict[tuple[int, str], tuple[int, datetime]] = {}  # (digest id, channel) -> the same

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    # --- the scheduled jobs ---------------------------------------------------------------------

    def collect(self) -> None:
        self._guarded("collect", lambda: collect(self.live.current(), self.store))

    def feeds(self) -> None:
        def publish() -> None:
            for error in publish_feeds(self.live.current(), self.store).errors:
                log.warning("feeds: %s", error)

        self._guarded("feeds", publish)

    def digest(self, edition: str) -> None:
        def fire() -> None:
            config = self.live.current()
            for job in planned_jobs(config):
                if job.edition == edition and job.kind == "digest":
                    self._check(config, job, self.clock())

        self._guarded(f"digest {edition}", fire)

    def maintain(self) -> None:
        # a tick that comes while the previous one still sends returns at once (the scheduler
        # allows two instances so that this is silent rather than a warning every tick)
        if not self._maintaining.acquire(blocking=False):
            return
        try:
            self._guarded("maintenance", self._maintain)
        finally:
            self._maintaining.release()

    def on_config(self, previous: Config, config: Config) -> None:
        """A digest job added by a reload looks for slots from now on: an edit never sends retroactively."""
        now = self.clock()
        before = {job.id for job in planned_jobs(previous)}
        with self._lock:
            for job in planned_jobs(config):
                if job.kind == "digest" and job.id not in before:
                    self._checked[job.id] = now

    # --- internals ------------------------------------------------------------------------------

    def _guarded(self, name: str, work: Callable[[], object]) -> None:
        if self.stop.is_set():
            return
        with self._lock:
            self._running += 1
        try:
            work()
        except Exception:  # a failed run is logged; the schedule goes on
            log.exception("%s failed", name)
        finally:
            with self._lock:
                self._running -= 1

    def _maintain(self) -> None:
        config = self.live.current()
        if not self._started:
            self._started = True
            if config.schedule.collect:
                log.info("start: collecting before looking for missed digests")
                collect(config, self.store)
        now = self.clock()
        for job in planned_jobs(config):
            if job.kind == "digest" and not self.stop.is_set():
                self._check(config, job, now)
        if not self.stop.is_set():
            self._resume(config, now)
        self.on_tick()

    def _check(self, config: Config, job: PlannedJob, now: datetime) -> None:
        """Run (or record as skipped) the slots of one digest job that passed since the last look."""
        assert job.edition is not None
        edition = job.edition
        with self._lock:
            since = self._checked.get(job.id, now - LOOKBACK)
            self._checked[job.id] = max(now, since)
        if since >= now:
            return
        days = self.store.digests.sent_days(edition)
        found = due_slots(
            job,
            config,
            since=since,
            now=now,
            digest_exists=lambda day: self.store.digests.find(edition, day) is not None,
            last_digest_day=days[0] if days else None,
        )
        for due in found:
            if self.stop.is_set():
                return
            self._run_slot(config, job, due)

    def _run_slot(self, config: Config, job: PlannedJob, due: DueSlot) -> None:
        assert job.edition is not None
        shown = due.slot.astimezone(config.site.zone).isoformat(timespec="minutes")
        if not due.decision.run:
            if self.store.jobs.start(job.id, due.slot, self.owner, status="skipped", reason=due.decision.reason):
                log.warning("digest %s slot %s (day %s) skipped: %s", job.edition, shown, due.day, due.decision.reason)
            return
        if not self.store.jobs.start(job.id, due.slot, self.owner):
            log.info("digest %s slot %s: taken by another process (or an earlier run)", job.edition, shown)
            return
        if due.decision.late:
            log.warning("digest %s slot %s (day %s): %s", job.edition, shown, due.day, due.decision.reason)
        else:
            log.info("digest %s slot %s: sending the digest of %s", job.edition, shown, due.day)
        try:
            outcomes = self._run_digests(config, due.day, job.edition)
        except Exception as exc:
            self.store.jobs.finish(job.id, due.slot, "failed", f"{type(exc).__name__}: {exc}")
            raise
        status, reason = summarize(outcomes, due.decision.reason if due.decision.late else None)
        self.store.jobs.finish(job.id, due.slot, status, reason)
        log.info("digest %s slot %s: %s%s", job.edition, shown, status, f" ({reason})" if reason else "")

    def _run_digests(self, config: Config, day: date, edition: str) -> list[EditionOutcome]:
        with self._lock:
            self._busy.add(edition)
        try:
            context = self.progress() if self.progress else nullcontext(None)
            with context as progress:
                outcomes = run_digests(config, self.store, day, editions=[edition], stop=self.stop, progress=progress)
            for channel in run_channels(config, self.store, day, editions=[edition], stop=self.stop):
                for line in channel.lines():
                    log.info("%s", line)
            return outcomes
        finally:
            with self._lock:
                self._busy.discard(edition)

    def _resume(self, config: Config, now: datetime) -> None:
        """Complete digests someone left unfinished, and close the slots whose digest got done."""
        editions = {e.id for e in config.editions}
        real_now = datetime.now(UTC)  # leases and row ages are real instants, whatever the clock says
        for record in self.store.digests.recent(100):
            if record.status not in UNFINISHED or record.edition not in editions or self.stop.is_set():
                continue
            with self._lock:
                if record.edition in self._busy:
                    continue
            holder, until = self.store.digests.lease_holder(record.id)
            if holder is not None and until is not None and until > real_now and not holder_is_dead(holder):
                continue  # someone is sending it now (or died elsewhere less than a lease ago)
            failures, retry_at = self._failed_resumes.get(record.id, (0, real_now))
            if retry_at > real_now:
                continue  # it failed before (a template error, say): try again later, not every tick
            log.info("resume: digest %s %s is %s; completing it", record.edition, record.day, record.status)
            outcomes = self._run_digests(config, record.day, record.edition)
            if any(o.error or (o.send and o.send.error) for o in outcomes):
                delay = min(RESUME_BACKOFF * 2**failures, RESUME_BACKOFF_MAX)
                self._failed_resumes[record.id] = (failures + 1, datetime.now(UTC) + delay)
            else:
                self._failed_resumes.pop(record.id, None)
        self._resume_posts(config, real_now)
        for run in self.store.jobs.recent(50):
            edition = run.job.removeprefix("digest:")
            if run.job == edition or edition not in editions or run.status not in ("running", "interrupted", "failed"):
                continue
            day = digest_day(run.slot, config)
            digest = self.store.digests.find(edition, day)
            if digest is not None and digest.status == DigestStatus.DONE:
                self.store.jobs.finish(run.job, run.slot, "done", f"completed later by {self.owner}")
            elif digest is None and run.status == "running" and run.started_at and run.started_at < real_now - STALE_RUN:
                # its owner died between taking the slot and freezing the digest
                decision = decide(run.slot, now, config.schedule.grace, config.schedule.max_lateness)
                if not decision.run:
                    self.store.jobs.finish(run.job, run.slot, "skipped", f"owner {run.owner} stopped; {decision.reason}")
                    continue
                log.warning("resume: slot %s of digest %s was left by %s; running it", run.slot, edition, run.owner)
                status, reason = summarize(self._run_digests(config, day, edition), decision.reason)
                self.store.jobs.finish(run.job, run.slot, status, reason)


    def _resume_posts(self, config: Config, now: datetime) -> None:
        """Channel posts deferred after their digest went out (a long 429, an outage) are posted once
        their time comes, without a manual run; a post past the retry deadline is failed by the engine."""
        channels = {settings.label: index for index, settings in enumerate(config.channels)}
        for digest_id, label in posts_due(self.store.engine, now=now):
            index = channels.get(label)
            record = self.store.digests.get(digest_id)
            if index is None or record is None or record.status != DigestStatus.DONE or self.stop.is_set():
                continue  # a channel no longer configured, or a digest the loop above completes first
            with self._lock:
                if record.edition in self._busy:
                    continue
            failures, retry_at = self._failed_posts.get((digest_id, label), (0, now))
            if retry_at > now:
                continue
            log.info("resume: channel %s has posts of digest %s %s due; posting them", label, record.edition,
                     record.day)
            try:
                outcome = run_channel(config, self.store, index, record.day, stop=self.stop)
            except Exception:  # one channel's failure must not stop the upkeep of the rest
                log.exception("resume: channel %s of digest %s failed", label, digest_id)
                outcome = None
            for line in outcome.lines() if outcome else []:
                log.info("%s", line)
            if outcome is None or outcome.error or (outcome.send and outcome.send.error):
                delay = min(RESUME_BACKOFF * 2**failures, RESUME_BACKOFF_MAX)
                self._failed_posts[(digest_id, label)] = (failures + 1, datetime.now(UTC) + delay)
            else:
                self._failed_posts.pop((digest_id, label), None)


def summarize(outcomes: list[EditionOutcome], late: str | None) -> tuple[str, str | None]:
    """A job_runs status and reason for what run_digests did with one edition."""
    if not outcomes:
        return "failed", "the edition is no longer in config.yaml"
    outcome = outcomes[0]
    notes = [late] if late else []
    send = outcome.send
    if outcome.error:
        return "failed", "; ".join([outcome.error, *notes])
    if outcome.stopped:
        return "interrupted", outcome.note
    if send is None:
        return "done", "; ".join([outcome.note, *notes]) or None
    if send.interrupted:
        return "interrupted", f"stopped after {send.sent} sent; the next start sends the rest"
    if send.error:
        return "failed", f"{send.error}; retried by the maintenance tick"
    if send.held_by:
        return "done", f"being sent by {send.held_by}"
    summary = f"{send.sent} sent, {send.failed} failed, {send.skipped} skipped, {send.deferred} waiting to retry"
    if send.deferred and send.next_attempt_at is not None:
        summary += f" (next attempt {send.next_attempt_at.isoformat(timespec='seconds')})"
    return "done", "; ".join([summary, *notes])


# --- the process ----------------------------------------------------------------------------------
