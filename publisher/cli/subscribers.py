"""`publisher subscribers import | export | list | remove`."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from publisher.cli.common import (
    config_option,
    console,
    err_console,
    handles_errors,
    load,
    main_group,
    open_store,
)
from publisher.importing.decoding import known_codec
from publisher.importing.errors import ImportFileError
from publisher.importing.formats import parse_map
from publisher.importing.importer import ImportSettings, Progress, batch_size, import_file
from publisher.importing.report import Report
from publisher.importing.rows import Candidate, RowChecker
from publisher.models import SubscriberStatus
from publisher.store.consent import ConsentRepository
from publisher.store.subscribers import import_batch

CSV_COLUMNS = ["email", "name", "language", "status", "sections"]


@main_group.group()
def subscribers() -> None:
    """Manage the subscriber list."""


@subscribers.command("import")
@config_option
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row against the store and report; write nothing.")
@click.option("--atomic", is_flag=True, help="All or nothing: if any row is skipped, nothing is imported.")
@click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN,...",
              help="Columns of another tool's export: email, name, first_name, last_name, language, status, sections.")
@click.option("--edition", help="Edition (id or language) of rows that name none; default: the first edition.")
@click.option("--encoding", help="The file's encoding when it is not UTF-8 or UTF-16 with a BOM (e.g. cp1252).")
@handles_errors
def import_(
    config_path: Path, csv_file: Path, dry_run: bool, atomic: bool, maps: tuple[str, ...],
    edition: str | None, encoding: str | None,
) -> None:
    """Import a list: our CSV (email, name, language, status, sections) or an export of Mailchimp,
    listmonk, Ghost or Substack, recognized from its header row.

    An unsubscribed, bounced or complained address is never re-activated (counted as kept); an address
    that asked to be forgotten is not re-added (suppressed). A missing status means active (you vouch
    for consent). Every row that is not imported is reported on stderr as FILE:LINE: reason.

    Exit status: 0 when every row was imported, 1 when some rows were skipped (with --atomic: nothing
    was written), 2 when the file cannot be read (encoding, header) or an option is wrong, 3 when the
    store fails.
    """
    config = load(config_path)
    mapping: dict[str, str] = {}
    try:
        for text in maps:
            mapping.update(parse_map(text))
        if encoding:
            known_codec(encoding)
        checker = RowChecker(config, default_edition=edition)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    store = open_store(config)
    settings = ImportSettings(dry_run=dry_run, atomic=atomic, encoding=encoding, mapping=mapping or None)
    try:
        with import_progress(csv_file) as (emit, progress):
            report = Report(csv_file, emit)
            result = import_file(csv_file, store.engine, checker, report, settings, progress)
    except ImportFileError as exc:
        err_console.print(str(exc), highlight=False, markup=False, soft_wrap=True)
        raise SystemExit(2) from exc
    except SQLAlchemyError as exc:
        err_console.print(
            f"store error during the import: {getattr(exc, 'orig', None) or exc}. Batches of {batch_size(store.engine):,} "
            "rows already committed stay; importing the file again updates them, it never duplicates.",
            highlight=False, markup=False,
        )
        raise SystemExit(3) from exc
    except KeyboardInterrupt as exc:
        err_console.print(
            "interrupted: batches already committed stay (none with --atomic or --dry-run); importing the "
            "file again is safe", highlight=False, markup=False,
        )
        raise SystemExit(130) from exc
    finally:
        store.close()
    click.echo(f"{csv_file}: {result.format} export, {result.encoding}, {report.rows:,} rows")
    click.echo(report.summary())
    if dry_run:
        click.echo("dry run: nothing was written")
    elif not result.written:
        click.echo(f"--atomic: nothing was written, because {report.skipped:,} rows were skipped")
    if report.skipped:
        raise SystemExit(1)


@contextmanager
def import_progress(path: Path) -> Iterator[tuple[Callable[[str], None], Progress | None]]:
    """A progress bar on a terminal (report lines print above it); plain stderr lines otherwise."""
    if not err_console.is_terminal:
        yield (lambda line: click.echo(line, err=True)), None
        return
    bar = RichProgress(
        TextColumn("importing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    )
    with bar:
        task = bar.add_task("import", total=path.stat().st_size)

        def emit(line: str) -> None:
            bar.console.print(line, markup=False, highlight=False, soft_wrap=True)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield emit, progress


@subscribers.command("add")
@config_option
@click.argument("email")
@click.option("--name", default="", help="The person's name.")
@click.option("--edition", help="Edition id or language; default: the first edition.")
@click.option("--sections", default="", help="Comma-separated sections; default: all.")
@handles_errors
def add(config_path: Path, email: str, name: str, edition: str | None, sections: str) -> None:
    """Add one subscriber as active (you vouch for consent), or update their name, edition and sections.

    The rules of import hold: an unsubscribed, bounced or complained address is not re-activated, an
    address that asked to be forgotten is not re-added (both exit 1).
    """
    config = load(config_path)
    checker = RowChecker(config)
    checked = checker.values(0, email, name=name, edition=edition, sections=sections)
    if not isinstance(checked, Candidate):
        raise click.UsageError(checked.reason)
    store = open_store(config)
    try:
        with store.engine.begin() as connection:
            outcome = import_batch(connection, [checked.row], now=datetime.now(UTC))[0]
        current = store.subscribers.by_email(checked.row.email)
    finally:
        store.close()
    for note in checked.notes:
        err_console.print(f"{note}", highlight=False, markup=False)
    if outcome == "kept":
        err_console.print(
            f"{checked.row.email} is {current.status.value if current else 'not active'}: not re-activated "
            "(they must subscribe again themselves)", highlight=False, markup=False,
        )
        raise SystemExit(1)
    if outcome == "suppressed":
        err_console.print(f"{checked.row.email} asked to be forgotten: not added", highlight=False, markup=False)
        raise SystemExit(1)
    click.echo(f"{outcome} {checked.row.email} ({checked.row.language})")


@subscribers.command("export")
@config_option
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
@handles_errors
def export(config_path: Path, csv_file: Path) -> None:
    """Write every subscriber, with status, to a CSV that `import` reads back."""
    config = load(config_path)
    store = open_store(config)
    count = 0
    with csv_file.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for s in store.subscribers.iterate():
            writer.writerow([s.email, s.name, s.language, s.status.value, ",".join(s.sections)])
            count += 1
    console.print(f"{count} subscribers written to {csv_file}")


@subscribers.command("list")
@config_option
@click.option("--status", type=click.Choice([s.value for s in SubscriberStatus]), help="Only this status.")
@click.option("--search", help="Only addresses or names that contain this text (any case).")
@handles_errors
def list_(config_path: Path, status: str | None, search: str | None) -> None:
    """Show each address with its language and status."""
    config = load(config_path)
    store = open_store(config)
    columns = ("email", "name", "language", "status", "sections", "paused")
    rows = (
        (s.email, s.name, s.language, s.status.value, ",".join(s.sections) or "all", "yes" if s.paused else "")
        for s in store.subscribers.iterate(status=SubscriberStatus(status) if status else None, search=search)
    )
    shown = 0
    if not sys.stdout.isatty():
        # piped or redirected: one tab-separated line per subscriber, streamed (flat memory for any list)
        click.echo("\t".join(columns))
        for row in rows:
            click.echo("\t".join(row))
            shown += 1
    else:
        table = Table()
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
            shown += 1
        console.print(table)
    console.print(f"{shown} subscribers")


@subscribers.command("remove")
@config_option
@click.argument("email")
@handles_errors
def remove(config_path: Path, email: str) -> None:
    """Delete a subscriber's data; a hashed entry keeps an import from re-adding them."""
    config = load(config_path)
    store = open_store(config)
    subscriber = store.subscribers.by_email(email)
    if subscriber is not None:
        ConsentRepository(store.engine).close_confirmations(subscriber.id)  # old confirm links die too
    if store.subscribers.remove(email):
        console.print(f"removed {email}")
    else:
        err_console.print(f"no subscriber {email}")
        raise SystemExit(1)
