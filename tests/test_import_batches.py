"""The import's write path batch by batch, on both stores: new rows, renames and status changes in
one file, several batches, an atomic import's batches in one transaction, the history trigger."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.config import load_config
from publisher.importing.importer import ImportSettings, import_file
from publisher.importing.report import Report
from publisher.importing.rows import RowChecker
from publisher.store import Store
from publisher.store.reports import Reports
from tests.conftest import write_config


def _import(store: Store, path: Path, checker: RowChecker, **settings: object) -> Report:
    report = Report(path, lambda line: None)
    import_file(path, store.engine, checker, report, ImportSettings(batch_size=2, **settings))  # type: ignore[arg-type]
    return report


@pytest.mark.parametrize("atomic", [False, True])
def test_renames_and_status_changes_in_several_batches_land_once_each_with_their_history(
    tmp_path: Path, store_url: str, atomic: bool
) -> None:
    checker = RowChecker(load_config(write_config(tmp_path, store_url=store_url)))
    store = Store.open(store_url)
    try:
        first = tmp_path / "first.csv"
        first.write_text("email,name,language,status\n" + "".join(
            f"r{i}@example.org,Reader {i},en,active\n" for i in range(5)), encoding="utf-8")
        assert _import(store, first, checker, atomic=atomic).summary().startswith("5 added")
        second = tmp_path / "second.csv"
        second.write_text(
            "email,name,language,status\n"
            "r0@example.org,Reader 0,en,unsubscribed\n"  # status only
            "r1@example.org,Renamed\\1\tx,en,active\n"  # a name with a backslash and a tab
            "r2@example.org,Reader 2,ar,active\n"  # edition only
            "r3@example.org,Reader 3,en,active\n"  # unchanged
            "r4@example.org,Gone 4,en,unsubscribed\n"  # status and name
            "r5@example.org,New 5,en,active\n",
            encoding="utf-8",
        )
        report = _import(store, second, checker, atomic=atomic)
        assert report.summary().startswith("1 added, 4 updated, 1 unchanged"), report.summary()
        found = {f"r{i}": store.subscribers.by_email(f"r{i}@example.org") for i in range(6)}
        assert all(found.values())
        shown = {key: (s.name, s.language, s.status.value) for key, s in found.items() if s}
        assert shown == {
            "r0": ("Reader 0", "en", "unsubscribed"), "r1": ("Renamed\\1 x", "en", "active"),
            "r2": ("Reader 2", "ar", "active"), "r3": ("Reader 3", "en", "active"),
            "r4": ("Gone 4", "en", "unsubscribed"), "r5": ("New 5", "en", "active"),
        }
        reports = Reports(store.engine)
        for key, changes in (("r0", ["unsubscribed"]), ("r1", []), ("r2", []), ("r4", ["unsubscribed"])):
            subscriber = found[key]
            assert subscriber is not None
            assert [c.status for c in reports.status_changes(subscriber.id)] == changes, key
    finally:
        store.close()
