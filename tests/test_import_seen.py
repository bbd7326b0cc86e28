"""The in-file duplicate check: exact, the first line of each address, and memory flat as the file grows."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from publisher.config import load_config
from publisher.importing.importer import ImportSettings, import_file
from publisher.importing.report import Report
from publisher.importing.rows import RowChecker
from publisher.importing.seen import SeenAddresses
from publisher.store import Store
from tests.conftest import write_config


def test_first_lines_in_a_batch_and_across_batches() -> None:
    seen = SeenAddresses()
    try:
        assert seen.first_lines([("a@x.org", 2), ("b@x.org", 3), ("a@x.org", 4)]) == [None, None, 2]
        # an address of an earlier batch, twice in this one: both name its very first line
        assert seen.first_lines([("c@x.org", 5), ("b@x.org", 6), ("b@x.org", 7), ("d@x.org", 8)]) == [None, 3, 3, None]
        assert seen.first_lines([]) == []
        assert seen.first_lines([("a@x.org", 9), ("c@x.org", 10), ("e@x.org", 11)]) == [2, 5, None]
    finally:
        seen.close()


def test_many_distinct_addresses_are_never_called_duplicates() -> None:
    seen = SeenAddresses()
    try:
        for start in range(0, 60_000, 1000):  # more than one SELECT chunk when a batch repeats
            rows = [(f"reader{i}@example{i % 7}.org", i + 2) for i in range(start, start + 1000)]
            assert seen.first_lines(rows) == [None] * 1000
        again = [(f"reader{i}@example{i % 7}.org", 70_000 + i) for i in range(0, 60_000, 50)] + [("new@x.org", 80_000)]
        assert seen.first_lines(again) == [i + 2 for i in range(0, 60_000, 50)] + [None]
    finally:
        seen.close()


def _peak(batches: int) -> int:
    seen = SeenAddresses()
    try:
        tracemalloc.start()
        for start in range(0, batches * 1000, 1000):
            seen.first_lines([(f"reader{i}@example.org", i + 2) for i in range(start, start + 1000)])
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        seen.close()


def test_memory_of_the_check_does_not_grow_with_the_file() -> None:
    # Python's allocations; SQLite's own are its page cache, capped by SeenAddresses (cache_size)
    small, large = _peak(10), _peak(100)  # 10,000 and 100,000 addresses
    assert large < small * 1.2 + 64 * 1024, (small, large)


def test_duplicates_across_batches_are_reported_with_their_first_line(tmp_path: Path, store_url: str) -> None:
    checker = RowChecker(load_config(write_config(tmp_path, store_url=store_url)))
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name,language,status\n"
        "twice@example.org,First,en,unsubscribed\n"  # line 2
        "a@example.org,A,en,active\n"
        "b@example.org,B,en,active\n"
        "Twice@Example.org,Second,en,active\n"  # line 5: another batch (batches of 2)
        "c@example.org,C,en,active\n"
        "twice@example.org,Third,en,active\n"  # line 7
        "c@example.org,C again,en,active\n",  # line 8
        encoding="utf-8",
    )
    lines: list[str] = []
    store = Store.open(store_url)
    try:
        report = Report(path, lines.append)
        import_file(path, store.engine, checker, report, ImportSettings(batch_size=2))
        assert sorted(lines) == sorted([
            f"{path}:5: twice@example.org is already on line 2; row skipped",
            f"{path}:7: twice@example.org is already on line 2; row skipped",
            f"{path}:8: c@example.org is already on line 6; row skipped",
        ])
        assert report.summary().startswith("4 added, 0 updated, 0 unchanged, 0 kept, 0 suppressed, 3 skipped")
        twice = store.subscribers.by_email("twice@example.org")
        assert twice is not None and (twice.name, twice.status.value) == ("First", "unsubscribed")
    finally:
        store.close()
