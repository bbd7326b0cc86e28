"""CSV records with their first line, and recovery from broken quoting (the reader on its own)."""

from __future__ import annotations

import io

from publisher.importing.records import MAX_RECORD_LINES, Broken, Record, read_records, sniff_delimiter


def read(text: str, delimiter: str = ",") -> list[Record | Broken]:
    return list(read_records(io.StringIO(text, newline=""), delimiter=delimiter))


def test_legal_quoted_newlines_and_blank_lines() -> None:
    items = read('email,note\n\na@example.org,"two\nlines, fine"\r\nb@example.org,x\n')
    assert items == [
        Record(1, ["email", "note"]), Record(3, ["a@example.org", "two\nlines, fine"]), Record(5, ["b@example.org", "x"]),
    ]


def test_unclosed_quote_at_end_of_file_reports_its_line_and_rereads_the_rest() -> None:
    rows = "".join(f"r{i}@example.org,R{i}\n" for i in range(5))
    items = read('email,name\nbad@example.org,"Open\n' + rows)
    assert isinstance(items[1], Broken) and items[1].line == 2 and "never closed" in items[1].reason
    assert [i.line for i in items[2:]] == [3, 4, 5, 6, 7] and all(isinstance(i, Record) for i in items[2:])


def test_a_runaway_longer_than_the_record_limit_is_cut_at_the_limit() -> None:
    rows = "".join(f"r{i},R{i}\n" for i in range(MAX_RECORD_LINES + 50))  # no address: no row-like hint
    items = read('email,name\nbad,"Open\n' + rows)
    assert isinstance(items[1], Broken) and items[1].line == 2 and "runs past line" in items[1].reason
    assert len([i for i in items if isinstance(i, Record)]) == 1 + MAX_RECORD_LINES + 50


def test_quote_closing_later_swallowing_rows_and_bad_inner_quotes() -> None:
    items = read('email,name\nx@example.org,"Stray\ny@example.org,Y\nz@example.org,"Zed"\nw@example.org,"Sm "Jr""\n')
    assert isinstance(items[1], Broken) and items[1].line == 2 and "runs to line 4" in items[1].reason
    assert items[2] == Record(3, ["y@example.org", "Y"]) and items[3] == Record(4, ["z@example.org", "Zed"])
    assert isinstance(items[4], Broken) and items[4].line == 5 and "must be doubled" in items[4].reason


def test_a_field_over_the_limit_is_one_broken_row() -> None:
    items = read("email,name\nbig@example.org," + "x" * 200_000 + "\nok@example.org,OK\n")
    assert isinstance(items[1], Broken) and "longer than 131,072" in items[1].reason
    assert items[2] == Record(3, ["ok@example.org", "OK"])


def test_delimiter_from_the_header() -> None:
    assert sniff_delimiter("E-mail;Name;Lang\n") == ";"
    assert sniff_delimiter("email\tname\n") == "\t"
    assert sniff_delimiter("email\n") == ","


def test_rows_of_only_delimiters_are_no_rows() -> None:
    assert read("email,name\na@example.org,A\n,,\n , \n") == [Record(1, ["email", "name"]), Record(2, ["a@example.org", "A"])]
