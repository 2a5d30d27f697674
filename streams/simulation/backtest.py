"""A backtest on a hospital's own history: the consumption an ERP exported and its item
master, read from two CSV files into the same world the simulator runs.

history CSV: ``date,sku,location,quantity`` (daily consumption, ISO dates); items CSV:
``sku,location,lead_time_days,pack_size,unit_cost,starting_stock,criticality``. Every bad
row is reported with its file and line number (``CsvErrors``); none is skipped silently.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from streams.simulation.hospital import Hospital, Item, Location, StockPoint, Supplier
from streams.simulation.scenarios import DemandPlan, Scenario

HISTORY_COLUMNS = ("date", "sku", "location", "quantity")
ITEM_COLUMNS = ("sku", "location", "lead_time_days", "pack_size", "unit_cost", "starting_stock", "criticality")
CRITICALITIES = ("critical", "high", "normal")


@dataclass(frozen=True)
class RowError:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class CsvErrors(ValueError):
    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass
class History:
    hospital: Hospital
    plan: DemandPlan
    opening: dict[str, float]
    first_day: date


def _rows(path: Path, columns: tuple[str, ...], errors: list[RowError]) -> list[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != list(columns):
            errors.append(RowError(str(path), 1, f"the header must be {','.join(columns)}"))
            return []
        out = []
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(columns):
                errors.append(RowError(str(path), line, f"expected {len(columns)} fields, found {len(row)}"))
                continue
            out.append((line, dict(zip(columns, (c.strip() for c in row), strict=True))))
        return out


def _number(value: str, name: str, path: Path, line: int, errors: list[RowError],
            minimum: float = 0.0, strict: bool = False) -> float | None:
    try:
        x = float(value)
    except ValueError:
        errors.append(RowError(str(path), line, f"{name} {value!r} is not a number"))
        return None
    if x != x or x < minimum or (strict and x <= minimum):
        bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
        errors.append(RowError(str(path), line, f"{name} {value!r} must be {bound}"))
        return None
    return x


def read_history(history_path: Path, items_path: Path) -> History:
    """Read both files; raise ``CsvErrors`` listing every bad row of either."""
    errors: list[RowError] = []
    items: dict[str, Item] = {}
    stock_points: dict[str, StockPoint] = {}
    opening: dict[str, float] = {}
    suppliers: dict[str, Supplier] = {}
    for line, r in _rows(items_path, ITEM_COLUMNS, errors):
        n = len(errors)
        sku, loc = r["sku"], r["location"]
        if not sku or not loc:
            errors.append(RowError(str(items_path), line, "sku and location are required"))
        lt = _number(r["lead_time_days"], "lead_time_days", items_path, line, errors, 0.0, strict=True)
        pack = _number(r["pack_size"], "pack_size", items_path, line, errors, 0.0, strict=True)
        cost = _number(r["unit_cost"], "unit_cost", items_path, line, errors)
        start = _number(r["starting_stock"], "starting_stock", items_path, line, errors)
        crit = r["criticality"]
        if crit not in CRITICALITIES:
            errors.append(RowError(str(items_path), line,
                                   f"criticality {crit!r} is not one of {', '.join(CRITICALITIES)}"))
        if f"{sku}@{loc}" in stock_points:
            errors.append(RowError(str(items_path), line, f"{sku} at {loc} is listed twice"))
        if len(errors) > n or lt is None or pack is None or cost is None or start is None:
            continue
        sup = f"LT{lt:g}"
        suppliers.setdefault(sup, Supplier(sup, f"lead time {lt:g} days", round(lt), 0.0, 1.0, 1.0))
        known = items.get(sku)
        if known is None:
            items[sku] = Item(sku, sku, "history", "history", crit, round(pack), cost, sup, round(lt))
        sp = StockPoint(sku, loc, 0.0, 1.0, 0.0)
        stock_points[sp.id] = sp
        opening[sp.id] = start
    uses: dict[tuple[date, str], float] = {}
    for line, r in _rows(history_path, HISTORY_COLUMNS, errors):
        try:
            day = date.fromisoformat(r["date"])
        except ValueError:
            errors.append(RowError(str(history_path), line, f"date {r['date']!r} is not an ISO date (YYYY-MM-DD)"))
            continue
        qty = _number(r["quantity"], "quantity", history_path, line, errors)
        if qty is None:
            continue
        key = f"{r['sku']}@{r['location']}"
        if key not in stock_points and stock_points:
            errors.append(RowError(str(history_path), line,
                                   f"{r['sku']} at {r['location']} is not in the items file"))
            continue
        uses[(day, key)] = uses.get((day, key), 0.0) + qty
    if errors:
        raise CsvErrors(sorted(errors, key=lambda e: (e.file != str(items_path), e.line)))
    if not uses:
        raise CsvErrors([RowError(str(history_path), 1, "no consumption rows")])
    first = min(d for d, _ in uses)
    days = (max(d for d, _ in uses) - first).days + 1
    ward: list[dict[str, float]] = [{} for _ in range(days)]
    for (day, key), qty in uses.items():
        if qty > 0:
            ward[(day - first).days][key] = qty
    locations = [Location(loc, loc, "ward") for loc in sorted({sp.location for sp in stock_points.values()})]
    hospital = Hospital(0, locations, suppliers, items, list(stock_points.values()), [], [], 0.0,
                        {"history": sorted(items)})
    plan = DemandPlan(days, ward, [[] for _ in range(days)], [[] for _ in range(days)])
    return History(hospital, plan, opening, first)


def history_scenario(days: int) -> Scenario:
    return Scenario("backtest", days + 1, 0)
