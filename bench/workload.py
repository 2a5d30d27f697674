"""A realistic ingest workload: a few wards' cabinets receiving lots and scanning usages.

Events are generated in order per stock point (``occurred_at`` never goes backwards within
one), so a run measures the normal path: accepted, unflagged usages and receipts, each with
a lot, an expiry and a quantity. Usages take from the oldest lot first (FIFO), a new lot is
received when the stock point runs low, so each stock point holds a couple of live lots and a
growing tail of used-up ones, as a real cabinet does; no bookkeeping flag (and no alert) is
raised by the workload itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

SITE = "H1"
TZ = "Europe/Paris"
SUPPLIER = "MEDSUP"
# (sku, GTIN of the base unit, GTIN of a box, units per box): valid GS1 check digits.
ITEMS = [
    ("GLV-M", "09501101020917", "19501101020914", 100),
    ("IVC-20G", "04006381333931", "14006381333938", 50),
    ("SUT-KIT", "00012345600012", None, 1),
    ("SYR-10ML", "05012345678900", None, 1),
]
RECEIPT_QTY = 200  # base units per receipt (a new lot)
REORDER_AT = 60  # a receipt arrives when the stock point's on-hand falls to this


@dataclass
class _StockPoint:
    sku: str
    location: str
    lot_no: int = 0
    lots: list[list[Any]] = field(default_factory=list)  # [lot, expiry, remaining], oldest first

    @property
    def on_hand(self) -> int:
        return sum(r for _, _, r in self.lots)


@dataclass
class Workload:
    """Generates master data, then stock events round-robin over the stock points."""

    run: str
    items: int = 3
    locations: int = 2
    seed: int = 11
    rng: random.Random = field(init=False)
    points: list[_StockPoint] = field(init=False)
    _seq: int = field(default=0, init=False)
    _last: datetime = field(default=datetime.min.replace(tzinfo=UTC), init=False)
    _next_point: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.items <= len(ITEMS):
            raise ValueError(f"items must be 1..{len(ITEMS)}")
        self.rng = random.Random(self.seed)
        self.points = [_StockPoint(sku, self.location_name(j))
                       for sku, *_ in ITEMS[:self.items] for j in range(self.locations)]

    @staticmethod
    def location_name(j: int) -> str:
        return f"W{j + 1}-CAB1"

    def master_data(self, at: datetime) -> list[dict[str, Any]]:
        t0 = at.astimezone(ZoneInfo(TZ)).isoformat()
        events: list[dict[str, Any]] = [
            {"event_id": f"{self.run}-sup", "type": "supplier_registered", "occurred_at": t0,
             "supplier": SUPPLIER, "name": "MedSupply SA"},
        ]
        for sku, gtin, box_gtin, per_box in ITEMS[:self.items]:
            item: dict[str, Any] = {
                "event_id": f"{self.run}-item-{sku}", "type": "item_registered", "occurred_at": t0,
                "sku": sku, "gtin": gtin, "description": f"{sku} (bench)", "base_unit": "each",
                "units": {"box": per_box} if box_gtin else {}, "pack_size": per_box,
                "criticality": "normal", "lead_time_days": 3, "supplier": SUPPLIER,
                "unit_cost": 0.5, "currency": "EUR"}
            if box_gtin:
                item["gtins"] = {"box": box_gtin}
            events.append(item)
        for j in range(self.locations):
            loc = self.location_name(j)
            events.append({"event_id": f"{self.run}-loc-{loc}", "type": "location_registered",
                           "occurred_at": t0, "location": loc, "site": SITE,
                           "name": f"Ward {j + 1} cabinet", "kind": "ward", "timezone": TZ})
        return events

    def _instant(self) -> str:
        now = datetime.now(UTC)
        if now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now.astimezone(ZoneInfo(TZ)).isoformat(timespec="microseconds")

    def next_event(self) -> tuple[int, dict[str, Any]]:
        """The next stock event and the index of its stock point."""
        i = self._next_point
        self._next_point = (i + 1) % len(self.points)
        sp = self.points[i]
        self._seq += 1
        event_id = f"{self.run}-{self._seq:08d}"
        if sp.on_hand <= REORDER_AT:
            sp.lot_no += 1
            lot = f"L{self.rng.randrange(10_000, 99_999)}{sp.lot_no:03d}"
            expiry = (date.today() + timedelta(days=self.rng.randrange(120, 720))).isoformat()
            sp.lots.append([lot, expiry, RECEIPT_QTY])
            return i, {"event_id": event_id, "type": "receipt", "occurred_at": self._instant(),
                       "site": SITE, "location": sp.location, "sku": sp.sku, "lot": lot,
                       "expiry": expiry, "quantity": RECEIPT_QTY, "unit": "each",
                       "supplier": SUPPLIER, "po_id": f"PO-{self.run}-{sp.lot_no:04d}"}
        oldest = sp.lots[0]
        qty = min(self.rng.choice((1, 1, 1, 2, 3)), oldest[2])
        oldest[2] -= qty
        if oldest[2] == 0:
            sp.lots.pop(0)
        return i, {"event_id": event_id, "type": "usage", "occurred_at": self._instant(),
                   "site": SITE, "location": sp.location, "sku": sp.sku, "lot": oldest[0],
                   "expiry": oldest[1], "quantity": qty, "unit": "each",
                   "device": f"cab-{sp.location}"}

    def events(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        return [self.next_event() for _ in range(n)]
