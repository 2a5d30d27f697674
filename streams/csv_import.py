"""Master data from CSV for go-live (issue 17, item 4): items, locations, suppliers and supplier
contracts, one row an event (``item_registered``, ``location_registered``,
``supplier_registered``, ``supplier_contract``).

- Columns are named as the event's fields. Empty cells are left out. A cell of a list or
  object field (``JSON_FIELDS``: ``units`` ``{"box": 10}``, ``gtins``, ``substitutes``,
  ``certificates``, ``price_breaks``) holds JSON; the number fields (``NUMBERS``) and the true/false
  fields (``BOOLEANS``) are read as such; every other cell is text, as written (an SKU
  ``00123`` keeps its zeros).
- ``effective_from`` (optional column, a date or an instant with an offset) is the event's
  ``occurred_at``; without it, the import's time.
- Each row's ``event_id`` is derived from the file's name and the row's cells
  (``import-<kind>-<sha256 prefix>``), so importing the same file again finds its rows already
  stored (``already``) and stores nothing twice.
- Every row is checked first with the stateless checks any posted event gets (fields,
  types, codes); a file with a row refused there stores nothing unless ``partial`` (then its
  good rows are stored), and the report names each refused row by its line number. What needs
  the stored state (a contract for an unknown supplier) is refused when the rows are stored,
  row by row, and reported the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from domain import codes as c
from domain.events import check_envelope

KINDS = {"items": "item_registered", "locations": "location_registered",
         "suppliers": "supplier_registered", "contracts": "supplier_contract"}
NUMBERS = frozenset({"pack_size", "lead_time_days", "lead_time_sd_days", "unit_cost", "price", "min_order",
                     "shelf_life_days"})
BOOLEANS = frozenset({"consignment", "divisible"})
JSON_FIELDS = frozenset({"units", "gtins", "substitutes", "certificates", "price_breaks", "extra"})
TRUE, FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})
MAX_ROWS = 10_000


@dataclass
class Row:
    line: int
    event: dict[str, Any]
    errors: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Report:
    kind: str
    rows: list[Row]
    stored: int = 0  # rows accepted now
    queued: int = 0  # rows taken for storing (distributed profile: their outcome came later)
    already: int = 0  # rows a previous import stored
    stored_nothing: bool = False  # refused rows and not partial: nothing was submitted

    @property
    def refused(self) -> list[Row]:
        return [r for r in self.rows if r.errors]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows": len(self.rows), "stored": self.stored, "queued": self.queued,
                "already": self.already,
                "stored_nothing": self.stored_nothing,
                "refused": [{"line": r.line, "event_id": r.event.get("event_id"), "errors": r.errors}
                            for r in self.refused]}


def _cell(name: str, text: str) -> Any:
    if name in NUMBERS:
        return float(text)
    if name in BOOLEANS:
        low = text.strip().lower()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
        raise ValueError(f"'{name}' must be true or false, not {text!r}")
    if name in JSON_FIELDS:
        return orjson.loads(text)
    return text


def _effective(text: str) -> str:
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        if len(text) > 10:
            raise ValueError("an instant needs an offset (e.g. +00:00), or give a date")
        t = t.replace(tzinfo=UTC)
    return t.isoformat()


def parse(kind: str, text: str, source: str, now: datetime) -> list[Row]:
    """The rows of a CSV file as events, each with the errors of its cells and of the event's
    stateless checks (``check_envelope`` as an admin posts it)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if not header:
        return []
    header = [h.strip() for h in header]
    rows: list[Row] = []
    for line, cells in enumerate(reader, start=2):
        if not any(x.strip() for x in cells):
            continue
        if len(rows) >= MAX_ROWS:
            raise ValueError(f"more than {MAX_ROWS:,} rows: split the file")
        errors: list[dict[str, str]] = []
        event: dict[str, Any] = {"type": KINDS[kind]}
        if len(cells) > len(header):
            errors.append({"field": "", "code": c.MALFORMED,
                           "message": f"{len(cells)} cells where the header names {len(header)} columns"})
        for name, value in zip(header, cells, strict=False):
            if not name or value.strip() == "":
                continue
            try:
                if name == "effective_from":
                    event["occurred_at"] = _effective(value.strip())
                else:
                    event[name] = _cell(name, value.strip())
            except ValueError as exc:
                errors.append({"field": name, "code": c.MALFORMED, "message": f"{name}: {exc}"})
        content = orjson.dumps({k: v for k, v in event.items() if k != "occurred_at"}, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(source.encode() + b"\n" + content).hexdigest()[:24]
        event["event_id"] = f"import-{kind}-{digest}"
        event.setdefault("occurred_at", now.isoformat())
        if not errors:
            _, found = check_envelope(dict(event), c.ADMIN, now)
            errors = [{"field": e.field, "code": e.code, "message": e.message} for e in found]
        rows.append(Row(line, event, errors))
    return rows


def plan(kind: str, rows: list[Row], partial: bool, known: Callable[[str], bool]) -> tuple[Report, list[Row]]:
    """What to submit: nothing when any row is refused and not ``partial``; rows an earlier
    import of the same file stored (``known(event_id)``) are counted ``already``."""
    report = Report(kind, rows)
    if report.refused and not partial:
        report.stored_nothing = True
        return report, []
    todo = []
    for row in rows:
        if row.errors:
            continue
        if known(row.event["event_id"]):
            report.already += 1
        else:
            todo.append(row)
    return report, todo


def settle(report: Report, todo: list[Row], outcomes: Iterable[dict[str, Any]]) -> Report:
    """Count the submitted rows' outcomes (``{"status", "errors"}``, in order)."""
    for row, outcome in zip(todo, outcomes, strict=True):
        if outcome.get("status") == c.ACCEPTED:
            report.stored += 1
        elif outcome.get("status") == c.DUPLICATE:
            report.already += 1
        elif outcome.get("status") == "queued":
            report.queued += 1
        else:
            row.errors = list(outcome.get("errors") or [{"field": "", "code": str(outcome.get("status")),
                                                           "message": "not stored"}])
    return report


def run(kind: str, rows: list[Row], partial: bool, known: Callable[[str], bool],
        submit: Callable[[list[dict[str, Any]]], Iterable[dict[str, Any]]]) -> Report:
    """``plan``, ``submit`` (posts events, gives their outcomes in order), ``settle``."""
    report, todo = plan(kind, rows, partial, known)
    return settle(report, todo, submit([r.event for r in todo]) if todo else [])


__all__ = ["BOOLEANS", "KINDS", "MAX_ROWS", "NUMBERS", "Report", "Row", "parse", "plan", "run", "settle"]
