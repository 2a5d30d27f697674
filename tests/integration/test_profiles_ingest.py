"""One ingest scenario, driven over HTTP as a scanner, a buyer, an auditor and an admin would,
on both profiles: the embedded service, and the API producing to Kafka with a Faust worker
storing in PostgreSQL. The answers must be the same, so the profiles cannot drift apart."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from .distributed_world import Api, Deployment, wait_for

GTIN = "09501101020917"


def _api(d: Deployment, profile: str) -> Api:
    env = dict(d.env)
    if profile == "embedded":
        env = {k: v for k, v in env.items() if k not in (
            "REPLENISH_PROFILE", "REPLENISH_KAFKA_BOOTSTRAP", "REPLENISH_POSTGRES_DSN")}
    else:
        d.start_worker().wait_assigned()
    api = Api(env, d.tmp / f"api-{profile}.log")
    d.processes.append(api)
    return api.wait_ready()


def _results(response: httpx.Response) -> list[tuple[Any, ...]]:
    assert response.status_code == 200, response.text
    return [(r["event_id"], r["status"], [e["code"] for e in r["errors"]], r["flags"])
            for r in response.json()["results"]]


@pytest.mark.parametrize("profile", ["embedded", "distributed"])
def test_the_same_ingest_scenario_answers_alike_on_both_profiles(deployment: Deployment, profile: str) -> None:
    api = _api(deployment, profile)
    admin, scanner, buyer, auditor = (api.client(r) for r in ("admin", "scanner", "buyer", "auditor"))
    now = datetime.now(UTC)
    at = (now - timedelta(minutes=10)).isoformat()
    later = (now - timedelta(minutes=5)).isoformat()
    master = [{"event_id": "item-1", "type": "item_registered", "occurred_at": "2025-01-01T00:00:00+00:00",
               "sku": "GLV", "gtin": GTIN, "base_unit": "each", "lead_time_days": 2},
              *[{"event_id": f"loc-{loc}", "type": "location_registered",
                 "occurred_at": "2025-01-01T00:00:00+00:00", "location": loc, "site": "H1"}
                for loc in ("W1", "W2")]]
    assert _results(admin.post("/v1/events", json=master)) == [
        ("item-1", "accepted", [], []), ("loc-W1", "accepted", [], []), ("loc-W2", "accepted", [], [])]

    def fact(eid: str, type_: str, loc: str, qty: float, lot: str = "L1", when: str = at) -> dict[str, Any]:
        return {"event_id": eid, "type": type_, "occurred_at": when, "site": "H1", "location": loc,
                "sku": "GLV", "lot": lot, "expiry": "2027-06-30", "quantity": qty}

    answers = _results(scanner.post("/v1/events", json=[
        fact("r-1", "receipt", "W1", 10), fact("r-2", "receipt", "W2", 4, lot="L2"),
        fact("u-1", "usage", "W1", 2, when=later), fact("u-2", "usage", "NOWHERE", 1),
        fact("u-1", "usage", "W1", 2, when=later)]))
    assert answers == [("r-1", "accepted", [], []), ("r-2", "accepted", [], []),
                       ("u-1", "accepted", [], []), ("u-2", "rejected", ["unknown_location"], []),
                       ("u-1", "duplicate", [], [])]
    # A raw GS1 scan: the API finds the item from its GTIN (on Kafka, to key the message).
    scan = {"barcode": f"]d201{GTIN}17270630" + "10L1", "location": "W1", "site": "H1",
            "event_id": "scan-1", "occurred_at": later}
    assert _results(scanner.post("/v1/scans", json=scan)) == [("scan-1", "accepted", [], [])]
    # A recall, then a bedside scan of the lot: refused, "do not use".
    recall = {"event_id": "rc-1", "type": "recall_issued", "occurred_at": later, "sku": "GLV",
              "lots": ["L1"], "reference": "FSCA-9", "recall_class": "I"}
    assert _results(admin.post("/v1/events", json=recall)) == [("rc-1", "accepted", [], [])]
    assert _results(scanner.post("/v1/scans", json=dict(scan, event_id="scan-2"))) == [
        ("scan-2", "rejected", ["recalled_lot"], [])]

    # The outcome later, from the store: for the poster's role, auditors and admins.
    kept = scanner.get("/v1/events/u-2")
    assert kept.status_code == 200 and kept.json()["status"] == "rejected"
    assert kept.json()["recorded_by"] == "it-scanner"
    assert auditor.get("/v1/events/u-2").json()["errors"][0]["code"] == "unknown_location"
    assert admin.get("/v1/events/scan-1").json()["status"] == "accepted"
    assert buyer.get("/v1/events/u-2").status_code == 404
    assert scanner.get("/v1/events/item-1").status_code == 404  # an admin's event
    assert auditor.get("/v1/events/never-sent").status_code == 404

    view = buyer.get("/v1/stock-points/GLV/W1").json()
    assert (view["on_hand"], view["quarantined"]) == (0.0, 7.0)  # 10 - 2 - 1, and L1 is recalled
    assert [lot["status"] for lot in view["lots"]] == ["recalled"]
    assert buyer.get("/v1/stock-points/GLV/W2").json()["on_hand"] == 4.0
    alerts = auditor.get("/v1/alerts", params={"kind": "recalled_lot_scanned"}).json()["alerts"]
    assert [a["event_id"] for a in alerts] == ["scan-2"]

    # The read side (ClickHouse projections) follows the same store on both profiles.
    def projected() -> bool:
        state = auditor.get("/v1/kpis").json().get("projections") or {}
        return bool(state.get("stored")) and state.get("position") == state.get("stored")
    wait_for(projected, 60, "the KPI projections to hold every stored event")


def test_an_event_without_an_outcome_in_time_is_queued_and_its_outcome_is_there_later(
        deployment: Deployment) -> None:
    d = deployment
    d.env["REPLENISH_OUTCOME_WAIT_SECONDS"] = "0.5"
    api = Api(d.env, d.tmp / "api.log")  # no worker yet: the events wait in Kafka
    d.processes.append(api)
    api.wait_ready()
    admin = api.client("admin")
    item = {"event_id": "item-q", "type": "item_registered", "occurred_at": "2025-01-01T00:00:00+00:00",
            "sku": "GLV", "base_unit": "each"}
    started = time.monotonic()
    assert _results(admin.post("/v1/events", json=item)) == [("item-q", "queued", [], [])]
    assert time.monotonic() - started < 10
    assert admin.get("/v1/events/item-q").status_code == 404

    d.start_worker().wait_assigned()
    found = wait_for(lambda: (r := admin.get("/v1/events/item-q")).status_code == 200 and r.json(),
                     30, "the queued event's outcome")
    assert found["status"] == "accepted" and found["recorded_by"] == "it-admin"


def test_hostile_identifiers_through_the_distributed_api_are_refused_and_none_reaches_kafka_in_clear(
        deployment: Deployment) -> None:
    api = _api(deployment, "distributed")
    admin, scanner = api.client("admin"), api.client("scanner")
    master = [{"event_id": "item-1", "type": "item_registered", "occurred_at": "2025-01-01T00:00:00+00:00",
               "sku": "GLV", "gtin": GTIN, "base_unit": "each"},
              {"event_id": "loc-W1", "type": "location_registered", "occurred_at": "2025-01-01T00:00:00+00:00",
               "location": "W1", "site": "H1"}]
    assert {r[1] for r in _results(admin.post("/v1/events", json=master))} <= {"accepted", "queued"}
    at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    use = {"type": "usage", "occurred_at": at, "site": "H1", "location": "W1", "sku": "GLV", "lot": "L1",
           "quantity": 1}
    r = scanner.post("/v1/events", json=[dict(use, event_id="X" * 1_000_000),
                                         dict(use, event_id="u-case", case_id="PATIENT-4711\n")])
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] in (["rejected", "rejected"], ["queued", "queued"],
                                                ["rejected", "queued"], ["queued", "rejected"])
    for x in results:
        if x["status"] == "rejected":
            assert x["errors"][0]["code"] == "malformed"
    messages = deployment.read_topic(deployment.topics.events, 2)
    assert all(b"PATIENT-4711" not in m.value() and len(m.value()) < 10_000 for m in messages)
