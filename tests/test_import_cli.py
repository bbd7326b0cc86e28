"""`publisher subscribers import` on broken input, as an operator runs it, on SQLite and PostgreSQL.

Every row of a file is either imported or reported as FILE:LINE: reason; the same file gives the same
outcome on both stores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_config

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
HEADER = "email,name,language,status,sections\n"


def publisher(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "publisher", *args, "--config", "config.yaml"],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def listed(cwd: Path, *args: str) -> dict[str, list[str]]:
    result = publisher("subscribers", "list", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()[1:] if "\t" in line]
    return {row[0]: row for row in rows}


def good_rows(start: int, count: int) -> str:
    return "".join(f"reader{i}@example.org,Reader {i},en,,\n" for i in range(start, start + count))


@pytest.fixture
def site(tmp_path: Path, store_url: str) -> Path:
    write_config(tmp_path, store_url=store_url)
    return tmp_path


def test_unclosed_quote_is_reported_at_its_line_and_the_rows_after_it_are_imported(site: Path) -> None:
    path = site / "quote.csv"
    # 10 good rows, then a name whose quote never closes, then 40 good rows: csv alone made all 40 part
    # of that one name.
    path.write_text(HEADER + good_rows(0, 10) + 'broken@example.org,"Unclosed Name,en,,\n' + good_rows(10, 40),
                    encoding="utf-8")
    result = publisher("subscribers", "import", str(path), cwd=site)
    assert result.returncode == 1, result.stderr
    assert f"{path}:12: a quote opened on this line is never closed" in result.stderr
    assert result.stderr.count("row skipped") == 1
    assert "50 added" in result.stdout and "1 skipped" in result.stdout
    rows = listed(site)
    assert len(rows) == 50 and "broken@example.org" not in rows
    assert rows["reader49@example.org"][1] == "Reader 49"


def test_a_quote_closed_many_lines_later_does_not_swallow_the_rows_between(site: Path) -> None:
    path = site / "late.csv"
    path.write_text(
        HEADER + good_rows(0, 3) + 'stray@example.org,"Stray,en,,\n' + good_rows(3, 5)
        + 'quoted@example.org,"Haddad, Lina",en,,\n'  # a legal quoted comma, where the stray quote would end
        + 'multi@example.org,"First line\nsecond line",en,,\n'  # a legal newline inside quotes
        + good_rows(8, 2),
        encoding="utf-8",
    )
    result = publisher("subscribers", "import", str(path), cwd=site)
    assert result.returncode == 1, result.stderr
    assert f"{path}:5: a quote opened on this line is not closed where the field should end (it runs to line 11" \
        in result.stderr
    assert f"{path}:12: control characters removed from the name; row added" in result.stderr
    assert "12 added" in result.stdout and "1 skipped" in result.stdout
    rows = listed(site)
    assert rows["quoted@example.org"][1] == "Haddad, Lina"
    assert rows["multi@example.org"][1] == "First line second line"
    assert "stray@example.org" not in rows and len(rows) == 12


def test_a_field_over_the_limit_skips_its_row_only(site: Path) -> None:
    path = site / "huge.csv"
    huge = "x" * (200 * 1024)
    long_name = "N" * (100 * 1024)
    path.write_text(
        HEADER + good_rows(0, 7) + f"huge@example.org,{huge},en,,\n" + f"long@example.org,{long_name},en,,\n"
        + good_rows(7, 12),
        encoding="utf-8",
    )
    result = publisher("subscribers", "import", str(path), cwd=site)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}:9: a field is longer than 131,072 characters (the limit); shorten it; row skipped" in result.stderr
    assert f"{path}:10: name cut to 100 characters (it had 102,400); row added" in result.stderr
    assert "20 added" in result.stdout and "1 skipped" in result.stdout
    rows = listed(site)
    assert len(rows) == 20 and rows["long@example.org"][1] == "N" * 100


def test_nul_bytes_give_the_same_outcome_on_every_store(site: Path) -> None:
    path = site / "nul.csv"
    path.write_text(
        HEADER + good_rows(0, 82) + "nul@example.org,Before\x00After,en,,\n" + "bad\x00@example.org,Nul Mail,en,,\n"
        + good_rows(82, 117),
        encoding="utf-8",
    )
    result = publisher("subscribers", "import", str(path), cwd=site)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{path}:84: control characters removed from the name; row added" in result.stderr
    assert f"{path}:85: invalid email 'bad\\x00@example.org'" in result.stderr
    assert "200 added" in result.stdout and "1 skipped" in result.stdout
    rows = listed(site)
    assert len(rows) == 200 and rows["nul@example.org"][1] == "Before After"


def test_encodings_are_detected_or_refused_with_the_way_to_convert(site: Path) -> None:
    latin = site / "latin.csv"
    latin.write_bytes((HEADER + good_rows(0, 3) + "jose@example.org,José Núñez,en,,\n").encode("latin-1"))
    refused = publisher("subscribers", "import", str(latin), cwd=site)
    assert refused.returncode == 2, refused.stderr
    assert f"{latin}:5: not UTF-8 (byte 0xe9)" in refused.stderr
    assert "iconv -f" in refused.stderr and "--encoding" in refused.stderr and "Traceback" not in refused.stderr
    assert listed(site) == {}  # refused before the first row

    named = publisher("subscribers", "import", str(latin), "--encoding", "latin-1", cwd=site)
    assert named.returncode == 0, named.stderr
    assert listed(site)["jose@example.org"][1] == "José Núñez"

    utf16 = site / "utf16.csv"
    utf16.write_bytes((HEADER + "layla@example.org,ليلى حداد,ar,,\n").encode("utf-16"))  # with a BOM
    result = publisher("subscribers", "import", str(utf16), cwd=site)
    assert result.returncode == 0, result.stderr
    assert "UTF-16" in result.stdout and "1 added" in result.stdout

    bom = site / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (HEADER + "omar@example.org,عمر,ar,,\n").encode("utf-8"))
    result = publisher("subscribers", "import", str(bom), cwd=site)
    assert result.returncode == 0, result.stderr
    rows = listed(site)
    assert rows["layla@example.org"][1] == "ليلى حداد" and rows["omar@example.org"][1] == "عمر"

    no_bom = site / "nobom16.csv"
    no_bom.write_bytes((HEADER + "x@example.org,X,en,,\n").encode("utf-16-le"))
    result = publisher("subscribers", "import", str(no_bom), cwd=site)
    assert result.returncode == 2 and "UTF-16 without a byte-order mark" in result.stderr


def test_dry_run_reports_and_writes_nothing_atomic_is_all_or_nothing(site: Path) -> None:
    path = site / "mixed.csv"
    path.write_text(HEADER + good_rows(0, 5) + "not-an-address,Broken,en,,\n" + good_rows(5, 5), encoding="utf-8")

    dry = publisher("subscribers", "import", str(path), "--dry-run", cwd=site)
    assert dry.returncode == 1
    assert f"{path}:7: invalid email 'not-an-address'" in dry.stderr
    assert "10 added" in dry.stdout and "dry run: nothing was written" in dry.stdout
    assert listed(site) == {}

    atomic = publisher("subscribers", "import", str(path), "--atomic", cwd=site)
    assert atomic.returncode == 1
    assert "--atomic: nothing was written" in atomic.stdout
    assert listed(site) == {}

    path.write_text(HEADER + good_rows(0, 10), encoding="utf-8")
    atomic = publisher("subscribers", "import", str(path), "--atomic", cwd=site)
    assert atomic.returncode == 0, atomic.stderr
    assert len(listed(site)) == 10


def test_duplicates_sections_and_statuses(site: Path) -> None:
    path = site / "rules.csv"
    path.write_text(
        HEADER
        + "twice@example.org,First,en,unsubscribed,\n"
        + "Twice@Example.org,Second,en,active,\n"  # the same address: the first row decides
        + "arts@example.org,Arts,en,,culture;sports\n"
        + "nosuch@example.org,No Such,en,,gardening\n"
        + "odd@example.org,Odd,en,sleeping,\n",
        encoding="utf-8",
    )
    result = publisher("subscribers", "import", str(path), cwd=site)
    assert result.returncode == 1
    assert f"{path}:3: twice@example.org is already on line 2; row skipped" in result.stderr
    assert f"{path}:5: section 'gardening' is offered by no edition (sections: politics, economy, culture, sports)" \
        in result.stderr
    assert f"{path}:6: unknown status 'sleeping'" in result.stderr
    rows = listed(site)
    assert rows["twice@example.org"][3] == "unsubscribed" and rows["arts@example.org"][4] == "culture,sports"
    assert set(rows) == {"twice@example.org", "arts@example.org"}


def test_more_fields_than_the_header_is_reported(site: Path) -> None:
    path = site / "shifted.csv"
    path.write_text(HEADER + "doe@example.org,Doe, John,en,,\n" + good_rows(0, 1), encoding="utf-8")
    result = publisher("subscribers", "import", str(path), cwd=site)
    assert result.returncode == 1
    assert f"{path}:2: 6 fields where the header has 5" in result.stderr
    assert set(listed(site)) == {"reader0@example.org"}


def test_no_email_column_names_the_fix(site: Path) -> None:
    path = site / "noemail.csv"
    path.write_text("address,who\nx@example.org,X\n", encoding="utf-8")
    result = publisher("subscribers", "import", str(path), cwd=site)
    assert result.returncode == 2
    assert f"{path}:1: no email column in the header (columns: address, who)" in result.stderr
    assert "--map email=COLUMN" in result.stderr
    mapped = publisher("subscribers", "import", str(path), "--map", "email=address,name=who", cwd=site)
    assert mapped.returncode == 0, mapped.stderr
    assert listed(site)["x@example.org"][1] == "X"


def test_rules_hold_across_batches(site: Path) -> None:
    first = site / "first.csv"
    first.write_text(HEADER + "reader1500@example.org,Left Us,en,unsubscribed,\n" + "forgot@example.org,F,en,,\n",
                     encoding="utf-8")
    assert publisher("subscribers", "import", str(first), cwd=site).returncode == 0
    assert publisher("subscribers", "remove", "forgot@example.org", cwd=site).returncode == 0

    path = site / "big.csv"
    rows = good_rows(0, 2300) + "Reader10@example.org,Again,en,,\n" + "forgot@example.org,Back,en,,\n" + good_rows(2300, 200)
    path.write_text(HEADER + rows, encoding="utf-8")
    result = publisher("subscribers", "import", str(path), cwd=site)
    assert result.returncode == 1
    assert f"{path}:2302: reader10@example.org is already on line 12; row skipped" in result.stderr
    assert "2,499 added, 0 updated, 0 unchanged, 1 kept, 1 suppressed, 1 skipped" in result.stdout
    listing = listed(site)
    assert listing["reader1500@example.org"][3] == "unsubscribed" and listing["reader10@example.org"][1] == "Reader 10"
    assert "forgot@example.org" not in listing and len(listing) == 2500
