"""CSV records with the line each one starts on, and recovery from broken quoting.

Python's csv reader, left alone, lets a quote that is never closed swallow the rest of the file into
one field (silently), stops at a field over its size limit, and cannot say on which line a record began.
Here it reads from a line source that numbers the physical lines and keeps the ones the current record
used, in strict mode. When a record is broken -- a csv error, a field over the limit, or a quoted field
that runs across lines and swallows what look like further rows (a delimiter and an address) -- the
record's first line is reported and reading resumes at the next line, so the rows a stray quote would
have eaten are read again as rows. A quoted field with a newline in it (an address block, a note) stays
legal as long as it does not look like swallowed rows and spans at most MAX_RECORD_LINES lines.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

FIELD_LIMIT = 128 * 1024  # csv's own default (131,072 characters), kept: a longer field is a broken row
MAX_RECORD_LINES = 100

_ROW_LIKE = re.compile(r"[^\s@<>\"',;]+@[^\s@<>\"',;]+\.[^\s@<>\"',;]+")


@dataclass(frozen=True)
class Record:
    line: int
    fields: list[str]


@dataclass(frozen=True)
class Broken:
    line: int
    reason: str


class _TooManyLines(Exception):
    pass


class _Lines:
    """Physical lines, numbered; those read for the current record can be handed out again."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._source = iter(lines)
        self._replay: deque[tuple[int, str]] = deque()
        self._taken: list[tuple[int, str]] = []
        self._read = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._replay:
            number, line = self._replay.popleft()
        else:
            line = next(self._source)
            self._read += 1
            number = self._read
        self._taken.append((number, line))
        if len(self._taken) > MAX_RECORD_LINES:
            raise _TooManyLines
        return line

    def start(self) -> None:
        self._taken.clear()

    @property
    def first(self) -> int:
        return self._taken[0][0] if self._taken else self._read + 1

    @property
    def last(self) -> int:
        return self._taken[-1][0] if self._taken else self._read

    def resume_after_first(self) -> None:
        """The current record is dropped; its lines after the first are read again."""
        self._replay.extendleft(reversed(self._taken[1:]))
        self._taken.clear()


def sniff_delimiter(first_line: str) -> str:
    """The header's delimiter: comma, semicolon (spreadsheets in many locales) or tab."""
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_records(lines: Iterable[str], *, delimiter: str = ",") -> Iterator[Record | Broken]:
    """Every record with its first line number, or a Broken one with the reason.

    Lines with no data (blank, or only delimiters, as spreadsheets leave at the end) are no rows.
    """
    csv.field_size_limit(FIELD_LIMIT)
    source = _Lines(lines)
    reader = csv.reader(source, delimiter=delimiter, strict=True)
    while True:
        source.start()
        try:
            fields = next(reader)
        except StopIteration:
            return
        except _TooManyLines:
            yield Broken(source.first, _runaway(source.first, None))
            source.resume_after_first()
            reader = csv.reader(source, delimiter=delimiter, strict=True)
            continue
        except csv.Error as exc:
            yield Broken(source.first, _explain(exc, source))
            source.resume_after_first()
            reader = csv.reader(source, delimiter=delimiter, strict=True)
            continue
        if source.last > source.first and _swallows_rows(fields, delimiter):
            yield Broken(source.first, _runaway(source.first, source.last))
            source.resume_after_first()
            reader = csv.reader(source, delimiter=delimiter, strict=True)
            continue
        if not any(value.strip() for value in fields):  # a blank line, or only delimiters (spreadsheets)
            continue
        yield Record(source.first, fields)


def _swallows_rows(fields: list[str], delimiter: str) -> bool:
    for value in fields:
        if "\n" in value or "\r" in value:
            for piece in re.split(r"\r\n|\r|\n", value)[1:]:
                if delimiter in piece and _ROW_LIKE.search(piece):
                    return True
    return False


def _runaway(first: int, last: int | None) -> str:
    until = f"runs to line {last}" if last else f"runs past line {first + MAX_RECORD_LINES - 1}"
    return (
        f"a quote opened on this line is not closed where the field should end (it {until}, "
        "swallowing what look like further rows); close the quote, or double a quote inside a quoted "
        'field ("")'
    )


def _explain(exc: csv.Error, source: _Lines) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a field is longer than {FIELD_LIMIT:,} characters (the limit); shorten it"
    if "unexpected end of data" in text:
        return (
            f"a quote opened on this line is never closed (the field runs to the end of the file, line "
            f"{source.last}); close the quote, or double a quote inside a quoted field (\"\")"
        )
    if source.last > source.first:
        return _runaway(source.first, source.last)
    if "expected after" in text:
        return f"bad quoting ({text}): a quote inside a quoted field must be doubled (\"\")"
    return f"cannot be read as CSV ({text})"
