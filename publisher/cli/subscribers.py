"""`publisher subscribers import | export | list | remove`."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click
from email_validator import EmailNotValidError, validate_email
from rich.table import Table

from publisher.cli.common import (
    config_option,
    console,
    err_console,
    handles_errors,
    load,
    main_group,
    open_store,
)
from publisher.models import SubscriberStatus
from publisher.store.consent import ConsentRepository

CSV_COLUMNS = ["email", "name", "language", "status", "sections"]


@main_group.group()
def subscribers() -> None:
    """Manage the subscriber list."""


@subscribers.command("import")
@config_option
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@handles_errors
def import_(config_path: Path, csv_file: Path) -> None:
    """Import a CSV (columns: email, name, language, status, sections).

    An unsubscribed, bounced or complained address is never re-activated; an address that asked to
    be forgotten is not re-added. Missing status means active (you vouch for consent).
    """
    config = load(config_path)
    store = open_store(config)
    languages = {e.language for e in config.editions}
    counts = {"added": 0, "updated": 0, "kept": 0, "suppressed": 0, "invalid": 0}
    with csv_file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "email" not in reader.fieldnames:
            err_console.print(f"{csv_file}:1: no 'email' column (hint: the header line is {','.join(CSV_COLUMNS)})")
            raise SystemExit(2)
        for line_number, row in enumerate(reader, start=2):
            problem = None
            try:
                email = validate_email((row.get("email") or "").strip(), check_deliverability=False).normalized
            except EmailNotValidError as exc:
                problem = f"invalid email: {exc}"
            language = (row.get("language") or config.editions[0].language).strip().lower()
            if not problem and language not in languages:
                problem = f"language {language!r} has no edition (editions: {', '.join(sorted(languages))})"
            status_text = (row.get("status") or "active").strip().lower()
            try:
                status = SubscriberStatus(status_text)
            except ValueError:
                problem = problem or f"unknown status {status_text!r} (use {', '.join(s.value for s in SubscriberStatus)})"
            if problem:
                err_console.print(f"{csv_file}:{line_number}: {problem}; row skipped", highlight=False, markup=False)
                counts["invalid"] += 1
                continue
            sections = [s.strip() for s in (row.get("sections") or "").replace(";", ",").split(",") if s.strip()]
            result = store.subscribers.upsert(
                email, name=(row.get("name") or "").strip(), language=language, status=status, sections=sections
            )
            counts[result] += 1
    console.print(", ".join(f"{n} {k}" for k, n in counts.items()))


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
@handles_errors
def list_(config_path: Path, status: str | None) -> None:
    """Show each address with its language and status."""
    config = load(config_path)
    store = open_store(config)
    columns = ("email", "name", "language", "status", "sections", "paused")
    rows = (
        (s.email, s.name, s.language, s.status.value, ",".join(s.sections) or "all", "yes" if s.paused else "")
        for s in store.subscribers.iterate()
        if not status or s.status.value == status
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
