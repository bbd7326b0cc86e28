"""Golden files of the email digest (tests/golden/email/): compared byte for byte; rewritten only
when a person asks (UPDATE_GOLDEN=1) and never under CI (CI=true), where a difference fails."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "email"


def check_golden(name: str, actual: bytes | str) -> None:
    data = actual.encode("utf-8") if isinstance(actual, str) else actual
    path = GOLDEN / name
    under_ci = os.environ.get("CI", "").lower() == "true"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        assert not under_ci, "UPDATE_GOLDEN=1 is refused under CI: golden files change only by a person's hand"
        path.write_bytes(data)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 once and review it"
    assert data == path.read_bytes(), f"{name} differs from the golden file (UPDATE_GOLDEN=1, then review the diff)"
