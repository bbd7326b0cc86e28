"""`publisher run` and `publisher preview`."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from publisher.cli.common import (
    EXIT_DEFERRED,
    EXIT_NEEDS_HUMAN,
    EXIT_OK,
    EXIT_SIGNAL,
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

log = logging.getLogger(__name__)


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
    """The run's tables and what is left. Every name and reason is printed literally (no markup)."""
    if summary.collect:
        console.print(sources_table(summary))
        for source in summary.collect.sources:
            if source.error:
                console.print(Text.assemble((f"{source.name}: error: ", "red"), source.error), highlight=False,
                              soft_wrap=True)
            for skipped in source.skipped[:SHOWN_ITEMS]:
                console.print(Text(f"{source.name}: skipped {skipped}"), highlight=False, soft_wrap=True)
            if len(source.skipped) > SHOWN_ITEMS:
                console.print(Text(f"{source.name}: {len(source.skipped) - SHOWN_ITEMS} more skipped, see the log"))
    console.print(digests_table(summary))
    for e in summary.editions:
        if e.send is not None:
            for email, reason in e.send.failures:
                console.print(Text(f"{e.edition}: not delivered to {email}: {reason}"), highlight=False, soft_wrap=True)
            if e.send.failed > len(e.send.failures):
                console.print(Text(f"{e.edition}: {e.send.failed - len(e.send.failures)} more not delivered, see the log"))
    for line in deferred_lines(summary):
        console.print(Text(line, style="yellow"), highlight=False, soft_wrap=True)
        log.warning("%s", line)
    for channel in summary.channels:
        for line in channel.lines():
            console.print(Text(line), highlight=False, soft_wrap=True)
    if summary.feeds:
        for item in summary.feeds.published:
            console.print(Text(f"feed {item.path} ({'written' if item.changed else 'unchanged'})"),
                          highlight=False, soft_wrap=True)
        for error in summary.feeds.errors:
            console.print(Text.assemble(("feed error: ", "red"), error), highlight=False, soft_wrap=True)


SHOWN_ITEMS = 10


def sources_table(summary: RunSummary) -> Table:
    assert summary.collect is not None
    table = Table(title=f"Sources ({summary.day})")
    for column in ("source", "articles", "new", "updated", "skipped", "warnings", "status"):
        table.add_column(column)
    for source in summary.collect.sources:
        if source.error:
            # the reason, with its hint, is printed in full below the table: a cell would cut it
            status = Text("error, see below" + (" (broken)" if source.broken else ""), style="red")
        elif source.not_modified:
            status = Text("not modified")
        else:
            status = Text(f"ok, {len(source.warnings)} warnings" if source.warnings else "ok")
        table.add_row(Text(source.name), str(source.fetched), str(source.new), str(source.updated),
                      str(len(source.skipped)), str(len(source.warnings)), status)
    return table


def digests_table(summary: RunSummary) -> Table:
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
            elif s.recipients == 0:
                note = ("no recipients: nobody active reads this edition yet (publisher subscribers import); "
                        "a later run today sends to readers who join meanwhile")
            if s.bounced:
                note = f"{note}; {s.bounced} bounced (subscribers marked bounced)".lstrip("; ")
            if s.retried:
                note = f"{note}; {s.retried} settled on a retry in this run".lstrip("; ")
        cells = [s.recipients, s.sent, s.failed, s.skipped, s.deferred] if s else ["-"] * 5
        table.add_row(Text(e.edition), e.day.isoformat(), str(e.articles), *(str(c) for c in cells), Text(note))
    return table


