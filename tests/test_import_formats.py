"""Other tools' exports (Mailchimp, listmonk, Ghost, Substack, --map), `subscribers add` and `list --search`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.test_import_cli import FIXTURES, listed, publisher


@pytest.fixture
def site(tmp_path: Path, store_url: str) -> Path:
    write_config(tmp_path, store_url=store_url)
    for fixture in FIXTURES.iterdir():
        shutil.copy(fixture, tmp_path / fixture.name)
    return tmp_path


def test_mailchimp_status_files_map_to_our_statuses_and_never_reactivate(site: Path) -> None:
    result = publisher("subscribers", "import", "mailchimp_subscribed.csv", "--edition", "ar", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "Mailchimp (subscribed) export" in result.stdout and "3 added" in result.stdout

    result = publisher("subscribers", "import", "mailchimp_unsubscribed.csv", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "Mailchimp (unsubscribed)" in result.stdout and "1 added, 1 updated" in result.stdout

    result = publisher("subscribers", "import", "mailchimp_cleaned.csv", cwd=site)
    assert result.returncode == 0 and "Mailchimp (cleaned)" in result.stdout

    rows = listed(site)
    assert rows["rania@example.org"][1:4] == ["Rania Saleh", "ar", "active"]
    assert rows["karim@example.org"][1] == "Karim Nassar"  # the spaces Mailchimp keeps are trimmed
    assert rows["lapsed@example.org"][3] == "unsubscribed" and rows["left@example.org"][3] == "unsubscribed"
    assert rows["gone@example.org"][3] == "bounced"

    # the subscribed file again (an old export): the unsubscribed address stays unsubscribed
    result = publisher("subscribers", "import", "mailchimp_subscribed.csv", cwd=site)
    assert result.returncode == 0 and "2 updated, 0 unchanged, 1 kept" in result.stdout
    assert listed(site)["lapsed@example.org"][3] == "unsubscribed"


def test_listmonk_ghost_substack_and_mapped_columns(site: Path) -> None:
    result = publisher("subscribers", "import", "listmonk.csv", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "listmonk export" in result.stdout

    result = publisher("subscribers", "import", "ghost.csv", cwd=site)
    assert result.returncode == 0, result.stderr  # the note spans two lines inside quotes: legal
    assert "Ghost export" in result.stdout and "3 added" in result.stdout

    result = publisher("subscribers", "import", "substack.csv", cwd=site)
    assert result.returncode == 1
    assert "substack.csv:5: a Substack deletion request, not an address: not imported; row skipped" in result.stderr
    assert "Substack export" in result.stdout and "3 added" in result.stdout

    result = publisher("subscribers", "import", "other_tool.csv", "--map",
                       "email=E-mail,name=Full name,language=Lang,status=State", cwd=site)
    assert result.returncode == 0, result.stderr
    assert "mapped columns" in result.stdout and "2 added" in result.stdout

    rows = listed(site)
    statuses = {email: row[3] for email, row in rows.items()}
    assert statuses == {
        "lina@example.org": "active", "blocked@example.org": "unsubscribed", "idle@example.org": "unsubscribed",
        "omar@example.org": "active", "quiet@example.org": "unsubscribed", "paid@example.org": "active",
        "yara@example.org": "active", "free@example.org": "active", "muted@example.org": "unsubscribed",
        "nour@example.org": "active", "sami@example.org": "unsubscribed",
    }
    assert rows["paid@example.org"][1] == "سارة العلي" and rows["nour@example.org"][1:3] == ["Nour Aziz", "ar"]


def test_add_and_search(site: Path) -> None:
    added = publisher("subscribers", "add", "Hala@Example.org", "--name", "Hala Mansour", "--edition", "ar",
                      "--sections", "culture", cwd=site)
    assert added.returncode == 0, added.stderr
    assert "added hala@example.org (ar)" in added.stdout
    assert publisher("subscribers", "add", "other@example.org", "--name", "Other 100%_x", cwd=site).returncode == 0

    bad = publisher("subscribers", "add", "nope", cwd=site)
    assert bad.returncode == 2 and "invalid email 'nope'" in bad.stderr
    wrong = publisher("subscribers", "add", "x@example.org", "--sections", "gardening", cwd=site)
    assert wrong.returncode == 2 and "offered by no edition" in wrong.stderr

    publisher("subscribers", "import", "mailchimp_unsubscribed.csv", cwd=site)
    again = publisher("subscribers", "add", "left@example.org", cwd=site)
    assert again.returncode == 1 and "is unsubscribed: not re-activated" in again.stderr

    assert set(listed(site, "--search", "MANSOUR")) == {"hala@example.org"}
    assert set(listed(site, "--search", "example.org", "--status", "unsubscribed")) == {
        "left@example.org", "lapsed@example.org"}
    assert set(listed(site, "--search", "100%_")) == {"other@example.org"}  # % and _ are literal
    assert set(listed(site, "--search", "0%x")) == set()
    assert listed(site)["hala@example.org"][4] == "culture"


def test_a_progress_bar_on_a_terminal_and_none_in_a_pipe(tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    write_config(tmp_path)
    path = tmp_path / "list.csv"
    path.write_text("email,name\n" + "".join(f"r{i}@example.org,R{i}\n" for i in range(3000)), encoding="utf-8")
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "publisher", "subscribers", "import", str(path), "--config",
                                "config.yaml"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = process.communicate(timeout=120)
    os.close(master)
    assert process.returncode == 0 and "3,000 added" in stdout
    assert b"importing" in seen and b"\x1b[" in seen  # the bar, drawn with terminal control sequences

    piped = publisher("subscribers", "import", str(path), cwd=tmp_path)
    assert piped.returncode == 0 and "importing" not in piped.stderr and "\x1b[" not in piped.stderr
