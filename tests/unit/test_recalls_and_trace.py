"""Lots, recalls and traceability (issue 7): the whole story at the processor.

Lots are received at a central store against a purchase order, moved to a ward and an OR,
used (some by surgical cases), then recalled: every remaining unit is quarantined at once (a
decision event per stock point), a later scan is refused and alerts, the trace lists exactly
the cases that used the lot, confirmations per location close the recall's tasks.
"""

from __future__ import annotations

from datetime import timedelta

from unit_world import ADMIN, KEY, SCANNER, SITE, SKU, STORE, WARD, World, iso

from domain import codes as c
from domain.aggregates import StockPoint, stock_point_id
from domain.events import pseudonymise
from streams import traceability

OR = "OR1"


def story() -> World:
    w = World()
    t = w.now - timedelta(hours=6)
    assert w.one(w.location(OR, site=SITE, kind="or_core", restocked_from=STORE), by=ADMIN).status == "accepted"
    po = {"event_id": "po-1", "type": "po_issued", "occurred_at": iso(t - timedelta(days=3)),
          "po_id": "PO-1", "supplier": "ACME", "location": STORE,
          "lines": [{"sku": SKU, "quantity": 40}]}
    assert w.one(po).status == "accepted"
    events = [
        w.receipt(30, lot="L1", location=STORE, at=t, po_id="PO-1", supplier="ACME", expiry="2027-06-30"),
        w.receipt(10, lot="L2", location=STORE, at=t, po_id="PO-1", supplier="ACME", expiry="2027-09-30"),
        w.stock("transfer", 10, "L1", at=t + timedelta(minutes=10), from_location=STORE, to_location=WARD,
                location=None),
        w.stock("transfer", 8, "L1", at=t + timedelta(minutes=11), from_location=STORE, to_location=OR,
                location=None),
        w.stock("transfer", 4, "L2", at=t + timedelta(minutes=12), from_location=STORE, to_location=OR,
                location=None),
        w.usage(1, lot="L1", at=t + timedelta(hours=1)),
        w.usage(1, lot="L1", at=t + timedelta(hours=1, minutes=5)),
        w.usage(1, lot="L1", location=OR, at=t + timedelta(hours=2), case_id="CASE-A"),
        w.usage(2, lot="L1", location=OR, at=t + timedelta(hours=3), case_id="CASE-B"),
        w.usage(1, lot="L2", location=OR, at=t + timedelta(hours=3), case_id="CASE-C"),
    ]
    outcomes = w.post(*events).outcomes
    assert [o.status for o in outcomes] == ["accepted"] * len(events), outcomes
    return w


