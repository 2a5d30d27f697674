"""Shared set-up for the unit tests: a processor on an in-memory or SQLite store with an
injected clock, a small catalogue, and builders for wire-format events.

Everything here is plain Python so that hypothesis tests can build a fresh world per example
(``World(...)``) without function-scoped fixtures.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from domain.aggregates import StockPoint, stock_point_id
from domain.intake import Outcome, Principal
from streams.processor import BatchResult, Processor
from streams.procurement import ProcurementSettings
from streams.store import EventStore, memory_env, sqlite_env

KEY = b"k" * 32
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # the injected "now" unless a test moves it
LONG_AGO = T0 - timedelta(days=365)

ADMIN = Principal("admin-ana", "admin")
SCANNER = Principal("scanner-7", "scanner")
BUYER = Principal("buyer-bo", "buyer")
AUDITOR = Principal("auditor-al", "auditor")

SKU = "GLOVE-M"
GTIN_EACH = "09501101020917"  # GS1's own example GTIN; valid check digit
GTIN_BOX = "09501101020924"  # valid check digit (…2 + 4)
BAD_GTIN = "09501101020918"  # last digit off by one
SITE = "H1"
WARD = "W1"  # Europe/Paris, restocked from CS
STORE = "CS"  # central store, Europe/Paris
NY_WARD = "NY1"  # America/New_York, site H2


def iso(t: datetime) -> str:
    return t.isoformat()


class World:
    """A processor with a movable clock and helpers to post events."""

    def __init__(self, store: EventStore | None = None, now: datetime = T0,
                 late_after: timedelta = timedelta(hours=1), seed_catalog: bool = True,
                 procurement: ProcurementSettings | None = None) -> None:
        self.now = now
        self.store = store if store is not None else EventStore(env=memory_env())
        self.late_after = late_after
        self.p = Processor(self.store, KEY, late_after=late_after, clock=lambda: self.now,
                           procurement=procurement)
        self._ids = itertools.count(1)
        if seed_catalog:
            self.seed()

    # -- posting ----------------------------------------------------------------------
    def eid(self, prefix: str = "e") -> str:
        return f"{prefix}-{next(self._ids)}"

    def post(self, *events: Any, by: Principal = SCANNER) -> BatchResult:
        return self.p.process([(e, by) for e in events])

    def post_as(self, pairs: Iterable[tuple[Any, Principal]]) -> BatchResult:
        return self.p.process(list(pairs))

    def one(self, event: Any, by: Principal = SCANNER) -> Outcome:
        result = self.post(event, by=by)
        assert len(result.outcomes) == 1
        return result.outcomes[0]

    def ago(self, **delta: float) -> str:
        return iso(self.now - timedelta(**delta))

    # -- master data ------------------------------------------------------------------
    def seed(self) -> None:
        results = self.post(
            self.item(), self.location(STORE, site=SITE, kind="central_store"),
            self.location(WARD, site=SITE, restocked_from=STORE),
            self.location(NY_WARD, site="H2", timezone="America/New_York"),
            by=ADMIN)
        assert [o.status for o in results.outcomes] == ["accepted"] * 4, results.outcomes

    def item(self, sku: str = SKU, at: datetime = LONG_AGO, **extra: Any) -> dict[str, Any]:
        event = {"event_id": self.eid("item"), "type": "item_registered", "occurred_at": iso(at),
                 "sku": sku, "gtin": GTIN_EACH if sku == SKU else None,
                 "gtins": {"box": GTIN_BOX} if sku == SKU else {},
                 "description": "Nitrile gloves, M", "base_unit": "each",
                 "units": {"box": 10}, "criticality": "high", "lead_time_days": 3}
        event.update(extra)
        return {k: v for k, v in event.items() if v is not None}

    def location(self, location: str, site: str = SITE, timezone: str = "Europe/Paris",
                 at: datetime = LONG_AGO, **extra: Any) -> dict[str, Any]:
        return {"event_id": self.eid("loc"), "type": "location_registered", "occurred_at": iso(at),
                "location": location, "site": site, "name": location, "kind": "ward",
                "timezone": timezone, **extra}

    def recall(self, lots: list[str], reference: str = "RC-1", at: datetime | None = None,
               sku: str = SKU) -> dict[str, Any]:
        return {"event_id": self.eid("recall"), "type": "recall_issued",
                "occurred_at": iso(at or self.now - timedelta(minutes=30)), "sku": sku,
                "lots": lots, "reference": reference, "recall_class": "I"}

    # -- stock facts ------------------------------------------------------------------
    def stock(self, type_: str, quantity: Any = 1, lot: str | None = "L1",
              location: str = WARD, at: datetime | str | None = None, site: str | None = None,
              **extra: Any) -> dict[str, Any]:
        occurred = at if isinstance(at, str) else iso(at or self.now - timedelta(minutes=5))
        event = {"event_id": self.eid(type_), "type": type_, "occurred_at": occurred,
                 "site": site or (SITE if location != NY_WARD else "H2"), "location": location,
                 "sku": SKU, "lot": lot, "quantity": quantity}
        event.update(extra)
        return {k: v for k, v in event.items() if v is not None}

    def receipt(self, quantity: Any = 10, lot: str | None = "L1", expiry: str | None = "2027-06-30",
                **kw: Any) -> dict[str, Any]:
        return self.stock("receipt", quantity, lot, expiry=expiry, **kw)

    def usage(self, quantity: Any = 1, lot: str | None = "L1", **kw: Any) -> dict[str, Any]:
        return self.stock("usage", quantity, lot, **kw)

    def count(self, quantity: Any, lot: str | None = "L1", **kw: Any) -> dict[str, Any]:
        return self.stock("stock_count", quantity, lot, **kw)

    # -- reading ----------------------------------------------------------------------
    def lots(self, sku: str = SKU, location: str = WARD) -> dict[str | None, float]:
        """Non-zero lot balances of a stock point as the live view shows them."""
        view = self.p.stock_point_view(sku, location)
        return {} if view is None else {row["lot"]: row["quantity"] for row in view["lots"]}

    def view(self, sku: str = SKU, location: str = WARD) -> dict[str, Any]:
        view = self.p.stock_point_view(sku, location)
        assert view is not None
        return view

    def stored(self) -> list[tuple[str, int, str, dict[str, Any]]]:
        """Every stored event as (stream, version, topic, decoded state)."""
        return [(n.originator_id, n.originator_version, n.topic, orjson.loads(n.state))
                for n in self.store.notifications()]

    def stored_refusals(self, event_id: str) -> list[dict[str, Any]]:
        """The stored refusal records (state) whose refused payload has this event id."""
        return [state for _, _, topic, state in self.stored()
                if topic.endswith("Refused") and isinstance(state.get("event"), dict)
                and state["event"].get("event_id") == event_id]

    def facts(self, sku: str = SKU, location: str = WARD) -> list[tuple[str, list[list[Any]]]]:
        """The stored stock facts of a stock point, in recording order."""
        return [(e.event["occurred_at"], e.moves)
                for e in self.store.stream(stock_point_id(sku, location))
                if isinstance(e, StockPoint.Recorded)]


def sqlite_store(path: Path) -> EventStore:
    return EventStore(env=sqlite_env(str(path)))


# The alert kinds of the intake rules (later issues add planning alerts such as stockouts).
INTAKE_ALERT_KINDS = frozenset({"data_quality", "expired_lot_scanned", "recalled_lot_scanned",
                                "expired_lot_used", "recalled_lot_used"})


def intake_alerts(alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts raised by the intake rules, in order, without planning alerts."""
    return [a for a in alerts if a["kind"] in INTAKE_ALERT_KINDS]


def nonzero(balances: dict[Any, float]) -> dict[Any, float]:
    return {(k or None): v for k, v in balances.items() if v != 0}
