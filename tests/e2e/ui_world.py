"""A service with something on every page of /ui/: a ward stock point with a recall, alerts,
a requisition waiting for two buyers and one already ordered (procurement on, every
requisition needs a buyer, two approvals above 50)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from .support import KEYS, SITE, Service, iso, now, post_events, statuses

BUYER2_KEY = "e2e-ui-second-buyer-key-1b9e"
SKU, OTHER, WARD = "SUT-UI", "GLOVE-UI", "W7"


def _ok(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    results = post_events(client, events)
    assert statuses(results) == ["accepted"] * len(events), results


def master(t0: datetime) -> list[dict[str, Any]]:
    return [
        {"event_id": "ui-sup", "type": "supplier_registered", "occurred_at": iso(t0), "supplier": "MEDSUP",
         "certificates": [{"name": "ISO 13485", "valid_until": (t0 + timedelta(days=900)).date().isoformat()}]},
        {"event_id": "ui-loc", "type": "location_registered", "occurred_at": iso(t0), "location": WARD, "site": SITE},
        *({"event_id": f"ui-item-{sku}", "type": "item_registered", "occurred_at": iso(t0), "sku": sku,
           "base_unit": "each", "criticality": "critical", "lead_time_days": 3, "supplier": "MEDSUP",
           "unit_cost": 4} for sku in (SKU, OTHER)),
    ]


def terms(t0: datetime) -> list[dict[str, Any]]:
    return [{"event_id": f"ui-k-{sku}", "type": "supplier_contract", "occurred_at": iso(t0), "supplier": "MEDSUP",
             "sku": sku, "price": 4 if sku == SKU else 0.5, "lead_time_days": 3, "contract_id": f"C-{sku}"}
            for sku in (SKU, OTHER)]


def stock(t: datetime, sku: str, lot: str, received: float, used_per_day: float, days: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"event_id": f"ui-rcv-{sku}", "type": "receipt", "occurred_at": iso(t - timedelta(days=days, hours=1)),
         "site": SITE, "location": WARD, "sku": sku, "lot": lot, "quantity": received,
         "expiry": (t + timedelta(days=300)).date().isoformat()}]
    out += [{"event_id": f"ui-use-{sku}-{d}", "type": "usage", "occurred_at": iso(t - timedelta(days=d)),
             "site": SITE, "location": WARD, "sku": sku, "lot": lot, "quantity": used_per_day}
            for d in range(days, 0, -1)]
    return out


def start(data: Path) -> Service:
    keys = ",".join([*(f"{key}:{role}:e2e-{role}" for role, key in KEYS.items()), f"{BUYER2_KEY}:buyer:e2e-buyer-2"])
    svc = Service(data, env={"REPLENISH_API_KEYS": keys, "REPLENISH_PROCUREMENT": "true",
                             "REPLENISH_AUTO_APPROVE_LIMIT": "0", "REPLENISH_SECOND_APPROVAL_LIMIT": "50"})
    svc.start()
    t = now()
    t0 = t - timedelta(days=60)
    with svc.client("admin") as admin, svc.client("buyer") as buyer, svc.client("scanner") as scanner:
        _ok(admin, master(t0))
        _ok(buyer, terms(t0))
        # SUT-UI: 30 days of 4 a day from 130: the need is crossed, a requisition (over 50: two buyers).
        _ok(scanner, stock(t, SKU, "L-UI-1", 130, 4, 30))
        # GLOVE-UI: a recall of its lot, and a scan of the recalled lot (an alert).
        _ok(scanner, stock(t, OTHER, "L-UI-R", 40, 1, 10))
        _ok(admin, [{"event_id": "ui-recall", "type": "recall_issued", "occurred_at": iso(t - timedelta(minutes=30)),
                     "sku": OTHER, "lots": ["L-UI-R"], "reference": "FSCA-UI-1", "recall_class": "II"}])
        scanned = post_events(scanner, [{"event_id": "ui-scan-recalled", "type": "usage",
                                         "occurred_at": iso(t - timedelta(minutes=10)), "site": SITE,
                                         "location": WARD, "sku": OTHER, "lot": "L-UI-R", "quantity": 1}])
        assert statuses(scanned) == ["rejected"], scanned
    return svc


def serving(tmp_path_factory: Any, name: str) -> Iterator[Service]:
    """A module fixture's body: the world in a fresh data directory, stopped afterwards."""
    data = tmp_path_factory.mktemp(name) / "data"
    data.mkdir()
    service = start(data)
    try:
        yield service
    finally:
        service.stop()


__all__ = ["BUYER2_KEY", "OTHER", "SKU", "WARD", "serving", "start"]