def test_a_recall_quarantines_every_unit_refuses_scans_traces_cases_and_closes_on_confirmation():
    w = story()
    recall = w.recall(["L1"], reference="RC-9", at=w.now - timedelta(minutes=1))
    result = w.post(recall, by=ADMIN)
    assert result.outcomes[0].status == "accepted"

    # Every remaining unit at every location, quarantined at once: one decision per stock point.
    quarantines = {e.originator_id: e.decision for e in result_events(w)
                   if isinstance(e, StockPoint.Decided) and e.decision["type"] == "quarantined"}
    assert {k: v["lots"] for k, v in quarantines.items()} == {
        stock_point_id(SKU, STORE): {"L1": 12.0}, stock_point_id(SKU, WARD): {"L1": 8.0},
        stock_point_id(SKU, OR): {"L1": 5.0}}
    assert all(d["reference"] == "RC-9" and d["cause_event_id"] == recall["event_id"]
               for d in quarantines.values())
    tasks = [a for a in result.alerts if a["kind"] == c.ALERT_RECALL_TASK]
    assert sorted(a["location"] for a in tasks) == sorted([STORE, WARD, OR])
    for loc, left in ((STORE, 12.0), (WARD, 8.0), (OR, 5.0)):
        view = w.view(location=loc)
        assert view["quarantined"] == left
        assert view["recalls"] == {"RC-9": {"quarantined": {"L1": left}}}
        assert all(row["lot"] != "L1" for row in view["fefo"])
    assert w.view(location=OR)["on_hand"] == 3.0  # L2 stays usable

    # A later scan of the lot is refused and alerts.
    scan = w.usage(1, lot="L1", location=WARD, at=w.now)
    refused = w.post(scan)
    assert refused.outcomes[0].status == "rejected"
    assert [e["code"] for e in refused.outcomes[0].errors] == [c.RECALLED_LOT]
    assert [a["kind"] for a in refused.alerts] == [c.ALERT_RECALLED_LOT_SCANNED]

    # The trace lists exactly the cases that used the lot, where it came from, the refused scan.
    tr = traceability.trace(w.p, SKU, "L1")
    cases = sorted(pseudonymise(x, KEY) for x in ("CASE-A", "CASE-B"))
    assert tr["summary"]["cases"] == cases
    assert [(r["supplier"], r["po_id"], r["location"], r["quantity"]) for r in tr["summary"]["received"]] == [
        ("ACME", "PO-1", STORE, 30.0)]
    assert [r["event_id"] for r in tr["summary"]["refused_scans"]] == [scan["event_id"]]
    assert tr["summary"]["on_hand"] == {STORE: {"quantity": 12.0, "status": "recalled"},
                                        WARD: {"quantity": 8.0, "status": "recalled"},
                                        OR: {"quantity": 5.0, "status": "recalled"}}
    whats = [r["what"] for r in tr["events"]]
    for what in ("receipt", "transfer_out", "transfer_in", "usage", "recall_issued", "quarantined", "refused"):
        assert what in whats, what
    assert "CASE-C" not in str(tr) and pseudonymise("CASE-C", KEY) not in str(tr)
    csv_text = traceability.trace_csv(tr)
    assert csv_text.splitlines()[0].startswith("recorded_at,occurred_at,what,location")
    assert len(csv_text.splitlines()) == len(tr["events"]) + 1

    (view,) = traceability.recalls(w.p)
    assert view["cases"] == cases and view["status"] == "open"
    assert view["progress"] == {"locations": 3, "confirmed": 0, "quarantined": 25.0, "accounted_for": 0.0}

    # Confirmations per location (a scanner at the ward, an admin for the others) close the tasks.
    def confirm(loc: str, by=ADMIN, **q: float):
        return w.one({"event_id": w.eid("conf"), "type": "recall_confirmed", "occurred_at": iso(w.now),
                      "reference": "RC-9", "location": loc, **q}, by=by)

    assert confirm(STORE, returned=12).status == "accepted"
    assert confirm(WARD, by=SCANNER, returned=6, destroyed=1, not_found=1).status == "accepted"
    assert confirm(OR, destroyed=5).status == "accepted"
    for loc in (STORE, WARD, OR):
        assert w.lots(location=loc).get("L1") is None  # off the books
    view = traceability.recalls(w.p)[0]
    assert [t["status"] for t in view["tasks"]] == ["confirmed"] * 3
    assert view["progress"]["accounted_for"] == 25.0
    assert not [a for a in w.p.alerts(status="open") if a["kind"] == c.ALERT_RECALL_TASK]
    closed = w.one({"event_id": "close-1", "type": "recall_closed", "occurred_at": iso(w.now),
                    "reference": "RC-9"}, by=ADMIN)
    assert closed.status == "accepted"
    assert traceability.recalls(w.p) == []
    assert traceability.recalls(w.p, "closed")[0]["status"] == "closed"
    assert confirm(OR, destroyed=1).status == "rejected"  # no open recall any more

    # Replay equals live; every stored decision recomputes; every chain is whole.
    live = w.p.state_digest()
    w.p.rebuild()
    assert w.p.state_digest() == live
    assert w.p.check_decisions()[1] == []
    assert w.p.verify()[1] is None


def result_events(w: World) -> list:
    return [w.store.mapper.to_domain_event(n) for n in w.store.notifications()]


def test_a_recalled_lot_arriving_later_is_quarantined_where_it_arrives():
    w = story()
    w.post(w.recall(["L1"], reference="RC-1", at=w.now - timedelta(minutes=1)), by=ADMIN)
    # A return of the lot at the ward (a unit brought back from a trolley) adds to the quarantine.
    w.post(w.stock("return", 1, "L1", location=WARD, at=w.now))
    assert w.view(location=WARD)["recalls"] == {"RC-1": {"quarantined": {"L1": 9.0}}}
    open_tasks = [a for a in w.p.alerts(status="open", kind=c.ALERT_RECALL_TASK) if a["location"] == WARD]
    assert len(open_tasks) == 1


def test_serial_recall_quarantines_the_unit_where_it_is():
    w = World()
    w.post(w.receipt(1, lot="LS", serial="SN-1"), w.receipt(1, lot="LS", serial="SN-2"))
    w.post(w.usage(1, lot="LS", serial="SN-2", case_id="CASE-S"))
    units = {u["serial"]: u["state"] for u in w.view()["serials"]}
    assert units == {"SN-1": "in_stock"}
    result = w.post({**w.recall([], reference="RC-S"), "lots": None, "serials": ["SN-1", "SN-2"]}, by=ADMIN)
    assert result.outcomes[0].status == "accepted", result.outcomes
    assert w.view()["recalls"] == {"RC-S": {"quarantined": {"LS": 1.0}}}
    (view,) = traceability.recalls(w.p)
    assert view["cases"] == [pseudonymise("CASE-S", KEY)]
    tr = traceability.trace(w.p, SKU, serial="SN-2")
    assert tr["unit"]["state"] == "used" and tr["summary"]["cases"] == [pseudonymise("CASE-S", KEY)]


