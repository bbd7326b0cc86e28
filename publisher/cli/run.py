"""`publisher run` and `publisher preview`."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from publisher.cli.common import (
    config_option,
    console,
    handles_errors,
    load,
    main_group,
    open_store,
    parse_day,
)
from publisher.pipeline import RunSummary, message_template, run_day, select_digest
from publisher.pipeline.digest import render_digest

log = logging.getLogger("publisher.cli")


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM/SIGINT: stop taking new messages, record state, exit within seconds."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %s: finishing the message in flight, then stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def progress_reporter() -> Iterator[Callable[[str, int], Callable[[int, int], None]]]:
    """A rich progress bar on a terminal; plain log lines every 10% otherwise."""
    if sys.stderr.isatty():
        bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            transient=False,
        )
        with bar:

            def factory(edition: str, total: int) -> Callable[[int, int], None]:
                task = bar.add_task(f"sending {edition}", total=total or None)
                return lambda done, all_: bar.update(task, completed=done, total=all_ or None)

            yield factory
        return

    def plain(edition: str, _total: int) -> Callable[[int, int], None]:
        step = {"next": 0.0}

        def report(done: int, total: int) -> None:
            if total and done / total >= step["next"]:
                log.info("sending %s: %d/%d", edition, done, total)
                step["next"] = done / total + 0.1

        return report

    yield plain


def print_summary(summary: RunSummary) -> None:
    if summary.collect:
        table = Table(title=f"Sources ({summary.day})")
        for column in ("source", "articles", "new", "updated", "status"):
            table.add_column(column)
        for source in summary.collect.sources:
            status = (
                f"[red]error: {source.error}[/]" + (" [bold](broken)[/]" if source.broken else "")
                if source.error
                else ("not modified" if source.not_modified else "ok")
            )
            if source.warnings:
                status += f" ({len(source.warnings)} item(s) skipped, see log)"
            table.add_row(source.name, str(source.fetched), str(source.new), str(source.updated), status)
        console.print(table)
    table = Table(title="Digests" + (" (dry run)" if summary.dry_run else ""))
    for column in ("edition", "day", "articles", "recipients", "sent", "failed", "skipped", "deferred", "note"):
        table.add_column(column)
    for e in summary.editions:
        s = e.send
        note = e.error or e.note
        if s is not None:
            if s.held_by:
                note = f"being sent by {s.held_by}"
            elif s.error:
                note = s.error
            elif s.interrupted:
                note = "interrupted: run again to finish"
            elif s.already_sent:
                note = f"{s.already_sent} already sent earlier"
            if s.bounced:
                note = f"{note}; {s.bounced} marked bounced".lstrip("; ")
        table.add_row(
            e.edition,
            e.day.isoformat(),
            str(e.articles),
            str(s.recipients) if s else "-",
            str(s.sent) if s else "-",
            str(s.failed) if s else "-",
            str(s.skipped) if s else "-",
            str(s.deferred) if s else "-",
            note,
        )
    console.print(table)
    if summary.feeds:
        for item in summary.feeds.published:
            console.print(f"feed {item.path} ({'written' if item.changed else 'unchanged'})", highlight=False, soft_wrap=True)
        for error in summary.feeds.errors:
            console.print(f"[red]feed error:[/] {error}", highlight=False)


@main_group.command()
@config_option
@click.option("--date", "day_text", metavar="YYYY-MM-DD", help="The day whose articles to send (default: today).")
@click.option("--dry-run", is_flag=True, help="Collect and render, but send nothing and write no feeds.")
@handles_errors
def run(config_path: Path, day_text: str | None, dry_run: bool) -> None:
    """Collect, select, render and deliver the digest of a date, then write the feeds."""
    config = load(config_path)
    day = parse_day(day_text, config)
    store = open_store(config)
    with stop_on_signals() as stop, progress_reporter() as progress:
        summary = run_day(config, store, day, dry_run=dry_run, stop=stop, progress=progress)
    print_summary(summary)
    interrupted = any(e.send and e.send.interrupted for e in summary.editions)
    if interrupted:
        console.print("interrupted by a signal: run the same command again to finish the send", highlight=False)
    raise SystemExit(130 if interrupted else (0 if summary.ok else 1))


@main_group.command()
@config_option
@click.option("--date", "day_text", metavar="YYYY-MM-DD", help="Day to preview (default: today).")
@click.option("--edition", "edition_ids", multiple=True, help="Edition id (repeatable; default: all).")
@click.option("--out", "out_dir", default="var/preview", show_default=True, type=click.Path(path_type=Path))
@handles_errors
def preview(config_path: Path, day_text: str | None, edition_ids: tuple[str, ...], out_dir: Path) -> None:
    """Write the digest's HTML, text and a sample .eml, and print their paths. Sends nothing."""
    from publisher.models import Recipient
    from publisher.pipeline.collect import collect
    from publisher.pipeline.digest import SelectedDigest
    from publisher.render.slots import Slot, fill_slots

    config = load(config_path)
    day = parse_day(day_text, config)
    store = open_store(config)
    collect(config, store)
    out = config.path(str(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    for edition in config.editions:
        if edition_ids and edition.id not in edition_ids:
            continue
        selected = select_digest(config, store, edition, day, dry_run=True)
        if not selected.articles:
            console.print(f"{edition.id}: no articles for {day}")
            continue
        # rendered afresh from the templates as they are now: a day already rendered keeps its
        # stored render for sending (and resuming), but a preview shows what was just edited
        fresh = SelectedDigest(edition, day, selected.articles, None)
        rendered = render_digest(config, None, fresh)
        base = out / f"{edition.id}-{day.isoformat()}"
        html_path, text_path, eml_path = base.with_suffix(".html"), base.with_suffix(".txt"), base.with_suffix(".eml")
        public = config.site.public_url.rstrip("/")
        # no sample name: a made-up English "Reader" would greet an Arabic reader in Latin letters
        sample = Recipient(0, "reader@example.org", "", "<preview@localhost>",
                           f"{public}/unsubscribe/PREVIEW", f"{public}/preferences/PREVIEW")
        values = {
            Slot.UNSUBSCRIBE_URL.value: sample.unsubscribe_url,
            Slot.PREFERENCES_URL.value: sample.preferences_url,
            Slot.NAME.value: sample.name,
            Slot.EMAIL.value: sample.email,
        }
        html_path.write_text(fill_slots(rendered.html, values, escape_html=True), encoding="utf-8")
        text_path.write_text(fill_slots(rendered.text, values), encoding="utf-8")
        template = message_template(config, edition, fresh, None)
        eml_path.write_bytes(template.personalize(sample))
        for path in (html_path, text_path, eml_path):
            click.echo(str(path))
