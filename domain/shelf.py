"""Lots on the shelf: first-expiry-first-out picking and the daily expiry check.

Both work on one stock point's lots (lot, quantity, expiry, status), with no I/O.

FEFO: usable lots (status ``ok``) in order of expiry (earliest first; lots without an expiry
last; ties by lot), each with its quantity and days left.

Expiry check, at local day ``today`` with demand ``rate`` units a day (the planner's forecast):
- ``expired_on_shelf``: every lot with a positive balance whose status is ``expired``;
- ``expiry_risk``: taking usable lots in FEFO order, the use expected up to and including a
  lot's expiry day is ``rate × days_left`` (days_left = expiry − today + 1); what is still on
  the shelf then, ``min(quantity, max(0, cumulative quantity − rate × days_left))``, will
  expire before it is used. Lots expiring beyond ``horizon_days`` are not judged (a forecast
  that far out says little). Each finding carries its value at the item's ``unit_cost``.

>>> from datetime import date
>>> lots = [("A", 10.0, "2026-03-20", "ok"), ("B", 10.0, "2026-03-12", "ok"),
...         ("C", 4.0, "2026-03-01", "expired"), ("D", 5.0, None, "ok")]
>>> [r["lot"] for r in fefo(lots, date(2026, 3, 10))]
['B', 'A', 'D']
>>> f = expiry_findings(lots, date(2026, 3, 10), rate=1.0, unit_cost=2.5)
>>> [(r["lot"], r["quantity"], r["value_at_cost"]) for r in f["expired_on_shelf"]]
[('C', 4.0, 10.0)]
>>> [(r["lot"], r["at_risk"], r["value_at_cost"]) for r in f["expiry_risk"]]
[('B', 7.0, 17.5), ('A', 9.0, 22.5)]
"""

from __future__ import annotations

from datetime import date
from typing import Any

from domain.events import parse_date

LotRow = tuple[str, float, str | None, str]  # lot, quantity, expiry (YYYY-MM-DD), status
HORIZON_DAYS = 180


def fefo(lots: list[LotRow], today: date) -> list[dict[str, Any]]:
    usable = [(lot, q, exp) for lot, q, exp, status in lots if status == "ok" and q > 0]

    def order(row: tuple[str, float, str | None]) -> tuple[int, str, str]:
        return (1, "", row[0]) if row[2] is None else (0, row[2], row[0])

    out = []
    for rank, (lot, q, exp) in enumerate(sorted(usable, key=order), start=1):
        d = parse_date(exp) if exp else None
        out.append({"rank": rank, "lot": lot or None, "quantity": q, "expiry": exp,
                    "days_left": (d - today).days + 1 if d else None})
    return out


def _value(q: float, unit_cost: float | None) -> float | None:
    return round(q * unit_cost, 2) if unit_cost is not None else None


def expiry_findings(lots: list[LotRow], today: date, rate: float, unit_cost: float | None,
                    horizon_days: int = HORIZON_DAYS) -> dict[str, Any]:
    expired: list[dict[str, Any]] = [{"lot": lot or None, "quantity": q, "expiry": exp, "value_at_cost": _value(q, unit_cost)}
               for lot, q, exp, status in sorted(lots, key=lambda r: r[0])
               if status == "expired" and q > 0]
    risk: list[dict[str, Any]] = []
    cumulative = 0.0
    for row in fefo(lots, today):
        if row["days_left"] is None:
            break
        cumulative += row["quantity"]
        if row["days_left"] > horizon_days:
            continue
        left = min(row["quantity"], max(0.0, cumulative - max(rate, 0.0) * row["days_left"]))
        left = round(left, 3)
        if left > 0:
            risk.append({"lot": row["lot"], "quantity": row["quantity"], "expiry": row["expiry"],
                         "days_left": row["days_left"], "at_risk": left,
                         "value_at_cost": _value(left, unit_cost)})
    return {"expired_on_shelf": expired, "expiry_risk": risk,
            "value_at_cost": {"expired_on_shelf": _value(sum(r["quantity"] for r in expired), unit_cost),
                              "expiry_risk": _value(sum(r["at_risk"] for r in risk), unit_cost)}}
