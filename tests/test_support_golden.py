"""The golden helper itself: it compares, it rewrites only on request and then fails, never under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.golden import assert_golden

Failed = pytest.fail.Exception


@pytest.fixture(autouse=True)
def no_update(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPDATE_GOLDEN", raising=False)
    monkeypatch.delenv("CI", raising=False)


def test_equal_bytes_pass_and_text_is_compared_as_utf8(tmp_path: Path) -> None:
    golden = tmp_path / "a.txt"
    golden.write_bytes("سلام\r\n".encode())
    assert_golden(golden, "سلام\r\n")
    assert_golden(golden, "سلام\r\n".encode())


def test_a_difference_fails_with_a_diff_and_leaves_the_file_alone(tmp_path: Path) -> None:
    golden = tmp_path / "a.txt"
    golden.write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(Failed, match=r"(?s)a\.txt differs.*-two.*\+three"):
        assert_golden(golden, "one\nthree\n")
    assert golden.read_text(encoding="utf-8") == "one\ntwo\n"


def test_a_line_ending_difference_is_a_difference(tmp_path: Path) -> None:
    golden = tmp_path / "a.txt"
    golden.write_bytes(b"one\n")
    with pytest.raises(Failed, match="only line endings"):
        assert_golden(golden, b"one\r\n")


def test_a_missing_file_fails_and_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(Failed, match="is missing"):
        assert_golden(tmp_path / "absent.txt", "x")
    assert not (tmp_path / "absent.txt").exists()


def test_update_rewrites_a_differing_file_and_still_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPDATE_GOLDEN", "1")
    golden = tmp_path / "new" / "a.txt"
    with pytest.raises(Failed, match="rewritten"):
        assert_golden(golden, "fresh\n")
    assert golden.read_text(encoding="utf-8") == "fresh\n"
    assert_golden(golden, "fresh\n")  # the next run compares and passes


@pytest.mark.parametrize("matching", [True, False])
def test_update_is_refused_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, matching: bool) -> None:
    golden = tmp_path / "a.txt"
    golden.write_text("kept\n", encoding="utf-8")
    monkeypatch.setenv("UPDATE_GOLDEN", "1")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Failed, match="refused under CI"):
        assert_golden(golden, "kept\n" if matching else "changed\n")
    assert golden.read_text(encoding="utf-8") == "kept\n"
