"""Shared CLI plumbing: config loading with clear errors (exit 2), logging, the store."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from publisher import __version__
from publisher.config import Config, load_config
from publisher.errors import ConfigError, PublisherError, StoreError
from publisher.store import Store

F = TypeVar("F", bound=Callable[..., Any])

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)

DEFAULT_CONFIG = "config.yaml"
CONFIG_ENV = "PUBLISHER_CONFIG"

# Exit codes (README, "Exit codes"): the same for every command.
EXIT_OK = 0
EXIT_NEEDS_HUMAN = 1  # something failed and needs a look; the output names it
EXIT_CONFIG = 2
EXIT_STORE = 3
EXIT_DEFERRED = 75  # EX_TEMPFAIL: deliveries wait for a retry; the next attempt time is printed
EXIT_SIGNAL = 130  # stopped by SIGTERM/SIGINT; run again to finish


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbose: bool, log_format: str = "text") -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if log_format == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLogFormatter())
        fmt = None
    elif sys.stderr.isatty():
        handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if fmt is not None:
        handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("trafilatura", "htmldate", "courlan", "apscheduler.executors", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group()
@click.version_option(__version__, "--version", prog_name="publisher", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: one JSON object per log line (for journald or a log shipper).",
)  # fmt: skip
@click.option(
    "--config", "config_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
    help=f"Path to config.yaml for every subcommand (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}).",
)  # fmt: skip
@click.pass_context
def main_group(ctx: click.Context, verbose: bool, log_format: str, config_path: Path | None) -> None:
    """publisher: daily email digests and Atom/RSS feeds for a news site."""
    ctx.obj = {"config_path": config_path}
    setup_logging(verbose, log_format)


def _resolve_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path:
    """The subcommand's --config, else the one before the subcommand, else $PUBLISHER_CONFIG, else ./config.yaml."""
    if value is not None:
        return value
    root = ctx.find_root().obj
    if isinstance(root, dict) and root.get("config_path") is not None:
        return Path(root["config_path"])
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else Path(DEFAULT_CONFIG)


config_option = click.option(
    "--config",
    "config_path",
    default=None,
    callback=_resolve_config,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Path to config.yaml (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}).",
)


def load(config_path: Path) -> Config:
    """Load config, or print every problem with file:line and exit 2."""
    try:
        return load_config(config_path)
    except ConfigError as exc:
        err_console.print(f"[bold red]config error[/] ({len(exc.problems)} problem(s)):", highlight=False)
        for problem in exc.problems:
            err_console.print(f"  {problem}", highlight=False, markup=False)
        raise SystemExit(EXIT_CONFIG) from exc


def open_store(config: Config) -> Store:
    try:
        return Store.open(config.store_url)
    except StoreError as exc:
        err_console.print(Text.assemble(("store error:", "bold red"), f" {exc}"), highlight=False)
        raise SystemExit(EXIT_STORE) from exc


def handles_errors(func: F) -> F:
    """Our own errors end the command with their message (which carries the remedy), not a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PublisherError as exc:
            err_console.print(Text.assemble(("error:", "bold red"), f" {exc}"), highlight=False)
            raise SystemExit(EXIT_NEEDS_HUMAN) from exc

    return wrapper  # type: ignore[return-value]


def parse_day(value: str | None, config: Config) -> date:
    """--date, else the day a digest sent now would carry: schedule.digest_day (today or yesterday)
    in the site's time zone, as the scheduled runs do."""
    if value is None:
        from datetime import UTC, datetime

        from publisher.scheduler import digest_day

        return digest_day(datetime.now(UTC), config)
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD") from exc
