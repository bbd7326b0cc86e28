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
  marked sent, so the next start sends it). SIGKILL loses nothing: the next start on this machine takes over the dead
  process's lease at once (one held from another machine expires: publisher.pipeline.send.LEASE).
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
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from publisher.config import Config
from publisher.jobs import STOP_SECONDS, ProgressContext, ServiceJobs
from publisher.live_config import LiveConfig
from publisher.scheduler import (
    Scheduler,
    validate_schedule,
)
from publisher.store import Store

log = logging.getLogger(__name__)

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
            log.info("config reload: applied; the schedule in %s is the new one", state_path(new))

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
            here = self.config_path.resolve().parent
            others = [str(s["pid"]) for s in running_services(here) if s.get("pid") != os.getpid()]
            plainly = (f" (another `publisher serve`, pid {', '.join(others)}, already runs from {here} and serves "
                       "these pages: one per config is enough; stop this one)") if others else ""  # fmt: skip
            log.error("web: cannot serve on %s:%d: %s%s; the scheduler keeps running without it",
                      config.web.host, config.web.port, exc, plainly)
            return None
        return server


def _iso(moment: datetime | None, config: Config) -> str | None:
    return moment.astimezone(config.site.zone).isoformat() if moment else None


def _stop_web(server: Any) -> None:
    try:
        server.stop()
    except Exception:
        log.exception("web: error while stopping")
