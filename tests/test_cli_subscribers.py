"""`publisher subscribers import | export | list | remove`, as an operator runs them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_config


def publisher(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "publisher", *args, "--config", "config.yaml"],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def test_import_export_list_remove_keep_consent(tmp_path: Path) -> None:
    write_config(tmp_path)
    first = tmp_path / "first.csv"
    first.write_text(
        "email,name,language,status\n"
        "Reader@Example.org,Reader,en,\n"
        "gone@example.org,Gone,ar,unsubscribed\n"
        "not-an-address,Broken,en,\n"
        "fr@example.org,French,fr,\n",
        encoding="utf-8",
    )
    result = publisher("subscribers", "import", str(first), cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # some rows were skipped
    assert "first.csv:4: invalid email" in result.stderr and "first.csv:5: language 'fr' has no edition" in result.stderr
    assert "2 added" in result.stdout and "2 skipped" in result.stdout

    # a later import (an old export, say) lists the unsubscribed address as active: it stays unsubscribed
    second = tmp_path / "second.csv"
    second.write_text("email,name,language,status\ngone@example.org,Gone,ar,active\n", encoding="utf-8")
    result = publisher("subscribers", "import", str(second), cwd=tmp_path)
    assert result.returncode == 0 and "1 kept" in result.stdout

    listed = publisher("subscribers", "list", cwd=tmp_path).stdout.splitlines()
    rows = {line.split("\t")[0]: line.split("\t") for line in listed[1:] if "\t" in line}
    assert rows["reader@example.org"][3] == "active" and rows["gone@example.org"][3] == "unsubscribed"

    exported = tmp_path / "export.csv"
    assert publisher("subscribers", "export", str(exported), cwd=tmp_path).returncode == 0
    with exported.open(encoding="utf-8") as handle:
        statuses = {row["email"]: row["status"] for row in csv.DictReader(handle)}
    assert statuses == {"reader@example.org": "active", "gone@example.org": "unsubscribed"}

    assert publisher("subscribers", "remove", "gone@example.org", cwd=tmp_path).returncode == 0
    # forgotten: only a hash is kept, and an import cannot bring the address back
    result = publisher("subscribers", "import", str(exported), cwd=tmp_path)
    assert "1 suppressed" in result.stdout
    assert "gone@example.org" not in publisher("subscribers", "list", cwd=tmp_path).stdout
