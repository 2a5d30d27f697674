"""A small hospital, driven through the real processor with an injected clock, and synthetic
stored events for what the processor does not record yet: shared by the projection tests."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.intake import Principal
from projections.processors import StoredEvent
from streams.processor import Processor
from streams.store import EventStore, memory_env

ADMIN = Principal("admin-ana", "admin")
SCANNER = Principal("scanner-7", "scanner")
KEY = b"k" * 32
START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday


@dataclass
class Notification:
    """What the follower reads from a log: the shape of an ``eventsourcing`` notification."""

    id: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


class Hospital:
    """Two wards restocked from a central store at site H1, one ward at site H2; three items."""

    def __init__(self, store: EventStore | None = None, seed: int = 5) -> None:
        self.now = START
        self.store = store if store is not None else EventStore(env=memory_env())
        self.p = Processor(self.store, KEY, clock=lambda: self.now)
        self.rng = random.Random(seed)
        self._ids = itertools.count(1)

    def eid(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def post(self, *events: dict[str, Any], by: Principal = SCANNER) -> list[str]:
        return [o.status for o in self.p.process([(e, by) for e in events]).outcomes]

    def register(self) -> None:
        t0 = (START - timedelta(days=1)).isoformat()
        master: list[dict[str, Any]] = [
            {"type": "location_registered", "location": "CS", "site": "H1", "kind": "central_store"},
            {"type": "location_registered", "location": "W1", "site": "H1", "restocked_from": "CS"},
            {"type": "location_registered", "location": "W2", "site": "H1", "restocked_from": "CS"},
            {"type": "location_registered", "location": "N1", "site": "H2"},
            {"type": "supplier_registered", "supplier": "MEDSUP"},
            {"type": "item_registered", "sku": "GLV", "base_unit": "each", "units": {"box": 100},
             "pack_size": 100, "unit_cost": 0.1, "lead_time_days": 3, "supplier": "MEDSUP"},
            {"type": "item_registered", "sku": "IVC", "base_unit": "each", "units": {"box": 50},
             "pack_size": 50, "unit_cost": 2.0, "criticality": "critical", "lead_time_days": 5,
             "supplier": "MEDSUP"},
            {"type": "item_registered", "sku": "SUT", "base_unit": "each", "unit_cost": 12.5,
             "criticality": "high", "lead_time_days": 4, "supplier": "MEDSUP"},
        ]
        statuses = self.post(*[dict(e, event_id=self.eid("m"), occurred_at=t0) for e in master], by=ADMIN)
        assert set(statuses) == {"accepted"}, statuses

    def at(self, day: int, hour: float) -> datetime:
        return START + timedelta(days=day, hours=hour)

    def stock(self, etype: str, day: int, hour: float, location: str, sku: str, quantity: float,
              lot: str = "L1", **extra: Any) -> dict[str, Any]:
        site = "H2" if location == "N1" else "H1"
        return {"event_id": self.eid(etype[:3]), "type": etype, "occurred_at": self.at(day, hour).isoformat(),
                "site": site, "location": location, "sku": sku, "lot": f"{sku}-{lot}",
                "quantity": quantity, **extra}

    def run(self, days: int = 14, per_batch: int = 1) -> Iterator[None]:
        """Post a fortnight of receipts, usage, waste, a transfer, a recall and a refusal,
        ``per_batch`` events per processor call; yields after every call (to follow live)."""
        expiry_soon = (START + timedelta(days=6)).date().isoformat()
        expiry_late = (START + timedelta(days=300)).date().isoformat()
        pending: list[dict[str, Any]] = []
        by: list[Principal] = []

        def add(event: dict[str, Any], who: Principal = SCANNER) -> Iterator[None]:
            pending.append(event)
            by.append(who)
            if len(pending) >= per_batch:
                yield from flush()

        def flush() -> Iterator[None]:
            if pending:
                self.now = max(self.now, *(datetime.fromisoformat(e["occurred_at"]) for e in pending))
                self.now += timedelta(minutes=1)
                self.p.process(list(zip(pending, by, strict=True)))
                pending.clear()
                by.clear()
                yield

        for day in range(days):
            if day == 0:
                for loc in ("W1", "W2", "N1"):
                    yield from add(self.stock("receipt", 0, 0.5, loc, "GLV", 2, unit="box",
                                              expiry=expiry_late, supplier="MEDSUP", unit_price=9.0))
                    yield from add(self.stock("receipt", 0, 0.6, loc, "IVC", 1, unit="box",
                                              expiry=expiry_late, supplier="MEDSUP"))
                yield from add(self.stock("receipt", 0, 0.7, "W1", "SUT", 6, lot="S1",
                                          expiry=expiry_soon, supplier="MEDSUP", unit_price=11.0))
            for loc in ("W1", "W2", "N1"):
                for k in range(self.rng.randint(1, 4)):
                    yield from add(self.stock("usage", day, 2 + k, loc, "GLV", self.rng.randint(1, 9)))
                if self.rng.random() < 0.6:
                    yield from add(self.stock("usage", day, 3.5, loc, "IVC", 1))
            if day == 3:
                yield from add(self.stock("usage", 3, 9, "W1", "SUT", 1, lot="S1",
                                          case_id="OR-CASE-1"))
                yield from add(self.stock("waste", 3, 10, "W2", "GLV", 4, reason="damaged"))
            if day == 5:
                yield from add({"event_id": self.eid("tr"), "type": "transfer",
                                "occurred_at": self.at(5, 11).isoformat(), "site": "H1",
                                "from_location": "W1", "to_location": "W2", "sku": "GLV",
                                "lot": "GLV-L1", "quantity": 10})
                yield from add({"event_id": self.eid("lc"), "type": "lot_changed",
                                "occurred_at": self.at(5, 12).isoformat(), "sku": "IVC",
                                "lot": "IVC-L1", "change": "hold", "reason": "inspection"}, ADMIN)
            if day == 8:
                yield from add({"event_id": self.eid("rc"), "type": "recall_issued",
                                "occurred_at": self.at(8, 1).isoformat(), "sku": "IVC",
                                "lots": ["IVC-L9"], "reference": "FSCA-1", "recall_class": "II"}, ADMIN)
                yield from add(self.stock("usage", 8, 13, "W9", "GLV", 1))  # unknown location
                for minute in (0, 1):  # the recalled lot scanned twice: one alert, one repeat
                    yield from add(self.stock("usage", 8, 14 + minute / 60, "W1", "IVC", 1, lot="L9"))
            if day == 9:
                yield from add(self.stock("waste", 9, 8, "W1", "SUT", 5, lot="S1", reason="expired"))
        yield from flush()


def stored(nid: int, stream: str, kind: str, body: dict[str, Any], version: int = 1) -> StoredEvent:
    return StoredEvent(nid, stream, version, f"domain.aggregates:{kind}", body)
