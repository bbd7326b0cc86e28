"""The golden-file helper: compares exactly, and under CI never rewrites a file."""

from __future__ import annotations

import pytest

from tests.support import golden_email
from tests.support.golden_email import GOLDEN, check_golden


def test_update_is_refused_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    before = (GOLDEN / "en.txt").read_bytes()
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("UPDATE_GOLDEN", "1")
    with pytest.raises(AssertionError, match="refused under CI"):
        check_golden("en.txt", "something else")
    assert (GOLDEN / "en.txt").read_bytes() == before


def test_a_difference_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPDATE_GOLDEN", raising=False)
    with pytest.raises(AssertionError, match="differs"):
        check_golden("en.txt", (GOLDEN / "en.txt").read_text(encoding="utf-8") + "x")
    check_golden("en.txt", (GOLDEN / "en.txt").read_bytes())
    assert golden_email.GOLDEN.name == "email"
