"""Lots, recalls and traceability through the real service (issue 7): lots received at three
locations, some used (also by cases), then recalled: every remaining unit is quarantined at
once, a later scan is refused and alerts, the trace (JSON and CSV) lists exactly the cases that
used the lot, confirmations close the recall; the audit export verifies without our code."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from .support import (
    SKU,
    Service,
    future_expiry,
    iso,
    now,
    post_events,
    receipt,
    run_cli,
    setup_master,
    statuses,
    stock_point,
    usage,
)

pytestmark = pytest.mark.e2e

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_audit_export import verify_jsonl  # noqa: E402  (the independent verifier)

LOCS = ("W3", "W4", "OR1")


def test_recall_story_over_http(service: Service, clients: dict[str, httpx.Client]) -> None:
    t = now()
    setup_master(clients, t - timedelta(days=2), LOCS)
    exp = future_expiry()
    facts = [receipt(f"r-{loc}", t - timedelta(hours=3), 10, "LX", exp, location=loc) for loc in LOCS]
    facts += [receipt("r-other", t - timedelta(hours=3), 10, "LY", exp, location="OR1")]
    facts += [usage("u-1", t - timedelta(hours=2), 2, "LX", location="W3"),
              usage("u-2", t - timedelta(hours=2), 1, "LX", location="OR1", case_id="case-001"),
              usage("u-3", t - timedelta(hours=2), 1, "LX", location="OR1", case_id="case-002"),
              usage("u-4", t - timedelta(hours=2), 1, "LY", location="OR1", case_id="case-003")]
    assert statuses(post_events(clients["scanner"], facts)) == ["accepted"] * len(facts)

    recall = {"event_id": "rc-1", "type": "recall_issued", "occurred_at": iso(t - timedelta(minutes=1)),
              "sku": SKU, "lots": ["LX"], "reference": "FSCA-42", "recall_class": "II"}
    assert statuses(post_events(clients["admin"], [recall])) == ["accepted"]
    for loc, left in (("W3", 8.0), ("W4", 10.0), ("OR1", 8.0)):
        view = stock_point(clients["buyer"], SKU, loc)
        assert view["recalls"] == {"FSCA-42": {"quarantined": {"LX": left}}}, loc
        assert "LX" not in [r["lot"] for r in view["fefo"]]

    (refused,) = post_events(clients["scanner"], [usage("u-late", t, 1, "LX", location="W4")])
    assert refused["status"] == "rejected" and refused["errors"][0]["code"] == "recalled_lot"
    kinds = {a["kind"] for a in clients["buyer"].get("/v1/alerts").json()["alerts"]}
    assert {"recalled_lot_scanned", "recall_task"} <= kinds

    recalls = clients["auditor"].get("/v1/recalls").json()["recalls"]
    (rc,) = recalls
    assert rc["reference"] == "FSCA-42" and len(rc["cases"]) == 2 and rc["progress"]["locations"] == 3

    tr = clients["auditor"].get("/v1/trace", params={"sku": SKU, "lot": "LX"})
    assert tr.status_code == 200, tr.text
    body = tr.json()
    assert body["summary"]["cases"] == rc["cases"]
    assert all(c.startswith("ps_") for c in body["summary"]["cases"])  # pseudonyms only
    assert "case-001" not in tr.text
    assert [r["event_id"] for r in body["summary"]["refused_scans"]] == ["u-late"]
    assert {r["location"] for r in body["summary"]["received"]} == set(LOCS)
    as_csv = clients["auditor"].get("/v1/trace", params={"sku": SKU, "lot": "LX"},
                                    headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == len(body["events"])
    assert {r["case_id"] for r in rows if r["what"] == "usage" and r["case_id"]} == set(rc["cases"])
    assert clients["auditor"].get("/v1/trace", params={"sku": SKU, "lot": "NOPE"}).status_code == 404

    for loc, q in (("W3", {"returned": 8}), ("W4", {"destroyed": 9, "not_found": 1}), ("OR1", {"returned": 8})):
        res = post_events(clients["scanner"], [{"event_id": f"conf-{loc}", "type": "recall_confirmed",
                                               "occurred_at": iso(now()), "reference": "FSCA-42",
                                               "location": loc, **q}])
        assert statuses(res) == ["accepted"], res
    rc = clients["buyer"].get("/v1/recalls/FSCA-42").json()
    assert [task["status"] for task in rc["tasks"]] == ["confirmed"] * 3
    closed = post_events(clients["admin"], [{"event_id": "rc-close", "type": "recall_closed",
                                             "occurred_at": iso(now()), "reference": "FSCA-42"}])
    assert statuses(closed) == ["accepted"]
    assert clients["buyer"].get("/v1/recalls").json()["recalls"] == []

    audit = clients["auditor"].get("/v1/audit/streams/recall:FSCA-42")
    assert audit.status_code == 200, audit.text
    assert [e["kind"] for e in audit.json()["events"]][:2] == ["Opened", "Issued"]
    assert audit.json()["state"]["is_open"] is False
    lot_audit = clients["auditor"].get(f"/v1/audit/streams/lot:{SKU}/LX")
    assert lot_audit.status_code == 200 and lot_audit.json()["state"]["lot"] == "LX"

    out = service.data_dir / "export.jsonl"
    done = run_cli("audit", "export", "--from", (t - timedelta(days=3)).date().isoformat(),
                   "--out", str(out), data_dir=service.data_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    data = out.read_bytes()
    n = len(data.splitlines())
    assert n > 20 and verify_jsonl(data) == (n, None, "ok")
    assert {json.loads(x)["stream"] for x in data.splitlines()} >= {"recall:FSCA-42", f"lot:{SKU}/LX"}
    assert clients["buyer"].get("/v1/expiry").status_code == 200
