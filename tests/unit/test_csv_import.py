"""The CSV master-data reader (``streams.csv_import``): text cells kept as written, numbers and
flags read as such, stable event ids, and every malformed cell a refusal of its row, never an
exception."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from streams.csv_import import parse, run

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


cells = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


@given(st.lists(st.tuples(cells, cells, cells), min_size=1, max_size=20))
def test_any_cells_give_one_row_each_with_errors_not_exceptions(rows: list[tuple[str, str, str]]) -> None:
    text = csv_text(["sku", "base_unit", "lead_time_days"], [list(r) for r in rows])
    parsed = parse("items", text, "items.csv", NOW)
    kept = [r for r in rows if any(x.strip() for x in r)]
    assert len(parsed) <= len(kept)
    for row in parsed:
        assert row.event["type"] == "item_registered" and row.event["event_id"].startswith("import-items-")
        assert row.line >= 2


@given(st.from_regex(r"[0-9A-Za-z][0-9A-Za-z\-]{0,20}", fullmatch=True), st.floats(0, 1e4, allow_nan=False))
def test_text_is_kept_as_written_and_numbers_are_numbers(sku: str, days: float) -> None:
    text = csv_text(["sku", "base_unit", "lead_time_days", "divisible"], [[sku, "each", repr(days), "no"]])
    (row,) = parse("items", text, "a.csv", NOW)
    assert row.event["sku"] == sku and row.event["lead_time_days"] == days and row.event["divisible"] is False
    assert row.errors == []
    (again,) = parse("items", text, "a.csv", NOW.replace(hour=13))
    (other,) = parse("items", text, "b.csv", NOW)
    assert again.event["event_id"] == row.event["event_id"] != other.event["event_id"]


def test_a_bad_row_stops_the_file_unless_partial() -> None:
    text = csv_text(["sku", "base_unit", "lead_time_days"], [["A", "each", "3"], ["B", "each", "soon"]])
    rows = parse("items", text, "x.csv", NOW)
    assert [r.line for r in rows if r.errors] == [3]
    sent: list[list[dict]] = []

    def submit(events: list[dict]) -> list[dict]:
        sent.append(events)
        return [{"status": "accepted"} for _ in events]

    report = run("items", rows, False, lambda _: False, submit)
    assert report.stored_nothing and sent == []
    report = run("items", parse("items", text, "x.csv", NOW), True, lambda _: False, submit)
    assert report.stored == 1 and [e["sku"] for e in sent[0]] == ["A"]


def test_a_text_cell_that_looks_like_json_stays_text_and_a_huge_cell_is_a_refusal_not_a_crash() -> None:
    text = csv_text(["sku", "base_unit", "description"], [["G", "each", "[Sterile] gauze"], ["H", "each", "[1]"]])
    rows = parse("items", text, "x.csv", NOW)
    assert [r.event["description"] for r in rows] == ["[Sterile] gauze", "[1]"] and not any(r.errors for r in rows)
    import pytest
    with pytest.raises((ValueError, csv.Error)):
        parse("items", csv_text(["sku", "base_unit", "description"], [["G", "each", "x" * 200_000]]), "x.csv", NOW)