def deferred_lines(summary: RunSummary) -> list[str]:
    """For each edition left with pending deliveries: how many, why, and when the next attempt is due."""
    lines = []
    now = datetime.now(UTC)
    for e in summary.editions:
        s = e.send
        if s is None or not s.deferred:
            continue
        why = s.error or "; ".join(f"{reason} ({count})" for reason, count in s.deferred_reasons) or "unknown"
        due = s.next_attempt_at
        when = ("due now" if due is None or due <= now else
                f"due at {due.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC (in {_duration(due - now)})")
        lines.append(f"{e.edition}: {s.deferred} of {s.recipients} deliveries not done yet, deferred because: {why}. "
                     f"Next attempt {when}: run `publisher run --date {e.day}` again then "
                     "(publisher serve retries on its own).")
    return lines


def _duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def exit_code(summary: RunSummary) -> int:
    """130 stopped by a signal; 1 something needs a human; 75 deliveries deferred; 0 all done (README)."""
    if summary.stopped or any(e.interrupted for e in summary.editions):
        return EXIT_SIGNAL
    if not summary.ok:
        return EXIT_NEEDS_HUMAN
    return EXIT_DEFERRED if summary.deferred else EXIT_OK


@main_group.command()
@config_option
@click.option("--date", "day_text", metavar="YYYY-MM-DD", help="The day whose articles to send (default: schedule.digest_day: today, or yesterday).")
@click.option("--dry-run", is_flag=True, help="Collect and render, but send nothing and write no feeds.")
@handles_errors
def run(config_path: Path, day_text: str | None, dry_run: bool) -> None:
    """Collect, select, render and deliver the digest of a date, then write the feeds.

    Exit status: 0 all done; 1 something needs a look (a source, a feed, a failed delivery that is
    not a bounce, a send stopped by a refusal about us); 2 config error; 3 store error; 75 deliveries
    deferred (the next attempt time is printed); 130 stopped by a signal.
    """
    with stop_on_signals() as stop:
        config = load(config_path)
        day = parse_day(day_text, config)
        store = open_store(config)
        try:
            if stop.is_set():
                summary = RunSummary(day=day, dry_run=dry_run, stopped=True)
            else:
                with progress_reporter() as progress:
                    summary = run_day(config, store, day, dry_run=dry_run, stop=stop, progress=progress)
            summary.stopped = summary.stopped or stop.is_set()
        finally:
            store.close()
    print_summary(summary)
    code = exit_code(summary)
    if code == EXIT_SIGNAL:
        left = [e.edition for e in summary.editions if e.interrupted] if summary.editions else [e.id for e in config.editions]
        if summary.feeds is None and not dry_run:
            left.append("feeds")
        what = ", ".join(left) or "nothing (the signal came after the last step)"
        console.print(Text(f"stopped by a signal; left undone: {what}: run the same command again to finish"),
                      highlight=False, soft_wrap=True)
        log.warning("run stopped by a signal; left undone: %s", what)
    raise SystemExit(code)


@main_group.command()
@config_option
@click.option("--date", "day_text", metavar="YYYY-MM-DD", help="Day to preview (default: schedule.digest_day).")
@click.option("--edition", "edition_ids", multiple=True, help="Edition id (repeatable; default: all).")
@click.option("--out", "out_dir", default="var/preview", show_default=True, type=click.Path(path_type=Path))
@handles_errors
def preview(config_path: Path, day_text: str | None, edition_ids: tuple[str, ...], out_dir: Path) -> None:
    """Write the digest's HTML, text and a sample .eml, and print their paths. Sends nothing."""
    from publisher.models import Recipient
    from publisher.pipeline.collect import collect
    from publisher.pipeline.digest import SelectedDigest
    from publisher.render.slots import fill_slots, slot_values

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
        values = slot_values(unsubscribe_url=sample.unsubscribe_url, preferences_url=sample.preferences_url,
                             name=sample.name, email=sample.email)
        html_path.write_text(fill_slots(rendered.html, values, escape_html=True), encoding="utf-8")
        text_path.write_text(fill_slots(rendered.text, values), encoding="utf-8")
        template = message_template(config, edition, fresh, None)
        eml_path.write_bytes(template.personalize(sample))
        for path in (html_path, text_path, eml_path):
            click.echo(str(path))
