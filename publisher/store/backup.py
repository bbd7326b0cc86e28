"""A consistent copy of a SQLite store taken while it is in use (SQLite's online backup API).

PostgreSQL is backed up with its own tools (pg_dump); `backup_command` says which, for the message.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from publisher.errors import StoreError


@dataclass(frozen=True)
class BackupResult:
    source: Path
    target: Path
    bytes: int
    tables: int


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:/// URL, None for any other store (or an in-memory one)."""
    if not url.startswith("sqlite:///"):
        return None
    database = url[len("sqlite:///") :].split("?", 1)[0]
    return None if database in ("", ":memory:") else Path(database)


def pg_dump_command(url: str, target: str) -> str:
    parts = urlsplit(url.replace("+psycopg", "").replace("+psycopg2", ""))
    database = parts.path.lstrip("/") or "publisher"
    host = f" -h {parts.hostname}" if parts.hostname else ""
    port = f" -p {parts.port}" if parts.port else ""
    user = f" -U {parts.username}" if parts.username else ""
    return f"pg_dump -Fc{host}{port}{user} -f {target} {database}"


def backup_sqlite(source: Path, target: Path, *, force: bool = False) -> BackupResult:
    """Copy `source` to `target` page by page while writers go on; the copy is checked before it is kept."""
    if not source.is_file():
        raise StoreError(
            f"{source}: no such store file (hint: check store.url in config.yaml; run `publisher run` once)"
        )
    if target.exists() and not force:
        raise StoreError(f"{target} exists: not overwritten (hint: pick another file name, or pass --force)")
    if target.resolve() == source.resolve():
        raise StoreError(f"{target} is the store itself: pick another file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst, pages=1024)
                dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file, no -wal beside it
                verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
                tables = dst.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise StoreError(f"backup of {source} to {target} failed: {exc}") from exc
    if verdict != "ok":
        partial.unlink()
        raise StoreError(
            f"the copy of {source} failed SQLite's integrity check ({verdict}); the store may be damaged"
        )
    os.replace(partial, target)
    return BackupResult(source, target, target.stat().st_size, int(tables))
