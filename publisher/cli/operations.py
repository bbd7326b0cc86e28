"""`publisher check` and `publisher status`: what the config implies, and how things stand."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from publisher.cli.common import config_option, console, handles_errors, load, main_group, open_store
from publisher.pipeline.collect import BROKEN_AFTER


@main_group.command()
@config_option
@handles_errors
def check(config_path: Path) -> None:
    """Validate config.yaml (exit 2 with file:line and a hint if it is wrong)."""
    config = load(config_path)
    console.print(f"{config_path}: ok — {len(config.sources)} source(s), {len(config.editions)} edition(s)")
    for edition in config.editions:
        line = config.schedule.digests.get(edition.id)
        console.print(f"  digest {edition.id}: {line or 'not scheduled'}", highlight=False)


@main_group.command()
@config_option
@handles_errors
def status(config_path: Path) -> None:
    """Recent digests per edition, source health, and what runs next."""
    config = load(config_path)
    store = open_store(config)
    table = Table(title="Recent digests")
    for column in ("edition", "day", "status", "recipients", "sent", "failed", "pending", "skipped", "started", "finished"):
        table.add_column(column)
    for record in store.digests.recent(20):
        counts = store.deliveries.counts(record.id)
        table.add_row(
            record.edition,
            record.day.isoformat(),
            record.status,
            str(record.recipients if record.recipients is not None else "-"),
            str(counts["sent"]),
            str(counts["failed"]),
            str(counts["pending"]),
            str(counts["skipped"]),
            record.started_at.astimezone(config.site.zone).isoformat(timespec="seconds") if record.started_at else "-",
            record.finished_at.astimezone(config.site.zone).isoformat(timespec="seconds") if record.finished_at else "-",
        )
    console.print(table)
    sources = Table(title="Sources")
    for column in ("source", "last success", "failures in a row", "last error", "health"):
        sources.add_column(column)
    for state, _error_at, _count in store.sources.all():
        health = "[red]BROKEN[/]" if state.consecutive_failures >= BROKEN_AFTER else (
            "failing" if state.consecutive_failures else "ok")
        sources.add_row(
            state.name,
            state.last_success_at.astimezone(config.site.zone).isoformat(timespec="seconds") if state.last_success_at else "never",
            str(state.consecutive_failures),
            state.last_error or "",
            health,
        )
    console.print(sources)
    runs = store.jobs.recent(10)
    if runs:
        jobs = Table(title="Scheduled runs")
        for column in ("job", "slot", "status", "reason"):
            jobs.add_column(column)
        for run in runs:
            jobs.add_row(run.job, run.slot.astimezone(config.site.zone).isoformat(timespec="minutes"), run.status, run.reason or "")
        console.print(jobs)
