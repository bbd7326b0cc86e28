"""The addresses an import has seen so far, each with the line of its first row: on disk, memory flat.

An address that comes again in a file is reported with the line of its first row, however long the
file. A dict of every address grew with the file (about 150 bytes an address); here they live in a
temporary SQLite database of this process (the standard library's sqlite3: one B-tree in a file
that SQLite deletes when it is closed), whose page cache is capped, so memory stays the same at
100,000 rows and at 10,000,000. A batch costs one executemany of INSERT OR IGNORE (its addresses
sorted, so the B-tree is walked in order), and one SELECT only when the batch holds an address of an
earlier batch. Exact: a row is called a duplicate only when an earlier row really has its address.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

CACHE_KIB = 2048  # SQLite's page cache for the table (its default size), whatever the file's length
_LOOKUP_CHUNK = 500  # addresses per SELECT ... IN (...) when a batch repeats earlier ones


class SeenAddresses:
    def __init__(self, cache_kib: int = CACHE_KIB) -> None:
        # "": a private temporary database on disk, removed on close. Nothing here must survive a
        # crash, so no journal and no fsync.
        self._db = sqlite3.connect("", isolation_level=None)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{int(cache_kib)}",
                       "temp_store = FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE seen (email TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")

    def first_lines(self, rows: Sequence[tuple[str, int]]) -> list[int | None]:
        """For each (address, line) of a batch, in file order: the line of the first row with that
        address when an earlier row has it, else None (that row is the first, and is remembered).

        Lines must grow from batch to batch (they do: the file is read in order)."""
        earlier: list[int | None] = [None] * len(rows)
        firsts: dict[str, int] = {}
        for index, (email, line) in enumerate(rows):
            first = firsts.setdefault(email, line)
            if first != line:
                earlier[index] = first
        if not firsts:
            return earlier
        before = self._db.total_changes
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR IGNORE INTO seen (email, line) VALUES (?, ?)", sorted(firsts.items()))
        finally:
            self._db.execute("COMMIT")
        if self._db.total_changes - before == len(firsts):
            return earlier  # every address of the batch is new to the file: the common case
        found = self._earlier(list(firsts), min(firsts.values()))
        for index, (email, _line) in enumerate(rows):
            if email in found:
                earlier[index] = found[email]
        return earlier

    def _earlier(self, emails: list[str], below: int) -> dict[str, int]:
        """Those of `emails` first seen before line `below` (in an earlier batch), with that line."""
        found: dict[str, int] = {}
        for start in range(0, len(emails), _LOOKUP_CHUNK):
            chunk = emails[start:start + _LOOKUP_CHUNK]
            found.update(self._db.execute(
                f"SELECT email, line FROM seen WHERE line < ? AND email IN ({', '.join('?' * len(chunk))})",
                (below, *chunk),
            ).fetchall())
        return found

    def close(self) -> None:
        self._db.close()
