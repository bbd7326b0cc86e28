"""The one error that stops an import before any row is read: the file itself is unusable."""

from __future__ import annotations

from pathlib import Path

from publisher.errors import PublisherError


class ImportFileError(PublisherError):
    """The file cannot be read as a list (encoding, header). The message names file, line and the fix."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")
