"""What the benchmarks share: a fresh store at the URL asked for (or a loud failure), and the machine.

A benchmark given --store-url measures that store: a PostgreSQL URL names a server, and every
measurement gets its own new database there (dropped afterwards); a SQLite URL names a file, beside which
each measurement gets its own new file (<stem>-<name>.db, removed afterwards). An unreachable server stops the benchmark with the reason, never a quiet
fallback to another store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError


def machine() -> str:
    """The machine beside each figure: CPUs and the load averages when it was measured."""
    one, five, _fifteen = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load {one:.2f}/{five:.2f}"


def check_reachable(url: str) -> None:
    """Raise SystemExit naming the URL and the driver's reason when the store cannot be reached."""
    if not url.startswith("postgresql"):
        return
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(exc.orig if hasattr(exc, "orig") else exc).strip().splitlines()[0]
        raise SystemExit(f"--store-url {url}: cannot connect: {reason}") from None
    finally:
        engine.dispose()


@contextmanager
def fresh_store(url: str | None, directory: Path, name: str) -> Iterator[str]:
    """A store URL with nothing in it: a new SQLite file in `directory`, or a new database on the server."""
    if url is None:
        yield f"sqlite:///{directory / (name + '.db')}"
        return
    if url.startswith("sqlite"):
        given = Path(url.split("///", 1)[1])
        path = given.with_name(f"{given.stem}-{name}{given.suffix or '.db'}")
        if path.exists():
            raise SystemExit(f"--store-url {url}: {path} exists; the benchmark wants an empty store")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            yield f"sqlite:///{path}"
        finally:
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
        return
    check_reachable(url)
    database = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        yield url.rsplit("/", 1)[0] + f"/{database}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
