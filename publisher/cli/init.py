"""`publisher init URL`: a config.yaml from what a site's home page and its feeds say."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from publisher.cli.common import main_group

if TYPE_CHECKING:
    from publisher.discovery.writer import InitReport


def _zone(_ctx: click.Context | None, _param: click.Parameter | None, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise click.BadParameter(
            f"unknown time zone {value!r}; use an IANA name such as Asia/Damascus"
        ) from exc
    return value


@main_group.command()
@click.argument("url")
@click.option(
    "--dir",
    "directory",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write config.yaml (created if missing).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing config.yaml.")
@click.option("--timezone", callback=_zone, help="The site's IANA time zone, when the feeds do not tell it.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for each page or feed.")
def init(url: str, directory: Path, force: bool, timezone: str | None, timeout: float) -> None:
    """Read the site at URL (home page, language versions, feeds) and write a config.yaml for it.

    Exit 0 when feeds were found, 1 when the config was written but needs a source (site down, no
    feed), 2 when an existing config.yaml is in the way (use --force).
    """
    # imported here: every other command starts without lxml and feedparser
    from publisher.discovery import survey_site
    from publisher.discovery.writer import SCHEMA_FILE, build_config
    from publisher.jsonschema import config_schema_text

    target = directory / "config.yaml"
    if target.exists() and not force:
        click.echo(
            f"{target} exists: not overwritten (pass --force to replace it, or --dir for another folder)",
            err=True,
        )
        raise SystemExit(2)
    click.echo(f"reading {url} ...")
    survey = survey_site(url, timeout=timeout)
    if survey.error:
        click.echo(f"could not read the site: {survey.error}", err=True)
    if survey.zone.zone is None and timezone is None and sys.stdin.isatty():
        timezone = click.prompt(
            "The site's time zone (IANA name)", default="UTC", value_proc=lambda v: _zone(None, None, v)
        )
    report = build_config(survey, timezone=timezone)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target.write_text(report.text, encoding="utf-8")
        (directory / SCHEMA_FILE).write_text(config_schema_text(), encoding="utf-8")
    except OSError as exc:
        click.echo(
            f"cannot write {target}: {exc.strerror or exc} (hint: pick a writable folder with --dir)",
            err=True,
        )
        raise SystemExit(1) from exc
    _print(report)
    click.echo(f"\nwrote {target} (and {directory / SCHEMA_FILE} for editors)")
    click.echo(f"next: publisher --config {target} check, then publisher --config {target} run --dry-run")
    if not survey.feeds and not survey.wordpress_api:
        raise SystemExit(1)


def _print(report: InitReport) -> None:
    for title, items in (("found", report.found), ("guessed", report.guessed), ("review", report.review)):
        if items:
            click.echo(f"\n{title}:")
            for item in items:
                click.echo(f"  - {item}")