def test_lot_changes_apply_with_reason_and_who_holds_quarantine_and_relabels_move_balances():
    w = story()

    def change(**fields):
        return w.one({"event_id": w.eid("lc"), "type": "lot_changed", "occurred_at": iso(w.now),
                      "sku": SKU, "lot": "L2", **fields}, by=ADMIN)

    assert change(change="hold", reason="supplier quality notice").status == "accepted"
    assert w.view(location=OR)["on_hand"] == 5.0  # L1 only: L2 held is quarantined, not usable
    assert w.view(location=OR)["quarantined"] == 3.0
    assert [r["lot"] for r in w.view(location=OR)["fefo"]] == ["L1"]
    # A point-of-care use of a held lot is accepted (the contract has no "held" refusal) and alerts.
    used = w.post(w.usage(1, lot="L2", location=OR, at=w.now))
    assert used.outcomes[0].status == "accepted"
    assert [a["kind"] for a in used.alerts if a["kind"] == c.ALERT_HELD_LOT_USED] == [c.ALERT_HELD_LOT_USED]
    assert change(change="release", reason="cleared").status == "accepted"
    assert w.view(location=OR)["on_hand"] == 7.0
    assert change(change="expiry_corrected", new_expiry="2027-01-31", reason="label misprint").status == "accepted"
    assert w.p.ledger.lot(SKU, "L2").expiry == "2027-01-31"
    assert change(change="relabelled", new_lot="L2B", reason="relabelled by the supplier").status == "accepted"
    assert w.lots(location=STORE) == {"L1": 12.0, "L2B": 6.0}
    assert w.lots(location=OR) == {"L1": 5.0, "L2B": 2.0}
    assert w.p.ledger.lot(SKU, "L2B").expiry == "2027-01-31"
    tr = traceability.trace(w.p, SKU, "L2")
    changes = [(r["what"], r.get("reason"), r.get("recorded_by")) for r in tr["events"]
               if r["what"].startswith("lot_") and r["what"] != "lot_first_seen"]
    assert changes == [("lot_hold", "supplier quality notice", "admin-ana"), ("lot_release", "cleared", "admin-ana"),
                       ("lot_expiry_corrected", "label misprint", "admin-ana"),
                       ("lot_relabelled", "relabelled by the supplier", "admin-ana")]
    assert traceability.trace(w.p, SKU, "L2B")["relabelled_from"] == "L2"
    # A recall of the manufacturer's lot also covers what was relabelled from it.
    w.post(w.recall(["L2"], reference="RC-R", at=w.now - timedelta(minutes=1)), by=ADMIN)
    assert w.view(location=STORE)["recalls"] == {"RC-R": {"quarantined": {"L2B": 6.0}}}
    assert w.view(location=OR)["recalls"] == {"RC-R": {"quarantined": {"L2B": 2.0}}}
    refused = w.one(w.usage(1, lot="L2B", location=OR, at=w.now))
    assert [e["code"] for e in refused.errors] == [c.RECALLED_LOT]
    live = w.p.state_digest()
    w.p.rebuild()
    assert w.p.state_digest() == live


def test_audit_any_stream_history_and_state_as_of():
    w = story()
    before = w.now
    w.post(w.recall(["L1"], reference="RC-2", at=w.now - timedelta(minutes=1)), by=ADMIN)
    w.now += timedelta(hours=1)
    w.one({"event_id": "c-1", "type": "recall_confirmed", "occurred_at": iso(w.now),
           "reference": "RC-2", "location": WARD, "returned": 8}, by=ADMIN)
    full = traceability.audit_stream(w.p, "recall:RC-2")
    assert [e["kind"] for e in full["events"]] == ["Opened", "Issued", "Confirmed"]
    assert full["state"]["confirmed"] == {WARD: {"returned": 8.0, "destroyed": 0.0, "not_found": 0.0}}
    then = traceability.audit_stream(w.p, "recall:RC-2", as_of=before)
    assert then["state"]["confirmed"] == {} and then["state"]["is_open"] is True
    known = traceability.audit_stream(w.p, "recall:RC-2", known_at=before)
    assert [e["kind"] for e in known["events"]] == ["Opened", "Issued"]
    lot = traceability.audit_stream(w.p, "lot:GLOVE-M/L1")
    assert lot["state"]["expiry"] == "2027-06-30"
    sp = traceability.audit_stream(w.p, f"sp:{SKU}@{WARD}", as_of=before - timedelta(minutes=2))
    assert sp["state"]["lots"] == [{"lot": "L1", "quantity": 8.0, "status": "ok"}]
    sp = traceability.audit_stream(w.p, f"sp:{SKU}@{WARD}", as_of=before)
    assert sp["state"]["lots"] == [{"lot": "L1", "quantity": 8.0, "status": "recalled"}]
    assert traceability.audit_stream(w.p, "recall:NOPE") is None
