"""Events, scans, recalls and audit history through the real HTTP API."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from .support import (
    GTIN_BOX,
    GTIN_EACH,
    PER_BOX,
    SITE,
    SKU,
    iso,
    now,
    post_events,
    receipt,
    setup_master,
    statuses,
    stock_point,
    usage,
)

pytestmark = pytest.mark.e2e


def history(client: httpx.Client, sku: str, location: str, **params: str) -> dict:
    r = client.get(f"/v1/audit/stock-points/{sku}/{location}/events", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def recorded(hist: dict) -> list[dict]:
    return [e for e in hist["events"] if e["kind"] == "Recorded"]


def test_accepted_events_change_stock_exactly_once_across_a_resend_of_the_same_batch(clients):
    t = now()
    setup_master(clients, t - timedelta(days=1))
    expiry = (t + timedelta(days=300)).date().isoformat()
    batch = [
        receipt("r-1", t - timedelta(minutes=30), 50, "L1", expiry),
        receipt("r-2", t - timedelta(minutes=29), 2, "L1", expiry, unit="box"),  # 20 each
        usage("u-1", t - timedelta(minutes=20), 3, "L1"),
        usage("u-2", t - timedelta(minutes=10), 4, "L1"),
        {**usage("u-3", t - timedelta(minutes=5), 1, "L1"), "unit": "box"},  # 10 each
    ]
    expected = 50 + 20 - 3 - 4 - 10

    first = post_events(clients["scanner"], batch)
    assert statuses(first) == ["accepted"] * 5, first
    assert [r["event_id"] for r in first] == [e["event_id"] for e in batch]
    sp = stock_point(clients["buyer"], SKU, "W3")
    assert sp["on_hand"] == expected
    assert sp["inventory_position"] == expected
    assert [(lot["lot"], lot["quantity"]) for lot in sp["lots"]] == [("L1", expected)]

    again = post_events(clients["scanner"], batch)
    assert statuses(again) == ["duplicate"] * 5, again
    assert [r["event_id"] for r in again] == [e["event_id"] for e in batch]
    # And once more, in another order and with keys reordered: still duplicates.
    shuffled = [dict(reversed(list(e.items()))) for e in reversed(batch)]
    assert statuses(post_events(clients["scanner"], shuffled)) == ["duplicate"] * 5

    assert stock_point(clients["buyer"], SKU, "W3")["on_hand"] == expected
    hist = history(clients["auditor"], SKU, "W3")
    assert sorted(e["event"]["event_id"] for e in recorded(hist)) == sorted(e["event_id"] for e in batch)
    assert hist["state"]["on_hand"] == expected

    # The same event id with other content is refused, and changes nothing.
    reused = post_events(clients["scanner"], [{**batch[2], "quantity": 30}])
    assert reused[0]["status"] == "rejected"
    assert [e["code"] for e in reused[0]["errors"]] == ["event_id_reused"]
    assert stock_point(clients["buyer"], SKU, "W3")["on_hand"] == expected


def test_gs1_datamatrix_with_lot_and_expiry_and_a_box_gtin_scan_become_the_right_usage(clients):
    t = now()
    setup_master(clients, t - timedelta(days=1))
    exp = date(t.year + 1, 6, 30)
    yymmdd = exp.strftime("%y%m%d")
    assert statuses(post_events(clients["scanner"], [
        receipt("r-lot42", t - timedelta(minutes=30), 100, "LOT42", exp.isoformat()),
    ])) == ["accepted"]

    scans = [
        # DataMatrix, symbology identifier ]d2, AIs 01 (each), 17 (expiry), 10 (lot); 2 packages.
        ({"barcode": "]d2" + "01" + GTIN_EACH + "17" + yymmdd + "10LOT42", "quantity": 2}, 2),
        # GS1-128 of the box GTIN, lot first so a GS separator ends it, then a serial.
        ({"barcode": "]C1" + "01" + GTIN_BOX + "10LOT42" + "\x1d" + "17" + yymmdd + "21BX001"}, PER_BOX),
        # The same box level without symbology identifier or separator (lot last).
        ({"barcode": "01" + GTIN_BOX + "17" + yymmdd + "10LOT42", "quantity": 1}, PER_BOX),
        # A GS1 Digital Link URI of the base unit.
        ({"barcode": f"https://id.gs1.org/01/{GTIN_EACH}/10/LOT42?17={yymmdd}"}, 1),
    ]
    on_hand = 100
    for i, (scan, base_units) in enumerate(scans):
        body = {**scan, "location": "W3", "site": SITE, "event_id": f"scan-{i}",
                "occurred_at": iso(t - timedelta(minutes=20 - i))}
        r = clients["scanner"].post("/v1/scans", json=body)
        assert r.status_code == 200, r.text
        (result,) = r.json()["results"]
        assert result == {"event_id": f"scan-{i}", "status": "accepted", "errors": [], "flags": []}, (scan, result)
        on_hand -= base_units
        sp = stock_point(clients["buyer"], SKU, "W3")
        assert sp["on_hand"] == on_hand, (scan, sp)
        assert sp["lots"] == [{"lot": "LOT42", "expiry": exp.isoformat(), "quantity": on_hand,
                               "status": "ok"}]

    assert on_hand == 100 - 2 - PER_BOX - PER_BOX - 1
    stored = {e["event"]["event_id"]: e["event"] for e in recorded(history(clients["auditor"], SKU, "W3"))}
    first, box = stored["scan-0"], stored["scan-1"]
    assert (first["type"], first["sku"], first["gtin"], first["lot"], first["expiry"]) == (
        "usage", SKU, GTIN_EACH, "LOT42", exp.isoformat())
    assert (first["quantity"], first["unit"]) == (2, "each")
    assert (box["gtin"], box["lot"], box["serial"], box["quantity"], box["unit"]) == (
        GTIN_BOX, "LOT42", "BX001", PER_BOX, "each")
    assert (box["sent_quantity"], box["sent_unit"]) == (1, "box")

    # A scan without a GTIN is refused with a reason, and changes nothing.
    r = clients["scanner"].post("/v1/scans", json={"barcode": "10LOT42", "location": "W3", "site": SITE,
                                                   "event_id": "scan-bad"})
    (bad,) = r.json()["results"]
    assert bad["status"] == "rejected" and bad["errors"][0]["field"] == "barcode"
    assert stock_point(clients["buyer"], SKU, "W3")["on_hand"] == on_hand


def test_recalled_lot_scan_is_refused_stored_and_alerts_while_a_case_usage_is_kept_flagged_and_alerts(clients):
    t = now()
    setup_master(clients, t - timedelta(days=1))
    exp = date(t.year + 1, 3, 31)
    assert statuses(post_events(clients["scanner"], [
        receipt("r-rcl", t - timedelta(minutes=40), 30, "RCL1", exp.isoformat()),
        receipt("r-ok", t - timedelta(minutes=40), 5, "OK1", exp.isoformat()),
    ])) == ["accepted", "accepted"]
    recall = {"event_id": "recall-1", "type": "recall_issued", "occurred_at": iso(t - timedelta(minutes=30)),
              "sku": SKU, "lots": ["RCL1"], "reference": "FSCA-2026-001", "recall_class": "II"}
    # Only an admin may issue a recall. (A refused event id keeps its refusal, so a new id.)
    denied = post_events(clients["scanner"], {**recall, "event_id": "recall-by-scanner"})
    assert denied[0]["status"] == "rejected" and denied[0]["errors"][0]["code"] == "forbidden_type"
    assert statuses(post_events(clients["admin"], recall)) == ["accepted"]
    before = stock_point(clients["buyer"], SKU, "W3")
    assert (before["on_hand"], before["quarantined"]) == (5, 30)

    # A point-of-care scan of the recalled lot: refused.
    scan = {"barcode": "]d2" + "01" + GTIN_EACH + "17" + exp.strftime("%y%m%d") + "10RCL1",
            "location": "W3", "site": SITE, "event_id": "scan-rcl",
            "occurred_at": iso(t - timedelta(minutes=10))}
    r = clients["scanner"].post("/v1/scans", json=scan)
    assert r.status_code == 200, r.text
    (refused,) = r.json()["results"]
    assert refused["status"] == "rejected"
    assert [e["code"] for e in refused["errors"]] == ["recalled_lot"]
    after = stock_point(clients["buyer"], SKU, "W3")
    assert (after["on_hand"], after["quarantined"]) == (5, 30)
    # Re-sending the refused scan gets the same refusal.
    again = clients["scanner"].post("/v1/scans", json=scan).json()["results"][0]
    assert (again["status"], again["errors"]) == ("rejected", refused["errors"])

    # Stored as refused: the audit history shows it, with its reasons.
    hist = history(clients["auditor"], SKU, "W3")
    refusals = [e for e in hist["events"] if e["kind"] == "Refused"]
    assert [e["event"]["event_id"] for e in refusals] == ["scan-rcl"]
    assert refusals[0]["errors"][0]["code"] == "recalled_lot"
    assert refusals[0]["recorded_by"] == "e2e-scanner"
    assert "scan-rcl" not in {e["event"]["event_id"] for e in recorded(hist)}

    alerts = clients["buyer"].get("/v1/alerts", params={"kind": "recalled_lot_scanned"}).json()["alerts"]
    assert len(alerts) == 1
    a = alerts[0]
    assert (a["kind"], a["severity"], a["sku"], a["location"], a["status"], a["event_id"]) == (
        "recalled_lot_scanned", "critical", SKU, "W3", "open", "scan-rcl")
    assert a["id"] and a["raised_at"]

    # A surgical case's usage of the same lot, recorded after the fact: kept, flagged, alerts.
    case_use = usage("case-use-1", t - timedelta(minutes=5), 2, "RCL1", case_id="OR-CASE-5512")
    (kept,) = post_events(clients["scanner"], [case_use])
    assert kept["status"] == "accepted", kept
    assert "recalled_lot_used" in kept["flags"]
    sp = stock_point(clients["buyer"], SKU, "W3")
    assert (sp["on_hand"], sp["quarantined"]) == (5, 28)
    assert "recalled_lot_used" in sp["flags"]
    used = clients["auditor"].get("/v1/alerts", params={"kind": "recalled_lot_used"}).json()["alerts"]
    assert [(x["severity"], x["sku"], x["location"], x["event_id"]) for x in used] == [
        ("critical", SKU, "W3", "case-use-1")]
    # The same case through a scan is kept too.
    r = clients["scanner"].post("/v1/scans", json={**scan, "event_id": "scan-case", "case_id": "OR-CASE-5512"})
    (kept_scan,) = r.json()["results"]
    assert kept_scan["status"] == "accepted" and "recalled_lot_used" in kept_scan["flags"]
    assert stock_point(clients["buyer"], SKU, "W3")["quarantined"] == 27


def test_as_of_and_known_at_return_the_earlier_states(clients):
    t = now()
    setup_master(clients, t - timedelta(days=1))
    exp = (t + timedelta(days=300)).date().isoformat()
    t_receipt, t_use1, t_late, t_use2 = (t - timedelta(minutes=m) for m in (50, 40, 30, 20))

    # What the system knew first: a receipt of 100 and a usage of 10.
    assert statuses(post_events(clients["scanner"], [
        receipt("k-r", t_receipt, 100, "L1", exp),
        usage("k-u1", t_use1, 10, "L1"),
    ])) == ["accepted", "accepted"]
    known_first = history(clients["auditor"], SKU, "W3")["events"][-1]["recorded_at"]
    time.sleep(0.05)
    # Then: a usage of 5, and a late one of 7 that occurred between the two known events' times.
    assert statuses(post_events(clients["scanner"], [
        usage("k-u2", t_use2, 5, "L1"),
    ])) == ["accepted"]
    (late,) = post_events(clients["scanner"], [usage("k-late", t_late, 7, "L1")])
    assert late["status"] == "accepted" and "out_of_order" in late["flags"]
    # Two refusals (no such unit), sent with the device's own offsets: they are history too.
    paris, new_york = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")
    refused = post_events(clients["scanner"], [
        {**usage("k-ref-paris", t_use1, 1, "L1"), "unit": "crate",
         "occurred_at": (t_use1 - timedelta(minutes=5)).astimezone(paris).isoformat()},
        {**usage("k-ref-ny", t_use2, 1, "L1"), "unit": "crate",
         "occurred_at": (t_use2 + timedelta(minutes=5)).astimezone(new_york).isoformat()},
    ])
    assert statuses(refused) == ["rejected", "rejected"]

    full = history(clients["auditor"], SKU, "W3")
    assert full["state"]["on_hand"] == 100 - 10 - 5 - 7
    assert stock_point(clients["buyer"], SKU, "W3")["on_hand"] == 78
    ids = [e["event"]["event_id"] for e in recorded(full)]
    assert ids == ["k-r", "k-u1", "k-u2", "k-late"]

    def refusals(**params: str) -> list[str]:
        h = history(clients["auditor"], SKU, "W3", **params)
        return [e["event"]["event_id"] for e in h["events"] if e["kind"] == "Refused"]

    def state(**params: str) -> tuple[float, list[str]]:
        h = history(clients["auditor"], SKU, "W3", **params)
        return h["state"]["on_hand"], [e["event"]["event_id"] for e in recorded(h)]

    # as_of: the state at an instant of occurred_at, late events in their place.
    assert state(as_of=iso(t_receipt - timedelta(minutes=1)))[0] == 0
    assert state(as_of=iso(t_receipt)) == (100, ["k-r"])
    assert state(as_of=iso(t_use1 + timedelta(minutes=1))) == (90, ["k-r", "k-u1"])
    assert state(as_of=iso(t_late + timedelta(minutes=1))) == (83, ["k-r", "k-u1", "k-late"])
    assert state(as_of=iso(t)) == (78, ids)
    # The same instant given in another offset means the same thing.
    assert state(as_of=(t_use1 + timedelta(minutes=1)).astimezone(paris).isoformat()) == (90, ["k-r", "k-u1"])
    # Refusals sit at their own instant, whatever offset the device sent.
    assert refusals() == ["k-ref-paris", "k-ref-ny"]
    assert refusals(as_of=iso(t_receipt)) == []
    assert refusals(as_of=iso(t_use1)) == ["k-ref-paris"]
    assert refusals(as_of=iso(t_use2)) == ["k-ref-paris"]
    assert refusals(as_of=iso(t_use2 + timedelta(minutes=6))) == ["k-ref-paris", "k-ref-ny"]

    # known_at: only what had been recorded by then.
    assert state(known_at=known_first) == (90, ["k-r", "k-u1"])
    assert state(as_of=iso(t_late + timedelta(minutes=1)), known_at=known_first) == (90, ["k-r", "k-u1"])
    assert state(as_of=iso(t_use1 - timedelta(minutes=1)), known_at=known_first) == (100, ["k-r"])
    assert refusals(known_at=known_first) == []
    h = history(clients["auditor"], SKU, "W3", known_at=known_first)
    assert h["known_at"] is not None
    limit = datetime.fromisoformat(known_first)
    assert all(datetime.fromisoformat(e["recorded_at"]) <= limit for e in h["events"])

    # An instant without an offset is ambiguous: refused.
    r = clients["auditor"].get(f"/v1/audit/stock-points/{SKU}/W3/events",
                               params={"as_of": t.replace(tzinfo=None).isoformat()})
    assert r.status_code == 422
