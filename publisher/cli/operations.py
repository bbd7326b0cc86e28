"""`publisher check`, `schedule`, `status` and `serve`: what the config implies, how things stand, and the service."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from publisher.cli.checks import templates_step, transport_step
from publisher.cli.common import (
    config_option,
    console,
    err_console,
    handles_errors,
    load,
    main_group,
    open_store,
)
from publisher.cli.run import progress_reporter
from publisher.config import Config, load_config
from publisher.errors import ConfigError, StoreError
from publisher.pipeline.collect import BROKEN_AFTER
from publisher.scheduler import next_fire_times, planned_jobs, validate_schedule
from publisher.service import Service, running_services

RECENT_PER_EDITION = 5


def _when(moment: datetime | None, zone: tzinfo, spec: str = "seconds") -> str:
    return moment.astimezone(zone).isoformat(timespec=spec) if moment else "-"


def load_checked(config_path: Path) -> Config:
    """load(), plus what the scheduler would refuse; exit 2 with every problem."""
    config = load(config_path)
    problems = validate_schedule(config, str(config_path))
    if problems:
        err_console.print(f"[bold red]config error[/] ({len(problems)} problem(s)):", highlight=False)
        for problem in problems:
            err_console.print(f"  {problem}", highlight=False, markup=False)
        raise SystemExit(2)
    return config


def schedule_lines(config: Config, now: datetime, count: int = 3) -> list[str]:
    """One line per job: id, cron line, its zone, the next runs as ISO dates in the site's zone."""
    jobs = planned_jobs(config)
    if not jobs:
        return ["  nothing is scheduled (schedule.collect, schedule.feeds and schedule.digests are empty)"]
    width = max(len(job.id) for job in jobs)
    lines = []
    for job in jobs:
        runs = ", ".join(_when(t, config.site.zone) for t in next_fire_times(job, now, count)) or "never"
        lines.append(f"  {job.id:<{width}}  {job.line}  ({job.timezone})  next: {runs}")
    return lines


def policy_line(config: Config) -> str:
    s = config.schedule
    return (
        f"  missed digests: sent if at most {s.grace_minutes} min late; sent and flagged late up to "
        f"{s.max_lateness_hours:g} h; later, recorded as skipped and not sent. Digest day: {s.digest_day} "
        f"(in {config.site.timezone})."
    )


def _service_lines(config_dir: Path, config: Config | None) -> list[str]:
    """What running services (same machine, same config directory) say they run."""
    lines = []
    wanted = {(j.id, j.line, j.timezone) for j in planned_jobs(config)} if config else None
    for state in running_services(config_dir):
        lines.append(f"running service: pid {state['pid']}, config loaded {state.get('config_loaded_at')}")
        for problem in state.get("config_problems") or []:
            lines.append(f"  refused edit, keeping the last good config: {problem}")
        jobs: list[dict[str, Any]] = state.get("jobs") or []
        if wanted is not None and {(j["id"], j["line"], j["timezone"]) for j in jobs} == wanted:
            lines.append("  runs the schedule above")
            continue
        for job in jobs:
            lines.append(f"  {job['id']}  {job['line']}  ({job['timezone']})  next: {job.get('next_run') or 'never'}")
    return lines


@main_group.command()
@config_option
@click.option("--transport", is_flag=True, help="Also connect to the mail server and report what it offers; sends nothing.")
@handles_errors
def check(config_path: Path, transport: bool) -> None:
    """Validate config.yaml (exit 2 with file:line and a hint if it is wrong) and print its schedule."""
    config = load_checked(config_path)
    if code := templates_step(config, config_path):
        raise SystemExit(code)
    click.echo(f"{config_path}: ok — {len(config.sources)} source(s), {len(config.editions)} edition(s)")
    click.echo(f"schedule (times in {config.site.timezone}):")
    for line in schedule_lines(config, datetime.now(UTC)):
        click.echo(line)
    for edition in config.editions:
        if edition.id not in config.schedule.digests:
            click.echo(f"  digest:{edition.id} is not scheduled (send it with `publisher run`)")
    click.echo(policy_line(config))
    for warning in sending_warnings(config):
        click.echo(f"warning: {warning}")
    if transport and (code := transport_step(config)):
        raise SystemExit(code)


def sending_warnings(config: Config) -> list[str]:
    """What receivers will hold against the digests: one-click unsubscribe over http, local domains."""
    warnings = []
    if not config.site.public_url.lower().startswith("https://"):
        warnings.append(
            f"site.public_url is {config.site.public_url}: one-click unsubscribe (RFC 8058) needs https; "
            "Gmail and Yahoo ignore List-Unsubscribe-Post otherwise (hint: the public https address)"
        )
    fallback = config.site_host
    local = fallback in {"localhost", "::1"} or fallback.startswith("127.") or fallback.replace(".", "").isdigit()
    for key, value in (("mail.message_id_domain", config.mail.message_id_domain), ("mail.list_id", config.mail.list_id)):
        if not value and local:
            warnings.append(f"{key} is not set, so it falls back to {fallback} (hint: set it to your mail domain)")
    return warnings


