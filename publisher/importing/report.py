"""What an import did: one line per row that was skipped or changed, and the counts.

Lines go out as they happen (`file:LINE: reason; row skipped`), so a long import shows its problems at
once and memory does not grow with them; the counts make the summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

OUTCOMES = ("added", "updated", "unchanged", "kept", "suppressed")


class Report:
    def __init__(self, path: Path, emit: Callable[[str], None]) -> None:
        self._path = path
        self._emit = emit
        self.counts: dict[str, int] = dict.fromkeys((*OUTCOMES, "skipped"), 0)
        self.notes = 0

    def skip(self, line: int, reason: str) -> None:
        self.counts["skipped"] += 1
        self._emit(f"{self._path}:{line}: {reason}; row skipped")

    def note(self, line: int, reason: str, outcome: str) -> None:
        """A row that was used with a change (a name cleaned): said, and counted with its outcome."""
        self.notes += 1
        self._emit(f"{self._path}:{line}: {reason}; row {outcome}")

    def count(self, outcome: str) -> None:
        self.counts[outcome] += 1

    def count_all(self, outcomes: Iterable[str]) -> None:
        for outcome, number in Counter(outcomes).items():
            self.counts[outcome] += number

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    @property
    def skipped(self) -> int:
        return self.counts["skipped"]

    def summary(self) -> str:
        text = ", ".join(f"{n:,} {k}" for k, n in self.counts.items())
        if self.notes:
            text += f" ({self.notes:,} with a cleaned name)"
        return text
