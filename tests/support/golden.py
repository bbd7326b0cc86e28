"""The one golden-file comparison every golden test uses.

    assert_golden(GOLDEN / "en.html", html)

A golden file changes only by hand: after an intended change run the tests with UPDATE_GOLDEN=1,
which rewrites each file that differs and *fails* that test ("rewritten, review the diff"), so an
update run never passes by definition; read `git diff tests/golden`, then run again without it.
Under CI (CI=true) UPDATE_GOLDEN is refused outright: CI compares, it never writes.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

UPDATE_VARIABLE = "UPDATE_GOLDEN"


def _updating() -> bool:
    if os.environ.get(UPDATE_VARIABLE) != "1":
        return False
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{UPDATE_VARIABLE}=1 is refused under CI: golden files are compared there, never written")
    return True


def _diff(expected: bytes, actual: bytes, name: str) -> str:
    lines = difflib.unified_diff(
        expected.decode("utf-8", "replace").splitlines(), actual.decode("utf-8", "replace").splitlines(),
        f"{name} (golden)", f"{name} (now)", lineterm="", n=1,
    )
    shown = list(lines)[:60]
    return "\n".join(shown) if shown else "(only line endings or trailing bytes differ)"


def assert_golden(path: Path, actual: str | bytes) -> None:
    """Fail unless `actual` is byte for byte the golden file at `path` (str is compared as UTF-8)."""
    data = actual.encode("utf-8") if isinstance(actual, str) else actual
    updating = _updating()  # refused under CI before anything is compared
    expected = path.read_bytes() if path.exists() else None
    if expected == data:
        return
    if updating:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        pytest.fail(f"{path} rewritten ({UPDATE_VARIABLE}=1): review `git diff {path}`, then run again without it")
    if expected is None:
        pytest.fail(f"{path} is missing: run once with {UPDATE_VARIABLE}=1 and review the file")
    pytest.fail(f"{path.name} differs from its golden file {path} (after an intended change: {UPDATE_VARIABLE}=1, "
                f"then review the diff):\n{_diff(expected, data, path.name)}")
