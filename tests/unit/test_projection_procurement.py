"""The projection processors of procurement (issue 8), pure: requisitions, their lines and
status changes, supplier scorecards, supplier notices in ``alerts`` and bill-only order lines,
from the events the processor stores with procurement on, and from hand-made stored events."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from unit_world import ADMIN, BUYER, SITE, STORE, WARD, World, iso

from projections.follower import json_state
from projections.processors import COLUMNS, StoredEvent, process, process_batch, stored_event
from streams.procurement import ProcurementSettings

NEW_TABLES = ("requisitions", "requisition_lines", "requisition_status", "supplier_scores")


def ok(w: World, *events: dict[str, Any], by: Any = ADMIN) -> None:
    outcomes = w.post(*events, by=by).outcomes
    assert [o.status for o in outcomes] == ["accepted"] * len(events), outcomes


def procurement_world() -> World:
    """Catheters at OR1 on contract with CHEAP (late) and RELY (on time), consigned stents
    (a bill-only order and a replacement over the approval limit, approved), gauze quoted by an
    uncertified supplier (rejected by a buyer), gloves at the ward (a transfer request)."""
    w = World(procurement=ProcurementSettings(enabled=True, auto_approve_limit=400.0))
    certified = [{"name": "ISO13485", "valid_until": "2027-12-31"}]
    ok(w, {"event_id": "s1", "type": "supplier_registered", "occurred_at": w.ago(days=300), "supplier": "CHEAP",
           "certificates": certified},
       {"event_id": "s2", "type": "supplier_registered", "occurred_at": w.ago(days=300), "supplier": "RELY",
        "certificates": certified},
       {"event_id": "s3", "type": "supplier_registered", "occurred_at": w.ago(days=300), "supplier": "QUOTY"},
       w.item(sku="CATH", criticality="critical", lead_time_days=3, supplier="RELY", unit_cost=10),
       w.item(sku="STENT", criticality="high", lead_time_days=2, supplier="RELY", unit_cost=500, consignment=True),
       w.item(sku="GAUZE", lead_time_days=2, supplier="QUOTY", unit_cost=1),
       w.location("OR1", site=SITE))
    ok(w, *[{"event_id": f"k{i}", "type": kind, "occurred_at": w.ago(days=200), "supplier": supplier, "sku": sku,
             "price": price, "lead_time_days": lt, **({"contract_id": f"C-{supplier}-{sku}"}
                                                       if kind == "supplier_contract" else {})}
            for i, (kind, supplier, sku, price, lt) in enumerate([
                ("supplier_contract", "CHEAP", "CATH", 8, 3), ("supplier_contract", "RELY", "CATH", 10, 3),
                ("supplier_contract", "RELY", "STENT", 480, 2), ("supplier_quote", "QUOTY", "GAUZE", 0.9, 2)])],
       by=BUYER)
    for n, (supplier, days) in enumerate([("CHEAP", 9), ("RELY", 3), ("CHEAP", 11), ("RELY", 3.1)], 1):
        t0 = w.now - timedelta(days=120 - n * 10)
        ok(w, {"event_id": f"hpo{n}", "type": "po_issued", "occurred_at": iso(t0), "po_id": f"H{n}",
               "supplier": supplier, "location": "OR1", "expected_at": iso(t0 + timedelta(days=3)),
               "lines": [{"sku": "CATH", "quantity": 10}]})
        ok(w, w.stock("receipt", 10, "LH", location="OR1", sku="CATH", at=t0 + timedelta(days=days), po_id=f"H{n}",
                      expiry="2028-01-01"))
    ok(w, {"event_id": "insp1", "type": "inspection_result", "occurred_at": w.ago(days=30), "po_id": "H1",
           "location": "OR1", "sku": "CATH", "lot": "LH", "accepted": 8, "rejected": 2, "reason": "damaged"})
    for day in range(20, 0, -1):
        ok(w, w.stock("usage", 4, "LH", location="OR1", sku="CATH", at=w.now - timedelta(days=day)))
    ok(w, w.stock("receipt", 5, "S1", location="OR1", sku="STENT", expiry="2028-01-01"))
    ok(w, w.stock("usage", 1, "S1", location="OR1", sku="STENT"))
    ok(w, w.stock("receipt", 20, "G1", location="OR1", sku="GAUZE", expiry="2028-01-01", supplier="QUOTY"))
    for day in range(15, 0, -1):
        ok(w, w.stock("usage", 1, "G1", location="OR1", sku="GAUZE", at=w.now - timedelta(days=day, hours=1)))
    ok(w, w.stock("receipt", 30, "L1", location=STORE, expiry="2028-01-01"))
    ok(w, w.stock("receipt", 10, "L1", location=WARD, expiry="2028-01-01"))
    for day in range(10, 0, -1):
        ok(w, w.stock("usage", 1, "L1", location=WARD, at=w.now - timedelta(days=day, hours=2)))
    for req in w.p.purchasing.requisitions(status="pending_approval"):
        if req["kind"] == "consignment":
            w.p.decide_requisition(req["id"], True, "stents are needed", ADMIN)
        else:
            w.p.decide_requisition(req["id"], False, "no certified offer", BUYER)
    notice = next(a for a in w.p.alerts(kind="contract_breach"))
    w.p.change_alert(notice["id"], "acknowledged", "calling CHEAP", BUYER)
    return w


@pytest.fixture(scope="module")
def world() -> World:
    return procurement_world()


@pytest.fixture(scope="module")
def log(world: World) -> list[tuple[Any, Any]]:
    return [(n, world.store.mapper.to_domain_event(n)) for n in world.store.notifications()]


@pytest.fixture(scope="module")
def rows(log: list[tuple[Any, Any]]) -> dict[str, list[dict[str, Any]]]:
    return process_batch(stored_event(n, d) for n, d in log)


def test_the_world_raises_every_kind_of_requisition(world: World) -> None:
    got = {(r["kind"], r["status"]) for r in world.p.purchasing.requisitions()}
    assert got >= {("purchase", "ordered"), ("purchase", "rejected"), ("consignment", "ordered"),
                   ("transfer", "open")}


def test_the_rows_have_every_column_and_do_not_depend_on_the_decoding(
        log: list[tuple[Any, Any]], rows: dict[str, list[dict[str, Any]]]) -> None:
    for table in NEW_TABLES:
        assert rows.get(table), table
        for row in rows[table]:
            assert sorted(row) == sorted(COLUMNS[table]), table
    for n, decoded in log:
        first = process(stored_event(n, decoded))
        assert process(stored_event(n, json_state(n))) == first
        assert process(stored_event(n, copy.deepcopy(decoded))) == first


def test_a_requisition_is_its_header_lines_and_status_changes(
        world: World, rows: dict[str, list[dict[str, Any]]]) -> None:
    for req in world.p.purchasing.requisitions():
        rid = req["id"]
        (head,) = [r for r in rows["requisitions"] if r["requisition_id"] == rid]
        assert (head["kind"], head["supplier"], head["site"], head["source"]) == (
            req["kind"], req["supplier"] or "", req["site"], req["source"] or "")
        lines = [r for r in rows["requisition_lines"] if r["requisition_id"] == rid]
        assert [(r["sku"], r["location"], r["quantity"]) for r in lines] == [
            (line["sku"], line["location"], line["quantity"]) for line in req["lines"]]
        assert sum(r["value"] for r in lines) == pytest.approx(req["value"])
        changes = sorted((r for r in rows["requisition_status"] if r["requisition_id"] == rid),
                         key=lambda r: r["notification_id"])
        assert (changes[0]["change"], changes[0]["status"]) == ("opened", "collecting")
        assert changes[-1]["status"] == req["status"]
        assert [r["principal"] for r in changes if r["change"] == "approved"] == [a["by"] for a in req["approvals"]]
        ordered = [r["po_id"] for r in changes if r["change"] == "ordered"]
        assert ordered == ([req["po_id"]] if req["po_id"] else [])
        submitted = next(r for r in changes if r["change"] == "submitted")
        assert submitted["needs_buyer"] == req["needs_buyer"]
        assert submitted["approvals_needed"] == req["approvals_needed"]
        if req["rejection"]:
            assert [(r["principal"], r["role"], r["reason"]) for r in changes if r["change"] == "rejected"] == [
                (req["rejection"]["by"], req["rejection"]["role"], req["rejection"]["reason"])]


def test_a_line_keeps_its_candidates_and_the_chosen_ones_expected_total_cost(
        world: World, rows: dict[str, list[dict[str, Any]]]) -> None:
    caths = [r for r in world.p.purchasing.requisitions(status="ordered") if r["lines"][0]["sku"] == "CATH"]
    assert caths
    for cath in caths:
        (line,) = cath["lines"]
        (row,) = [r for r in rows["requisition_lines"] if r["requisition_id"] == cath["id"]]
        chosen = next(c for c in line["candidates"] if c["supplier"] == line["supplier"])
        assert (row["supplier"], row["source"], row["reference"]) == (line["supplier"], "contract", line["reference"])
        assert row["candidates"] == len(line["candidates"]) == 2 and row["eligible"] == 2
        assert row["chosen_total"] == pytest.approx(chosen["total"])
        assert row["unit_price"] == line["unit_price"] and row["value"] == pytest.approx(line["value"])
        assert row["decided_at"] == datetime.fromisoformat(line["decided_at"])
    # A transfer request's line names its source location and costs nothing.
    transfer = next(r for r in rows["requisition_lines"] if r["requisition_id"].startswith("TR-"))
    assert (transfer["source"], transfer["supplier"], transfer["value"]) == (STORE, "", 0.0)
    assert (transfer["candidates"], transfer["chosen_total"]) == (0, None)


def test_each_score_change_is_a_row_and_the_latest_is_the_suppliers_card(
        world: World, rows: dict[str, list[dict[str, Any]]]) -> None:
    latest: dict[str, dict[str, Any]] = {}
    for row in sorted(rows["supplier_scores"], key=lambda r: r["notification_id"]):
        latest[row["supplier"]] = row
    cards = {c["supplier"]: c for c in world.p.purchasing.scorecards()}
    assert latest.keys() == cards.keys() == {"CHEAP", "RELY", "QUOTY"}
    for supplier, card in cards.items():
        row = latest[supplier]
        for name in ("score", "peak", "on_time_rate", "fill_rate", "batch_pass_rate", "accepted_share",
                     "price_vs_contract", "recalls", "lead_time_mean_days", "lead_time_sd_days"):
            assert row[name] == card[name], (supplier, name)
        assert (row["contract_breaches"], row["lead_time_receipts"]) == (
            card["contract_breaches"], card["lead_time_receipts"])
        assert row["review_open"] == int(card["review_open"]) and row["skus"] == sorted(card["items"])
        assert row["scored_at"] == datetime.fromisoformat(card["scored_at"])
    assert latest["CHEAP"]["review_open"] == 1 and latest["CHEAP"]["contract_breaches"] > 0


def test_supplier_notices_are_alerts_with_no_sku_location_or_site(
        world: World, rows: dict[str, list[dict[str, Any]]]) -> None:
    notices = [r for r in rows["alerts"] if r["supplier"]]
    raised = [r for r in notices if r["change"] == "raised"]
    assert {r["kind"] for r in raised} >= {"contract_breach", "supplier_review_needed", "purchase_order",
                                           "supplier_certificate"}
    assert all((r["sku"], r["location"], r["site"], r["lot"]) == ("", "", "", "") for r in notices)
    open_notices = {a for c in world.p.purchasing.scorecards() for a in c["open_notices"]}
    assert {r["alert_id"] for r in raised} >= open_notices
    (changed,) = [r for r in notices if r["change"] != "raised"]
    assert (changed["change"], changed["status"], changed["supplier"], changed["message"]) == (
        "acknowledged", "acknowledged", "CHEAP", "calling CHEAP")
    # A stock point's alerts name no supplier.
    assert all(r["supplier"] == "" for r in rows["alerts"] if r["sku"])


def test_order_lines_say_whether_they_only_bill_and_which_requisition_they_came_from(
        world: World, rows: dict[str, list[dict[str, Any]]]) -> None:
    orders = {po["po_id"]: po for po in world.p.purchasing.purchase_orders()}
    for row in rows["po_lines"]:
        po = orders[row["po_id"]]
        assert row["bill_only"] == int(po["bill_only"])
        assert row["requisition_id"] == (po["requisition_id"] or "")
    assert {r["bill_only"] for r in rows["po_lines"]} == {0, 1}
    assert any(r["requisition_id"] for r in rows["po_lines"])


# -- hand-made stored events -------------------------------------------------------------------
T = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def stored(stream: str, kind: str, nid: int = 7, **body: Any) -> StoredEvent:
    return StoredEvent(nid, stream, 2, f"domain.aggregates:{kind}", {"timestamp": T.isoformat(), **body})


def table(event: StoredEvent, name: str) -> list[dict[str, Any]]:
    return process(event).get(name, [])


@pytest.mark.parametrize(("value", "flag"), [(True, 1), (False, 0), (None, 0), ("yes", 1), ("", 0), (0, 0),
                                             (2, 1), ([], 0), ({"a": 1}, 1)])
def test_bill_only_is_true_as_python_holds_it(value: Any, flag: int) -> None:
    event = {"type": "po_issued", "occurred_at": T.isoformat(), "po_id": "BO-1", "supplier": "RELY",
             "location": "OR1", "lines": [{"sku": "STENT", "quantity": 1, "unit_price": 480.0}]}
    if value is not None:
        event["bill_only"] = value
    (line,) = table(stored("po:BO-1", "PurchaseOrder.Issued", event=event), "po_lines")
    assert line["bill_only"] == flag and line["requisition_id"] == ""


def test_a_supplier_notice_with_null_sku_and_location_is_an_alert_of_the_supplier() -> None:
    alert = {"id": "al_1", "kind": "contract_breach", "severity": "warning", "sku": None, "location": None,
             "site": None, "lot": None, "raised_at": "2026-03-10T11:00:00Z", "status": "open",
             "event_id": "r-1", "message": "late", "stream": "scorecard:CHEAP", "supplier": "CHEAP"}
    (row,) = table(stored("scorecard:CHEAP", "SupplierScorecard.AlertRaised", alert=alert), "alerts")
    assert (row["sku"], row["location"], row["site"], row["lot"], row["supplier"]) == ("", "", "", "", "CHEAP")
    assert row["at"] == datetime(2026, 3, 10, 11, 0, tzinfo=UTC) and row["status"] == "open"
    # A notice that does not name its supplier is its scorecard's.
    (row,) = table(stored("scorecard:RELY", "SupplierScorecard.AlertRaised",
                          alert=dict(alert, supplier=None)), "alerts")
    assert row["supplier"] == "RELY"
    (change,) = table(stored("scorecard:CHEAP", "SupplierScorecard.AlertChanged", alert_id="al_1",
                             status="resolved", reason="renegotiated", by="buyer-bo"), "alerts")
    assert (change["change"], change["status"], change["supplier"], change["sku"], change["at"]) == (
        "resolved", "resolved", "CHEAP", "", T)


def test_a_line_whose_candidates_are_odd_still_gives_its_row() -> None:
    line = {"sku": "CATH", "location": "OR1", "quantity": 30, "unit_price": 10, "value": 300,
            "supplier": "RELY", "source": "contract", "reference": "C-RELY", "decided_at": "not a time",
            "candidates": ["junk", {"supplier": "RELY", "source": "contract", "reference": "C-RELY",
                                    "excluded": "certificate_expired", "total": 1.0},
                           {"supplier": "RELY", "source": "contract", "reference": "C-RELY", "total": 306.0},
                           {"supplier": "CHEAP", "source": "contract", "reference": "C-CHEAP", "total": 290.0}]}
    (row,) = table(stored("req:RQ-1", "Requisition.LineAdded", line=line, window_until=T.isoformat()),
                   "requisition_lines")
    assert (row["candidates"], row["eligible"], row["chosen_total"]) == (3, 2, 306.0)
    assert row["decided_at"] == T and row["requisition_id"] == "RQ-1" and row["flags"] == []
    (row,) = table(stored("req:RQ-1", "Requisition.LineAdded", line={"sku": "CATH"}, window_until=""),
                   "requisition_lines")
    assert (row["quantity"], row["value"], row["unit_price"], row["chosen_total"]) == (0.0, 0.0, None, None)


def test_each_change_of_a_requisition_says_its_status_after_it() -> None:
    def change(kind: str, **body: Any) -> tuple[str, str, str, str]:
        (row,) = table(stored("req:RQ-1", f"Requisition.{kind}", **body), "requisition_status")
        return row["change"], row["status"], row["principal"], row["po_id"]

    opened = stored("req:RQ-1", "Requisition.Opened", key={"requisition_id": "RQ-1", "kind": "purchase",
                                                          "supplier": None, "site": "H1", "source": None})
    (head,) = table(opened, "requisitions")
    assert (head["kind"], head["supplier"], head["site"], head["opened_at"]) == ("purchase", "", "H1", T)
    assert [(r["change"], r["status"]) for r in table(opened, "requisition_status")] == [("opened", "collecting")]
    assert change("Submitted", status="pending_approval", needs_buyer=["no_price"], approvals_needed=2) == (
        "submitted", "pending_approval", "", "")
    assert change("Approved", by="bo", role="buyer", reason="ok", status="awaiting_second_approval") == (
        "approved", "awaiting_second_approval", "bo", "")
    assert change("Rejected", by="al", role="admin", reason="no") == ("rejected", "rejected", "al", "")
    assert change("Ordered", po_id="PO-1") == ("ordered", "ordered", "", "PO-1")
    assert change("Fulfilled", event_ids=["t-1"]) == ("fulfilled", "fulfilled", "", "")
    assert table(stored("req:RQ-1", "Requisition.LineAdded", line={}, window_until=""), "requisition_status") == []


def test_a_card_names_its_supplier_or_its_stream_names_it() -> None:
    card = {"score": 91.5, "on_time_rate": 0.9, "contract_breaches": 2, "review_open": False,
            "skus": {"not": "a list"}, "scored_at": "2026-03-10T10:00:00+01:00"}
    (row,) = table(stored("scorecard:RELY", "SupplierScorecard.Scored", card=card), "supplier_scores")
    assert (row["supplier"], row["score"], row["contract_breaches"], row["review_open"], row["skus"]) == (
        "RELY", 91.5, 2, 0, [])
    assert row["scored_at"] == datetime(2026, 3, 10, 9, 0, tzinfo=UTC) and row["fill_rate"] is None


def _kinds(rows: dict[str, list[dict[str, Any]]]) -> Iterator[str]:
    yield from (r["kind"] for r in rows["events_raw"])


def test_every_procurement_event_gives_one_raw_row(rows: dict[str, list[dict[str, Any]]]) -> None:
    kinds = set(_kinds(rows))
    assert {"Requisition.Opened", "Requisition.LineAdded", "Requisition.Submitted", "Requisition.Approved",
            "Requisition.Rejected", "Requisition.Ordered", "SupplierScorecard.Scored",
            "SupplierScorecard.AlertRaised", "SupplierScorecard.AlertChanged", "PurchaseOrder.Inspected",
            "SupplyTerms.Contracted", "SupplyTerms.Quoted"} <= kinds
    inspected = next(r for r in rows["events_raw"] if r["kind"] == "PurchaseOrder.Inspected")
    assert (inspected["type"], inspected["po_id"], inspected["supplier"], inspected["sku"]) == (
        "inspection_result", "H1", "CHEAP", "CATH")
