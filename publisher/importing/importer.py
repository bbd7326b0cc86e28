"""An import from file to store: decode, read records, recognize the format, check rows, write batches.

Rows are written BATCH_SIZE at a time, POSTGRES_BATCH_SIZE on PostgreSQL (store.subscribers.import_batch:
two SELECTs and two executemany per batch, COPY on PostgreSQL), each batch in its own transaction, or all in one with `atomic` -- then any
skipped row rolls the whole import back. `dry_run` classifies every row against the store and writes
nothing. An address that appears twice in a file is imported from its first row; later rows are
reported with the line of the first (checked a batch at a time against publisher.importing.seen, on
disk: memory does not grow with the file) (which one is right cannot be guessed, and a later "active" must not
quietly override an earlier "unsubscribed").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from publisher.importing.decoding import detect, open_text
from publisher.importing.errors import ImportFileError
from publisher.importing.formats import Layout, detect_layout
from publisher.importing.records import Broken, Record, read_records, sniff_delimiter
from publisher.importing.report import Report
from publisher.importing.rows import Candidate, RowChecker
from publisher.importing.seen import SeenAddresses
from publisher.store.subscribers import ImportRow, import_batch

BATCH_SIZE = 1000
# A batch is a transaction, and each commit waits for the server: 100,000 new rows took 4.1 s in
# batches of 1,000 and 2.6 s in batches of 5,000 (20,000: 2.4 s), same run, load average 2.8.
POSTGRES_BATCH_SIZE = 5000
log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (bytes read, file size)


@dataclass(frozen=True)
class ImportSettings:
    dry_run: bool = False
    atomic: bool = False
    encoding: str | None = None
    mapping: dict[str, str] | None = None
    batch_size: int | None = None  # None: BATCH_SIZE, POSTGRES_BATCH_SIZE on PostgreSQL


@dataclass
class ImportResult:
    format: str = ""
    encoding: str = ""
    written: bool = False  # False for a dry run and for an atomic import rolled back
    report: Report | None = field(default=None, repr=False)


def import_file(
    path: Path,
    engine: Engine,
    checker: RowChecker,
    report: Report,
    settings: ImportSettings = ImportSettings(),
    progress: Progress | None = None,
) -> ImportResult:
    encoding = detect(path, settings.encoding)
    result = ImportResult(encoding=encoding.label, report=report)
    text, binary = open_text(path, encoding)
    size = path.stat().st_size
    with text:
        first = text.readline()
        records = read_records(chain([first] if first else [], text), delimiter=sniff_delimiter(first))
        layout = _header(path, records, settings.mapping)
        result.format = layout.format
        writer = _Writer(engine, report, settings)
        try:
            for item in records:
                if isinstance(item, Broken):
                    report.skip(item.line, item.reason)
                    continue
                checked = checker.check(item.line, item.fields, layout)
                if not isinstance(checked, Candidate):
                    report.skip(checked.line, checked.reason)
                    continue
                if writer.add(checked) and progress:
                    progress(binary.tell(), size)
            writer.flush()
            result.written = writer.finish()
        finally:
            writer.close()
    if progress:
        progress(size, size)
    return result


def _header(path: Path, records: Iterator[Record | Broken], mapping: dict[str, str] | None) -> Layout:
    header = next(records, None)
    if header is None:
        raise ImportFileError(path, 1, "the file is empty; its first line must be a header (email,name,...)")
    if isinstance(header, Broken):
        raise ImportFileError(path, header.line, f"the header line cannot be read: {header.reason}")
    layout = detect_layout(header.fields, mapping)
    if isinstance(layout, str):
        raise ImportFileError(path, header.line, layout)
    return layout


def batch_size(engine: Engine) -> int:
    """Rows per batch (and per transaction, unless atomic) on this store."""
    return POSTGRES_BATCH_SIZE if engine.dialect.name == "postgresql" else BATCH_SIZE


class _Writer:
    """Batches of checked rows into the store, with the transaction policy of the settings.

    On PostgreSQL a batch is written on a worker thread while the next one is read and checked:
    the import otherwise waits on the server for about half its time (measured: 38,759 rows per
    CPU-second of this process but 20,127 rows/s on the wall). One batch is in flight at most; its
    outcomes are reported, in order, before the next one is handed over, and its error (if any)
    is raised here, in the importing thread. SQLite stays in this thread (an in-memory store's one
    connection must not change threads, and its writes are this process's CPU anyway).
    """

    def __init__(self, engine: Engine, report: Report, settings: ImportSettings) -> None:
        self._engine = engine
        self._report = report
        self._settings = settings
        self._batch: list[Candidate] = []
        self._seen = SeenAddresses()  # the file's addresses so far: a later row of one is reported
        self._now = datetime.now(UTC)
        self._connection: Connection | None = None  # atomic or dry run: the one transaction's
        self._own: Connection | None = None  # otherwise: the connection of the batches' transactions
        self._batch_size = settings.batch_size or batch_size(engine)
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-writer")
                      if engine.dialect.name == "postgresql" else None)
        self._pending: tuple[list[Candidate], list[int], Future[list[str]]] | None = None
        if settings.atomic or settings.dry_run:
            self._connection = engine.connect()
            self._transaction = self._connection.begin()

    def add(self, candidate: Candidate) -> bool:
        self._batch.append(candidate)
        if len(self._batch) >= self._batch_size:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        batch = self._first_rows(self._batch)
        self._batch = []
        noted = [index for index, candidate in enumerate(batch) if candidate.notes]  # a cleaned name
        self._collect()
        if not batch:
            return
        rows = [c.row for c in batch]
        if self._pool is None:
            self._outcomes(batch, noted, self._write(rows))
        else:
            self._pending = (batch, noted, self._pool.submit(self._write, rows))

    def _first_rows(self, batch: list[Candidate]) -> list[Candidate]:
        """The batch less its rows whose address an earlier row of the file has (each reported)."""
        earlier = self._seen.first_lines([(c.row.email, c.line) for c in batch])
        if all(line is None for line in earlier):
            return batch
        kept: list[Candidate] = []
        for candidate, line in zip(batch, earlier, strict=True):
            if line is None:
                kept.append(candidate)
            else:
                self._report.skip(candidate.line, f"{candidate.row.email} is already on line {line}")
        return kept

    def _write(self, rows: list[ImportRow]) -> list[str]:
        if self._connection is not None:
            return import_batch(self._connection, rows, now=self._now, write=not self._settings.dry_run)
        return self._own_transaction(rows)

    def _collect(self) -> None:
        """Wait for the batch in flight and report it (its exception comes out here)."""
        if self._pending is None:
            return
        batch, noted, future = self._pending
        self._pending = None
        self._outcomes(batch, noted, future.result())

    def _outcomes(self, batch: list[Candidate], noted: list[int], outcomes: list[str]) -> None:
        self._report.count_all(outcomes)
        for index in noted:
            for note in batch[index].notes:
                self._report.note(batch[index].line, note, outcomes[index])

    def _own_transaction(self, rows: list[ImportRow]) -> list[str]:
        # One connection for the whole import, a transaction per batch: a checkout per batch cost a
        # pre-ping round trip each. Opened by the thread that writes (the worker, on PostgreSQL).
        if self._own is None:
            self._own = self._engine.connect()
        # Another process may add one of these addresses between our SELECT and INSERT: read again once.
        for attempt in (1, 2):
            try:
                with self._own.begin():
                    return import_batch(self._own, rows, now=self._now)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def finish(self) -> bool:
        """Commit what must be committed; True when rows were written."""
        self._collect()
        if self._connection is None:
            return True
        if self._settings.dry_run or self._report.skipped:
            self._transaction.rollback()
            return False
        self._transaction.commit()
        return True

    def close(self) -> None:
        """After an error too: the batch in flight ends, and is reported, before the connection closes."""
        if self._pending is not None:
            try:
                self._collect()
            except Exception as exc:  # the error that brought us here is on its way up: name this one too
                log.error("import: the batch being written when the import stopped failed too: %s", exc)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._seen.close()
        for connection in (self._connection, self._own):
            if connection is not None:
                connection.close()
