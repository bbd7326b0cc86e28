"""`publisher backup`: a SQLite copy taken while the store is in use, restored, and sent from."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from publisher.errors import StoreError
from publisher.store.backup import backup_sqlite, pg_dump_command
from tests.conftest import REPO, write_config

pytestmark = pytest.mark.slow


def publisher(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    return subprocess.run([sys.executable, "-m", "publisher", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**env, "COLUMNS": "250"})  # fmt: skip


def outbox(directory: Path) -> list[Path]:
    new = directory / "outbox" / "new"
    return sorted(new.iterdir()) if new.exists() else []


def test_a_restored_backup_sends_and_keeps_the_ledger(tmp_path: Path) -> None:
    live, restored = tmp_path / "live", tmp_path / "restored"
    live.mkdir()
    restored.mkdir()
    write_config(live)
    imported = publisher("subscribers", "import", str(REPO / "samples" / "subscribers.csv"), cwd=live)
    assert imported.returncode == 0, imported.stderr
    first = publisher("backup", str(tmp_path / "before-send.db"), cwd=live)
    assert first.returncode == 0 and "integrity ok" in first.stdout, first.stdout + first.stderr

    # restore the copy taken before the send into another installation and send from it
    write_config(restored)
    shutil.copyfile(tmp_path / "before-send.db", restored / "store.db")
    sent = publisher("run", "--date", "2024-12-02", cwd=restored)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    delivered = len(outbox(restored))
    assert delivered > 0

    # a copy taken after the send knows who got what: sending again from it sends nothing
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    write_config(again_dir)
    after = publisher("backup", str(tmp_path / "after-send.db"), cwd=restored)
    assert after.returncode == 0, after.stderr
    shutil.copyfile(tmp_path / "after-send.db", again_dir / "store.db")
    resent = publisher("run", "--date", "2024-12-02", cwd=again_dir)
    assert resent.returncode == 0, resent.stdout + resent.stderr
    assert outbox(again_dir) == [] and "already sent" in resent.stdout


def test_backup_while_a_writer_is_busy_is_consistent(tmp_path: Path) -> None:
    source = tmp_path / "busy.db"
    connection = sqlite3.connect(source)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE t (n INTEGER)")
    connection.commit()
    stop = threading.Event()

    def write() -> None:
        writer = sqlite3.connect(source, timeout=30)
        n = 0
        while not stop.is_set():
            writer.execute("INSERT INTO t VALUES (?)", (n,))
            writer.commit()
            n += 1
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        result = backup_sqlite(source, tmp_path / "copy.db")
    finally:
        stop.set()
        thread.join(10)
    copy = sqlite3.connect(result.target)
    rows = [n for (n,) in copy.execute("SELECT n FROM t ORDER BY n")]
    assert rows == list(range(len(rows)))  # a prefix of the writes: no torn page, no gap
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not (tmp_path / "copy.db-wal").exists()
    copy.close()
    connection.close()


def test_backup_refuses_what_it_should(tmp_path: Path) -> None:
    (tmp_path / "target.db").write_bytes(b"keep me")
    sqlite3.connect(tmp_path / "store.db").close()
    with pytest.raises(StoreError, match="exists: not overwritten"):
        backup_sqlite(tmp_path / "store.db", tmp_path / "target.db")
    assert (tmp_path / "target.db").read_bytes() == b"keep me"
    with pytest.raises(StoreError, match="no such store file"):
        backup_sqlite(tmp_path / "missing.db", tmp_path / "other.db")
    postgres = write_config(tmp_path, store_url="postgresql+psycopg://publisher@db.internal:5433/news")
    result = publisher("backup", cwd=postgres.parent)
    assert result.returncode == 2 and "pg_dump -Fc -h db.internal -p 5433 -U publisher" in result.stderr
    assert pg_dump_command("postgresql+psycopg://u@h/d", "x.dump") == "pg_dump -Fc -h h -U u -f x.dump d"
