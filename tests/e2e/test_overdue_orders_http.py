"""An order already past its supplier's lead time, posted through the API, raises the
reorder point before it arrives and an ``order_overdue`` alert that its receipt resolves."""

from __future__ import annotations

from datetime import timedelta

import httpx

from .support import (
    SITE,
    SKU,
    future_expiry,
    iso,
    now,
    post_events,
    receipt,
    setup_master,
    stock_point,
    usage,
)


def test_an_overdue_order_raises_the_reorder_point_before_it_arrives(clients: dict[str, httpx.Client]) -> None:
    t0 = now()
    setup_master(clients, t0 - timedelta(days=30))
    events = [receipt("r0", t0 - timedelta(days=15), 300, "L1", future_expiry())]
    events += [usage(f"u-{d}-{k}", t0 - timedelta(days=d, hours=k * 3), 1, "L1")
               for d in range(14, 0, -1) for k in range(4)]
    post_events(clients["scanner"], events)
    before = stock_point(clients["buyer"], SKU, "W3")["reorder_point"]

    po = {"event_id": "po-late", "type": "po_issued", "occurred_at": iso(t0 - timedelta(days=9)),
          "po_id": "PO-LATE", "supplier": "MEDSUP", "location": "W3", "site": SITE,
          "lines": [{"sku": SKU, "quantity": 50}], "expected_at": iso(t0 - timedelta(days=6))}
    assert post_events(clients["scanner"], [po])[0]["status"] == "accepted"
    post_events(clients["scanner"], [usage("u-now", t0 - timedelta(minutes=1), 1, "L1")])
    view = stock_point(clients["buyer"], SKU, "W3")
    assert view["reorder_point"] > before
    inputs = view["last_decisions"][0]["policy"]["inputs"]
    assert [o["po_id"] for o in inputs["overdue_orders"]] == ["PO-LATE"]

    alerts = clients["buyer"].get("/v1/alerts", params={"kind": "order_overdue"}).json()
    found = [a for a in alerts["alerts"] if a["kind"] == "order_overdue"]
    assert len(found) == 1 and found[0]["po_id"] == "PO-LATE" and found[0]["days_late"] >= 5

    arrived = dict(receipt("r-late", t0 - timedelta(seconds=30), 50, "L2", future_expiry()), po_id="PO-LATE")
    assert post_events(clients["scanner"], [arrived])[0]["status"] == "accepted"
    alerts = clients["buyer"].get("/v1/alerts", params={"status": "open"}).json()
    assert [a for a in alerts["alerts"] if a["kind"] == "order_overdue"] == []
