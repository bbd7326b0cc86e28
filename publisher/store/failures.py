"""Database errors, translated once into StoreError with a remedy, like httpx maps transport errors.

Every statement on the store's engine passes through here when it fails: the repositories never
let a raw SQLAlchemy or driver error (with its SQL and parameters, possibly an article's text or an
address) cross into the pipeline, the CLI or the web. IntegrityError stays as it is: repositories
catch it on purpose (two processes inserting the same row) and decide.
"""

from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import ExceptionContext
from sqlalchemy.exc import IntegrityError

from publisher.errors import StoreError

log = logging.getLogger(__name__)

# (what the driver says, what to do about it), first match wins; the text is matched lower-cased.
_REMEDIES: tuple[tuple[str, str], ...] = (
    ("readonly database", "the database file or its folder is read-only for this user: fix its permissions"),
    ("read-only", "the database is read-only: fix its permissions or point store.url at a writable one"),
    ("disk is full", "the disk holding the database is full: free space, then run again"),
    ("no space left", "the disk holding the database is full: free space, then run again"),
    ("database is locked", "another process holds the database for too long: check for a stuck publisher process"),
    ("unable to open database", "the database file cannot be opened: check store.url and the folder's permissions"),
    ("malformed", "the database file is damaged: restore it from a backup"),
    ("not a database", "store.url points at a file that is not a SQLite database"),
    ("connection", "the database server is unreachable: check that it runs and store.url in config.yaml"),
    ("server closed", "the database server went away: check that it runs, then run again"),
    ("terminating", "the database server went away: check that it runs, then run again"),
    ("nul (0x00)", "a value contains a NUL byte, which PostgreSQL refuses: clean the input"),
    ("does not exist", "the database or a table is missing: check store.url (the schema is created on open)"),
)


def describe(original: BaseException) -> str:
    """One line: the driver's own first line and the remedy for it."""
    text = (str(original).strip().splitlines() or [type(original).__name__])[0][:300]
    lowered = text.lower()
    for needle, remedy in _REMEDIES:
        if needle in lowered:
            return f"{text} (hint: {remedy})"
    return f"{text} (hint: check store.url in config.yaml and the database server's log)"


def store_error(where: str, original: BaseException) -> StoreError:
    """The StoreError for a driver error met outside SQLAlchemy (the hot paths that use the driver's
    connection directly), worded as the engine's hook words the others."""
    return StoreError(f"the store at {where} failed: {describe(original)}")


def translate_errors(engine: Engine) -> None:
    """Make every failing statement on `engine` raise StoreError (IntegrityError excepted)."""
    where = engine.url.render_as_string(hide_password=True)

    def on_error(context: ExceptionContext) -> None:
        if context.is_pre_ping:
            return  # the pool is testing a connection and will reconnect by itself
        if isinstance(context.sqlalchemy_exception, IntegrityError):
            return
        log.debug("store error on %s: %s", where, describe(context.original_exception))
        raise store_error(where, context.original_exception) from context.original_exception

    event.listen(engine, "handle_error", on_error)
