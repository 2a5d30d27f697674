"""Causal order across topics: an event is never refused for a reference (item, location,
supplier) sent before it in the same request, whichever worker stores the reference data and
whenever. Each round posts, through the distributed API while no worker runs, a new item's
master data and 1,000 events that need them; then two workers start at once on the backlog
(the reference topic and the events topic are consumed by separate agents, often of separate
workers). CI runs ``REPLENISH_CAUSAL_ROUNDS`` rounds (default 3); ``bench/faults.py causal``
runs 20."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import codes as c

from .distributed_world import LOCATIONS, SITE, Deployment, wait_for
from .test_profiles_ingest import Api

ROUNDS = int(os.environ.get("REPLENISH_CAUSAL_ROUNDS", "3"))
PER_ROUND = 1000
UNKNOWN = {c.UNKNOWN_ITEM, c.UNKNOWN_LOCATION, c.UNKNOWN_UNIT}


def _request(n: int) -> list[dict[str, Any]]:
    """A new supplier, location and item, and 1,000 receipts and uses of the item."""
    sku, loc, sup = f"NEW-{n}", f"NL{n}", f"SUP-{n}"
    at = datetime.now(UTC) - timedelta(hours=1)
    master = [{"event_id": f"sup-{n}", "type": "supplier_registered", "occurred_at": "2025-01-01T00:00:00+00:00",
               "supplier": sup, "name": sup},
              {"event_id": f"loc-{n}", "type": "location_registered", "occurred_at": "2025-01-01T00:00:00+00:00",
               "location": loc, "site": SITE},
              {"event_id": f"item-{n}", "type": "item_registered", "occurred_at": "2025-01-01T00:00:00+00:00",
               "sku": sku, "base_unit": "each", "supplier": sup, "lead_time_days": 2}]
    events = []
    for i in range(PER_ROUND):
        where = loc if i % 2 == 0 else LOCATIONS[i % len(LOCATIONS)]
        kind = "receipt" if i % 4 < 2 else "usage"
        events.append({"event_id": f"ev-{n}-{i}", "type": kind, "site": SITE, "location": where, "sku": sku,
                       "lot": "L1", "quantity": 1, "occurred_at": (at + timedelta(milliseconds=i)).isoformat()})
    return master + events


def _locations() -> list[dict[str, Any]]:
    return [{"event_id": f"loc-{loc}", "type": "location_registered", "occurred_at": "2025-01-01T00:00:00+00:00",
             "location": loc, "site": SITE} for loc in LOCATIONS]


def run_rounds(d: Deployment, rounds: int) -> list[dict[str, Any]]:
    """Post each round's request with no worker running, then start two workers at once;
    one report per round: how many events were refused for an unknown reference."""
    api = Api(d.env, d.tmp / "api.log")
    d.processes.append(api)
    workers = [d.start_worker()]
    workers[0].wait_assigned()
    api.wait_ready()
    admin = api.client("admin")
    assert all(r["status"] in ("accepted", "queued") for r in admin.post("/v1/events", json=_locations()).json()["results"])
    reports = []
    for n in range(rounds):
        for w in workers:
            w.stop()
        body = _request(n)
        r = admin.post("/v1/events", json=body, timeout=120)
        assert r.status_code == 200, r.text
        assert {x["status"] for x in r.json()["results"]} == {"queued"}  # no worker: a backlog
        workers = [d.start_worker(), d.start_worker()]
        for w in workers:
            w.wait_assigned()
        wait_for(lambda ids=frozenset(e["event_id"] for e in body): ids <= d.stored_ids(), 120,
                 f"round {n}'s events to be stored\n{d.logs()}", every=1.0)
        p = d.processor()
        refused = [(e["event_id"], p.event_outcome(e["event_id"])) for e in body]
        unknown = [eid for eid, o in refused if o["status"] == "rejected"
                   and {err["code"] for err in o["errors"]} & UNKNOWN]
        reports.append({"round": n + 1, "events": len(body), "refused_unknown": len(unknown)})
        assert unknown == [], f"round {n + 1}: {len(unknown)} refused for an unknown reference, e.g. {unknown[:3]}"
    admin.close()
    return reports


def test_master_data_and_their_events_in_one_request_are_never_refused_for_an_unknown_reference(
        deployment: Deployment) -> None:
    reports = run_rounds(deployment, ROUNDS)
    assert [r["refused_unknown"] for r in reports] == [0] * ROUNDS
