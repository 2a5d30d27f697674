"""One procurement scenario over HTTP on both profiles: a need becomes a requisition, a buyer
approves it, the purchase order is issued, and a delivery with rejected units re-scores the
supplier. On the distributed profile the worker raises the requisition (its stock point's
stream), the API approves it and writes the scorecards and supplier notices (their one writer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from .distributed_world import Deployment, wait_for
from .test_profiles_ingest import _api

SITE, SKU, OR = "H1", "CATH", "OR1"


@pytest.fixture
def deployment_settings() -> dict[str, str]:
    return {"REPLENISH_AUTO_APPROVE_LIMIT": "0"}  # every requisition waits for a buyer


def _post(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    r = client.post("/v1/events", json=events)
    assert r.status_code == 200, r.text
    assert all(x["status"] in ("accepted", "queued") for x in r.json()["results"]), r.json()


@pytest.mark.parametrize("profile", ["embedded", "distributed"])
def test_a_need_is_approved_ordered_and_its_delivery_scored_on_both_profiles(deployment: Deployment,
                                                                              profile: str) -> None:
    d = deployment
    api = _api(d, profile)
    admin, scanner, buyer = (api.client(r) for r in ("admin", "scanner", "buyer"))
    now = datetime.now(UTC)
    long_ago = (now - timedelta(days=60)).isoformat()
    _post(admin, [
        {"event_id": "sup", "type": "supplier_registered", "occurred_at": long_ago, "supplier": "RELY",
         "certificates": [{"name": "ISO 13485", "valid_until": (now + timedelta(days=400)).date().isoformat()}]},
        {"event_id": "item", "type": "item_registered", "occurred_at": long_ago, "sku": SKU, "base_unit": "each",
         "criticality": "critical", "lead_time_days": 3, "supplier": "RELY", "unit_cost": 10},
        {"event_id": "loc", "type": "location_registered", "occurred_at": long_ago, "location": OR, "site": SITE}])
    wait_for(lambda: buyer.get(f"/v1/stock-points/{SKU}/{OR}").status_code in (200, 404), 30, "master data")
    _post(buyer, [{"event_id": "k", "type": "supplier_contract", "occurred_at": long_ago, "supplier": "RELY",
                   "sku": SKU, "price": 10, "lead_time_days": 3, "contract_id": "C-1"}])
    uses = [{"event_id": f"u-{day}", "type": "usage", "occurred_at": (now - timedelta(days=day)).isoformat(),
             "site": SITE, "location": OR, "sku": SKU, "lot": "L1", "quantity": 4} for day in range(20, 0, -1)]
    _post(scanner, [{"event_id": "r-0", "type": "receipt", "occurred_at": (now - timedelta(days=21)).isoformat(),
                     "site": SITE, "location": OR, "sku": SKU, "lot": "L1", "expiry": "2030-01-01",
                     "quantity": 100}, *uses])

    def waiting() -> list[dict[str, Any]]:
        return buyer.get("/v1/requisitions", params={"status": "pending_approval"}).json()["requisitions"]

    reqs = wait_for(waiting, 60, f"a requisition waiting for a buyer\n{d.logs()}", every=0.3)
    req = reqs[-1]  # the first need
    assert req["supplier"] == "RELY" and req["needs_buyer"] == ["over_auto_approval_limit"]
    r = buyer.post(f"/v1/requisitions/{req['id']}/approve", json={"reason": "ok"})
    assert r.status_code == 200 and r.json()["status"] == "ordered", r.text
    po_id = r.json()["po_id"]

    def issued() -> list[dict[str, Any]]:
        return [p for p in buyer.get("/v1/purchase-orders").json()["purchase_orders"] if p["po_id"] == po_id]

    (po,) = wait_for(issued, 30, "the purchase order")
    assert po["supplier"] == "RELY" and po["status"] == "open"
    received = (now + timedelta(minutes=1)).isoformat()
    _post(scanner, [
        {"event_id": "r-1", "type": "receipt", "occurred_at": received, "site": SITE, "location": OR, "sku": SKU,
         "lot": "L2", "expiry": "2030-01-01", "quantity": po["lines"][0]["quantity"], "po_id": po_id},
        {"event_id": "i-1", "type": "inspection_result", "occurred_at": received, "site": SITE, "location": OR,
         "sku": SKU, "lot": "L2", "po_id": po_id, "accepted": 2, "rejected": 8, "reason": "torn pouches"}])

    def scored() -> dict[str, Any] | None:
        cards = buyer.get("/v1/suppliers/scorecards").json()["scorecards"]
        card = next((c for c in cards if c["supplier"] == "RELY"), None)
        return card if card and card["inspections"] > 0 else None

    card = wait_for(scored, 60, f"RELY re-scored after the inspection\n{d.logs()}", every=0.3)
    assert card["batch_pass_rate"] < 0.98
    notices = {a["kind"] for a in buyer.get("/v1/alerts").json()["alerts"] if a.get("supplier") == "RELY"}
    assert "purchase_order" in notices
    for c in (admin, scanner, buyer):
        c.close()
