"""`publisher serve`: the long-running process. Config from LiveConfig, jobs from the scheduler.

Started once; from then on the operator edits config.yaml and the service follows. Nothing an
operator does (edit, restart, kill, start a second copy) sends a digest twice or loses one:
- a digest slot is taken by inserting its job_runs row (unique per job and slot): one process runs it;
- the digest itself is sent under a lease and a per-recipient ledger (publisher.pipeline);
- at start and every maintenance tick, slots that passed unseen are run or recorded as skipped
  (scheduler.due_slots), and digests left unfinished ('selected', 'rendered', 'sending', deliveries
  waiting to retry) are completed once nobody holds their lease;
- SIGTERM/SIGINT: no new jobs, the send in flight stops between messages, state is recorded, the
  process exits within seconds (a message stuck longer than STOP_SECONDS is abandoned: it is not
  marked sent, so the next start sends it). SIGKILL loses nothing: the next start resumes once the
  dead process's lease has expired (publisher.pipeline.send.LEASE).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from publisher.config import Config
from publisher.live_config import LiveConfig
from publisher.pipeline import EditionOutcome, ProgressFactory, collect, publish_feeds, run_digests
from publisher.scheduler import (
    DueSlot,
    PlannedJob,
    Scheduler,
    decide,
    digest_day,
    due_slots,
    planned_jobs,
    validate_schedule,
)
from publisher.store import DigestStatus, Store

log = logging.getLogger("publisher.serve")

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
                return run_digests(config, self.store, day, editions=[edition], stop=self.stop, progress=progress)
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
            if holder is not None and until is not None and until > real_now:
                continue  # someone is sending it now (or died less than a lease ago)
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


def summarize(outcomes: list[EditionOutcome], late: str | None) -> tuple[str, str | None]:
    """A job_runs status and reason for what run_digests did with one edition."""
    if not outcomes:
        return "failed", "the edition is no longer in config.yaml"
    outcome = outcomes[0]
    notes = [late] if late else []
    send = outcome.send
    if outcome.error:
        return "failed", "; ".join([outcome.error, *notes])
    if send is None:
        return "done", "; ".join([outcome.note, *notes]) or None
    if send.interrupted:
        return "interrupted", f"stopped after {send.sent} sent; the next start sends the rest"
    if send.error:
        return "failed", f"{send.error}; retried by the maintenance tick"
    if send.held_by:
        return "done", f"being sent by {send.held_by}"
    summary = f"{send.sent} sent, {send.failed} failed, {send.skipped} skipped, {send.deferred} waiting to retry"
    return "done", "; ".join([summary, *notes])


# --- the process ----------------------------------------------------------------------------------


def state_path(config: Config, pid: int | None = None) -> Path:
    """Where a running service describes itself (read by `publisher schedule` and `status`).

    Under var/ beside config.yaml, one file per process, removed when it stops.
    """
    return config.path("var") / f"serve-{pid or os.getpid()}.json"


def running_services(config_dir: Path) -> list[dict[str, Any]]:
    """What the live services started from config.yaml in `config_dir` (on this machine) say of themselves."""
    found = []
    for path in sorted((config_dir / "var").glob("serve-*.json")):
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            os.kill(int(state["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # gone, unreadable, or not ours to signal
        found.append(state)
    return found


class Service:
    def __init__(
        self,
        config_path: Path,
        *,
        web: bool = True,
        poll_seconds: float = 1.0,
        tick_seconds: float = 30.0,
        progress: ProgressContext | None = None,
    ) -> None:
        self.config_path = config_path
        self.web_enabled = web
        self.poll_seconds = poll_seconds
        self.tick_seconds = tick_seconds
        self.progress = progress
        self.stop = threading.Event()
        self._state_lock = threading.Lock()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT. Raises ConfigError or StoreError if it cannot start."""
        live = LiveConfig(
            self.config_path, interval=self.poll_seconds, validators=[lambda c: validate_schedule(c, str(self.config_path))]
        )
        config = live.current()
        store = Store.open(config.store_url)
        jobs = ServiceJobs(live, store, self.stop, progress=self.progress)
        scheduler = Scheduler(jobs, display_zone=config.site.zone, maintenance_seconds=self.tick_seconds)
        started_at = datetime.now(UTC)

        def write_state() -> None:
            self._write_state(live, scheduler, started_at)

        def on_change(previous: Config, new: Config) -> None:
            jobs.on_config(previous, new)
            scheduler.apply(new)
            for what, old, now in (("store.url", previous.store_url, new.store_url),
                                   ("web", (previous.web.host, previous.web.port), (new.web.host, new.web.port))):
                if old != now:
                    log.warning("config reload: %s changed; restart publisher serve to apply it", what)
            write_state()

        live.add_listener(on_change)
        live.add_refusal_listener(lambda _problems: write_state())
        jobs.on_tick = write_state
        previous_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        web = None
        try:
            scheduler.start(config)
            live.start()
            write_state()
            web = self._start_web(live, store) if self.web_enabled else None
            log.info("serve: running as pid %d with %s; stop with SIGTERM or Ctrl-C", os.getpid(), self.config_path)
            while not self.stop.wait(0.5):
                pass
            log.warning("serve: stopping: no new jobs; the send in flight stops after its current message")
            live.stop()
            scheduler.shutdown()
            deadline = time.monotonic() + STOP_SECONDS
            while jobs.running and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            if web is not None:
                _stop_web(web)
            state_path(live.current()).unlink(missing_ok=True)
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
        if jobs.running:
            log.error(
                "serve: a job is still running after %.0f s; abandoning it. Its message in flight is not "
                "marked sent: the next start sends it (and completes the digest).",
                STOP_SECONDS,
            )
            logging.shutdown()
            sys.stderr.flush()
            os._exit(1)
        store.close()
        log.info("serve: stopped")
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            log.error("serve: second %s: exiting at once", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(130)
        log.warning("serve: %s received", signal.Signals(signum).name)
        self.stop.set()

    def _write_state(self, live: LiveConfig, scheduler: Scheduler, started_at: datetime) -> None:
        config = live.current()
        runs = scheduler.next_runs()
        state = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "config": str(self.config_path),
            "started_at": started_at.isoformat(),
            "config_loaded_at": live.loaded_at.isoformat(),
            "config_problems": live.problems,
            "jobs": [
                {"id": job.id, "line": job.line, "timezone": job.timezone, "next_run": _iso(runs.get(job.id), config)}
                for job in scheduler.planned
            ],
            "updated_at": datetime.now(UTC).isoformat(),
        }
        path = state_path(config)
        with self._state_lock:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_suffix(".tmp")
                temporary.write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")
                os.replace(temporary, path)
            except OSError as exc:
                log.warning("serve: cannot write %s: %s", path, exc)

    def _start_web(self, live: LiveConfig, store: Store) -> Any:
        config = live.current()
        try:
            web = importlib.import_module("publisher.web")
            server_module = importlib.import_module("publisher.web.server")
        except ImportError as exc:
            log.warning("web: publisher.web is not available (%s); serving no pages", exc)
            return None
        create_app = getattr(web, "create_app", None)
        server_class = getattr(server_module, "WebServer", None)
        if create_app is None or server_class is None:
            log.warning("web: publisher.web has no create_app or WebServer yet; serving no pages")
            return None
        try:
            server = server_class(create_app(live.current, store), config.web.host, config.web.port)
            server.start()
        except Exception as exc:  # the schedule matters more than the pages: keep running, loudly
            log.error("web: cannot serve on %s:%d: %s; the scheduler keeps running without it",
                      config.web.host, config.web.port, exc)
            return None
        return server


def _iso(moment: datetime | None, config: Config) -> str | None:
    return moment.astimezone(config.site.zone).isoformat() if moment else None


def _stop_web(server: Any) -> None:
    try:
        server.stop()
    except Exception:
        log.exception("web: error while stopping")
