"""`subscribers import` speed: our whole import path against a bare executemany of the same rows.

Not a test. Run:

    .venv/bin/python benchmarks/import_subscribers.py [--rows 100000 --rows 1000000] [--store-url URL]

For each size it writes a CSV in our format (English and Arabic names, some sections), then, each on
a fresh empty store:

- ours: the code `publisher subscribers import` runs (decode check, CSV records with quote recovery,
  format detection, row checks, duplicate check, batches of 1,000: two SELECTs + executemany, one
  transaction each), then a copy with every name changed (every row an update), then that copy
  again (every row unchanged: nothing written);
- baseline: csv.reader, the same row validation (address and name), and one bare driver executemany
  of all rows in one transaction: no report, no duplicate or suppression check, no batches.

It prints the machine, rows/s of each and the ratio (ours / baseline), and the peak RSS of our three
imports, which run in a child process of their own per size (the baseline keeps every row in a list,
so it runs in this one). `--store-url` takes a
PostgreSQL server URL (postgresql+psycopg://user@host/db): each run creates its own database there
and drops it afterwards; an unreachable server stops the benchmark with the reason.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402

from publisher.config import load_config  # noqa: E402
from publisher.importing.addresses import check_address  # noqa: E402
from publisher.importing.importer import import_file  # noqa: E402
from publisher.importing.report import Report  # noqa: E402
from publisher.importing.rows import RowChecker  # noqa: E402
from publisher.names import clean_name  # noqa: E402
from publisher.store import Store  # noqa: E402
from tests.conftest import write_config  # noqa: E402

NAMES = ["Layla Haddad", "Omar Khatib", "سارة العلي", "يوسف منصور", "Rania Saleh", "Karim Nassar"]
SECTIONS = ["", "", "", "culture", "politics,economy", "sports"]


def write_csv(path: Path, rows: int, suffix: str = "") -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "language", "status", "sections"])
        for i in range(rows):
            writer.writerow([f"reader{i}@example{i % 97}.org", f"{NAMES[i % 6]} {i}{suffix}", "ar" if i % 3 else "en",
                             "active", SECTIONS[i % 6]])


@contextmanager
def fresh_store(base: str | None, directory: Path) -> Iterator[str]:
    """An empty store URL: a new SQLite file, or a new database on the given PostgreSQL server."""
    if base is None:
        yield f"sqlite:///{directory / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"publisher_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as exc:
        sys.exit(f"cannot create a benchmark database on {base}: {getattr(exc, 'orig', exc)} "
                 "(hint: is the server running, and may this user create databases?)")
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Rate:
    """Rows per second by the clock on the wall, and by this process's CPU time (the machine is shared)."""

    def __init__(self, rows: int, wall: float, cpu: float) -> None:
        self.wall = rows / wall
        self.cpu = rows / cpu

    def __str__(self) -> str:
        return f"{self.wall:,.0f} rows/s ({self.cpu:,.0f} per CPU-second of this process)"


@contextmanager
def timed(rows: list[Rate], count: Callable[[], int]) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    rows.append(Rate(count(), time.perf_counter() - wall, time.process_time() - cpu))


def ours_alone(csv_path: Path, changed_path: Path, config_path: Path, url: str) -> tuple[list[Rate], float]:
    """ours() in a fresh child process: its rates and its peak RSS in MB (nothing else ran in it)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_ours_and_rss, (csv_path, changed_path, config_path, url))


def _ours_and_rss(csv_path: Path, changed_path: Path, config_path: Path, url: str) -> tuple[list[Rate], float]:
    rates = ours(csv_path, changed_path, config_path, url)
    return rates, _peak_rss_mb()


def _peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM, reset by exec. (ru_maxrss is not: Linux carries it across
    the exec of a spawned child, so the child would report the parent's peak at the fork.)"""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(csv_path: Path, changed_path: Path, config_path: Path, url: str) -> list[Rate]:
    config = load_config(config_path)
    store = Store.open(url)
    try:
        rates: list[Rate] = []
        # every row added; every row updated (each name changed); the same file again (nothing to write)
        for path in (csv_path, changed_path, changed_path):
            report = Report(path, lambda line: print(line, file=sys.stderr))
            with timed(rates, lambda report=report: report.rows):
                import_file(path, store.engine, RowChecker(config), report)
            assert report.skipped == 0, report.summary()
        return rates
    finally:
        store.close()


def baseline(csv_path: Path, url: str) -> Rate:
    store = Store.open(url)
    rates: list[Rate] = []
    rows: list[tuple[object, ...]] = []
    dialect = store.engine.dialect
    now = datetime.now(UTC)
    stamp = now if dialect.name != "sqlite" else now.replace(tzinfo=None).isoformat(" ")
    paused = False if dialect.name != "sqlite" else 0
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = ("INSERT INTO subscribers (email, name, language, status, sections, paused, created_at, updated_at, "
           f"confirmed_at) VALUES ({', '.join([mark] * 9)})")
    try:
        with timed(rates, lambda: len(rows)), csv_path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            for email, name, language, status, sections in reader:
                address, _reason = check_address(email)
                rows.append((address, clean_name(name), language, status, sections, paused, stamp, stamp, stamp))
            with store.engine.begin() as connection:
                connection.exec_driver_sql(sql, rows)
    finally:
        store.close()
    return rates[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, action="append", help="rows per run (repeatable; default 100000)")
    parser.add_argument("--store-url", help="a PostgreSQL server URL; default: SQLite files in a temp folder")
    args = parser.parse_args()
    sizes = args.rows or [100_000]
    if args.store_url and args.store_url.startswith("sqlite"):
        sys.exit("--store-url takes a PostgreSQL server; SQLite is the default (a fresh file per run)")
    print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}; store: {'PostgreSQL' if args.store_url else 'SQLite'}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config_path = write_config(directory)
        for size in sizes:
            csv_path = directory / f"list-{size}.csv"
            write_csv(csv_path, size)
            changed_path = directory / f"list-{size}-changed.csv"
            write_csv(changed_path, size, suffix=" b")
            with fresh_store(args.store_url, directory) as url:
                (added, updated, unchanged), rss = ours_alone(csv_path, changed_path, config_path, url)
            with fresh_store(args.store_url, directory) as url:
                bare = baseline(csv_path, url)
            print(f"{size:,} rows (load average {' '.join(f'{n:.1f}' for n in os.getloadavg())}, "
                  f"peak RSS of our imports {rss:,.0f} MB):")
            print(f"  ours, new addresses:   {added}")
            print(f"  ours, all updates:     {updated}")
            print(f"  ours, all unchanged:   {unchanged}")
            print(f"  bare executemany:      {bare}")
            print(f"  ratio ours/bare: {added.wall / bare.wall:.2f} new, {updated.wall / bare.wall:.2f} updates "
                  f"(per CPU-second: {added.cpu / bare.cpu:.2f}, {updated.cpu / bare.cpu:.2f})")
            csv_path.unlink()
            changed_path.unlink()


if __name__ == "__main__":
    main()