@main_group.command()
@config_option
@click.option("--count", default=3, show_default=True, help="How many next runs to list per job.")
@handles_errors
def schedule(config_path: Path, count: int) -> None:
    """List the jobs config.yaml implies and their next run times, and what a running service runs."""
    config: Config | None
    try:
        config = load_config(config_path)
        problems = validate_schedule(config, str(config_path))
    except ConfigError as exc:
        config, problems = None, exc.problems
    if config is not None and not problems:
        click.echo(f"schedule (times in {config.site.timezone}):")
        for line in schedule_lines(config, datetime.now(UTC), count):
            click.echo(line)
        click.echo(policy_line(config))
    for problem in problems:
        click.echo(f"config error: {problem}", err=True)
    for line in _service_lines(config_path.resolve().parent, config if not problems else None):
        click.echo(line)
    if problems:
        raise SystemExit(2)


@main_group.command()
@config_option
@handles_errors
def status(config_path: Path) -> None:
    """Recent digests per edition, source health, what runs next and skipped slots."""
    config = load(config_path)
    store = open_store(config)
    zone = config.site.zone
    for line in _service_lines(config_path.resolve().parent, config) or ["no `publisher serve` is running from here"]:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    table = Table(title="Recent digests")
    for column in ("edition", "day", "status", "recipients", "sent", "failed", "pending", "skipped", "started", "finished"):
        table.add_column(column)
    shown: dict[str, int] = {}
    for record in store.digests.recent(20 * RECENT_PER_EDITION):
        if shown.get(record.edition, 0) >= RECENT_PER_EDITION:
            continue
        shown[record.edition] = shown.get(record.edition, 0) + 1
        counts = store.deliveries.counts(record.id)
        table.add_row(
            record.edition, record.day.isoformat(), record.status,
            str(record.recipients if record.recipients is not None else "-"),
            str(counts["sent"]), str(counts["failed"]), str(counts["pending"]), str(counts["skipped"]),
            _when(record.started_at, zone), _when(record.finished_at, zone),
        )  # fmt: skip
    console.print(table)
    _print_sources(config, store)
    console.print("Next runs:", highlight=False)
    for line in schedule_lines(config, datetime.now(UTC), 1):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    runs = [run for run in store.jobs.recent(20)]
    if runs:
        console.print("Recent slots:", highlight=False)
    for run in runs:
        flag = {"skipped": "SKIPPED", "failed": "FAILED", "interrupted": "INTERRUPTED"}.get(run.status, run.status)
        console.print(
            f"  {run.job}  {_when(run.slot, zone, 'minutes')}  {flag}" + (f": {run.reason}" if run.reason else ""),
            highlight=False, markup=False, soft_wrap=True,
        )  # fmt: skip


def _print_sources(config: Config, store: Any) -> None:
    zone = config.site.zone
    states = {state.name: (state, error_at) for state, error_at, _count in store.sources.all()}
    table = Table(title="Sources")
    for column in ("source", "last success", "failures in a row", "last error", "health"):
        table.add_column(column)
    names = [s.name for s in config.sources if s.enabled] + sorted(set(states) - {s.name for s in config.sources})
    for name in names:
        if name not in states:
            table.add_row(name, "never", "0", "", "not collected yet")
            continue
        state, error_at = states[name]
        if state.consecutive_failures >= BROKEN_AFTER:
            health = f"[red]BROKEN[/] ({state.consecutive_failures} failures in a row)"
        else:
            health = "failing once" if state.consecutive_failures == 1 else ("failing" if state.consecutive_failures else "ok")
        error = f"{_when(error_at, zone)}: {state.last_error}" if state.last_error else ""
        table.add_row(name, _when(state.last_success_at, zone) if state.last_success_at else "never",
                      str(state.consecutive_failures), escape(error), health)
    console.print(table)


@main_group.command()
@config_option
@click.option("--no-web", is_flag=True, help="Do not serve the web pages (subscribe, archive, feeds).")
@click.option("--poll-seconds", default=1.0, hidden=True, help="How often config.yaml is checked for edits.")
@click.option("--tick-seconds", default=30.0, hidden=True, help="How often missed and unfinished digests are looked for.")
@handles_errors
def serve(config_path: Path, no_web: bool, poll_seconds: float, tick_seconds: float) -> None:
    """Run the schedule from config.yaml (and the web pages) until SIGTERM; edits apply within seconds."""
    load_checked(config_path)
    service = Service(
        config_path, web=not no_web, poll_seconds=poll_seconds, tick_seconds=tick_seconds, progress=progress_reporter
    )
    try:
        code = service.run()
    except StoreError as exc:
        err_console.print(f"[bold red]store error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(3) from exc
    raise SystemExit(code)
