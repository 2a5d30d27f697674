"""Procurement (issue 8): the choice among suppliers by expected total cost, requisitions and
their approval, purchase orders, transfer requests, consignment, certificates, scorecards and
contract breaches, and that all of it replays to the live state."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit_world import (
    ADMIN,
    AUDITOR,
    BUYER,
    KEY,
    SCANNER,
    SITE,
    SKU,
    STORE,
    WARD,
    World,
    iso,
    sqlite_store,
)

from domain.intake import Principal
from domain.procurement import (
    Candidate,
    Need,
    Offer,
    Risk,
    choose,
    expected_cost,
    expected_late_days,
    unit_price,
)
from streams.processor import Processor
from streams.procurement import ApprovalError, ProcurementSettings

ON = ProcurementSettings(enabled=True)
CATH, OR = "CATH", "OR1"
VALID = [{"name": "ISO13485", "valid_until": "2027-12-31"}]  # T0 is 2026-03-10
EXPIRED = [{"name": "ISO13485", "valid_until": "2026-01-31"}]
LATE_PRONE = [9, 11, 8, 12, 10]  # days from order to receipt, against 3 promised
ON_TIME = [3, 3, 3.2, 2.9, 3]

# -- formulas -------------------------------------------------------------------------
prices = st.floats(0.01, 1_000, allow_nan=False)
breaks = st.lists(st.tuples(st.floats(1, 1_000), prices), max_size=4)
steps = st.floats(0.01, 100)  # how much worse: strictly positive
covers = st.floats(0, 400) | st.just(math.inf)  # days the stock lasts (inf: no demand)
needs = st.builds(Need, st.just("X"), st.floats(0.5, 5_000), st.floats(0, 500), covers,
                  st.sampled_from(["critical", "high", "normal"]))


@st.composite
def dominated_pairs(draw: Any, same_min_order: bool, with_breaks: bool) -> tuple[Candidate, Candidate]:
    """A good offer and one worse on every criterion: every price raised (so the unit price
    is higher at every quantity), a minimum order at least as high, a lead time longer and
    more spread, and a lower accepted share."""
    base, bs = draw(prices), draw(breaks) if with_breaks else []
    good_min = draw(st.floats(0, 500))
    bad_min = good_min if same_min_order else good_min + draw(st.floats(0, 500))
    good = Offer("A-GOOD", "contract", "C-A", base, tuple(sorted(bs)), good_min, 3.0, None, None)
    bad = Offer("0-BAD", "contract", "C-0", base + draw(steps),
                tuple(sorted((m, p + draw(steps)) for m, p in bs)), bad_min, 3.0, None, None)
    mean, sd, share = draw(st.floats(0, 60)), draw(st.floats(0, 20)), draw(st.floats(0, 1))
    good_risk = Risk(mean, sd, share, "learned")
    bad_risk = Risk(mean + draw(st.floats(0, 30)), sd + draw(st.floats(0, 10)),
                    share - draw(st.floats(0, 1)) * share, "learned")
    need = draw(needs)

    def cand(offer: Offer, risk: Risk) -> Candidate:
        return Candidate(offer, risk, expected_cost(offer, risk, need), "valid", None)

    return cand(good, good_risk), cand(bad, bad_risk)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_supplier_worse_on_every_criterion_is_never_chosen(data: st.DataObject) -> None:
    """With the same minimum order (price breaks anywhere), or a higher one and no breaks. The
    worse one is named "0-BAD" so that it would win a tie on the supplier id."""
    same = data.draw(st.booleans())
    good, bad = data.draw(dominated_pairs(same_min_order=same, with_breaks=same))
    assert choose([bad, good]) is good
    assert choose([good, bad]) is good
    assert bad.costing.total > good.costing.total


def test_a_higher_minimum_order_at_a_price_break_does_not_make_the_worse_supplier_cheaper() -> None:
    need = Need("X", 90.0, 1.0, 10.0, "normal")
    risk = Risk(3.0, 0.0, 1.0, "learned")
    good = Offer("A-GOOD", "contract", None, 10.0, ((100.0, 1.0),), 0.0, 3.0, None, None)
    bad = Offer("B-BAD", "contract", None, 11.0, ((100.0, 1.5),), 100.0, 3.0, None, None)
    assert all(unit_price(bad, q) > unit_price(good, q) for q in (1, 50, 90, 99, 100, 500))
    cands = [Candidate(o, risk, expected_cost(o, risk, need), "valid", None) for o in (good, bad)]
    assert choose(cands) is cands[0]


@given(st.floats(-50, 50), st.floats(0, 20), st.floats(0, 50), st.floats(0, 20), st.floats(0, 60))
def test_expected_late_days_is_non_decreasing_in_mean_and_spread(mean: float, sd: float, more_mean: float,
                                                                  more_sd: float, cover: float) -> None:
    base = expected_late_days(mean, sd, cover)
    tol = 1e-12 * (1 + sd + more_sd)  # floating rounding only
    assert expected_late_days(mean + more_mean, sd, cover) >= base - tol
    assert expected_late_days(mean, sd + more_sd, cover) >= base - tol
    assert expected_late_days(mean, sd, math.inf) == 0.0
    assert base >= max(mean - cover, 0.0) - tol  # E[(L-c)+] >= (E[L]-c)+ (Jensen)


def test_expected_late_days_is_never_negative_far_in_the_tail() -> None:
    values = [expected_late_days(0.0, 1.0, 8.0 + i / 1000) for i in range(1000)]
    assert min(values) >= 0.0
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


@given(prices, breaks, st.floats(0, 2_000))
def test_unit_price_takes_the_break_with_the_largest_minimum_reached(base: float, bs: list[Any],
                                                                    qty: float) -> None:
    offer = Offer("S", "contract", None, base, tuple(bs), 0.0, None, None, None)
    reached = [(m, p) for m, p in bs if m <= qty]
    want = base if not reached else [p for m, p in reached if m == max(r[0] for r in reached)][0]
    assert unit_price(offer, qty) == want


def test_unit_price_at_and_between_breaks() -> None:
    offer = Offer("S", "contract", None, 10.0, ((500.0, 8.5), (100.0, 9.0)), 0.0, None, None, None)
    assert [unit_price(offer, q) for q in (0, 99.9, 100, 499, 500, 10_000)] == [10, 10, 9, 9, 8.5, 8.5]


# -- a world with suppliers --------------------------------------------------------------
def ok(w: World, *events: dict[str, Any], by: Principal = ADMIN) -> None:
    result = w.post(*events, by=by)
    assert [o.status for o in result.outcomes] == ["accepted"] * len(events), result.outcomes


def supplier(w: World, name: str, certificates: list | None = VALID) -> dict[str, Any]:
    event = {"event_id": w.eid("sup"), "type": "supplier_registered", "occurred_at": w.ago(days=300),
             "supplier": name}
    return event if certificates is None else dict(event, certificates=certificates)


def terms(w: World, name: str, price: float, sku: str = CATH, kind: str = "supplier_contract",
          **extra: Any) -> dict[str, Any]:
    return {"event_id": w.eid("terms"), "type": kind, "occurred_at": w.ago(days=200), "supplier": name,
            "sku": sku, "price": price, "lead_time_days": 3, "contract_id": f"C-{name}-{sku}", **extra}


def history(w: World, name: str, days: list[float], unit_price: float | None = None) -> None:
    """Past orders of 10 CATH to OR1 from ``name``, each received after ``days``."""
    for d in days:
        t0 = w.now - timedelta(days=150 - 5 * len(w.p.purchasing.purchase_orders()))
        po = w.eid("H")
        ok(w, {"event_id": w.eid("po"), "type": "po_issued", "occurred_at": iso(t0), "po_id": po,
               "supplier": name, "location": OR, "lines": [{"sku": CATH, "quantity": 10}],
               "expected_at": iso(t0 + timedelta(days=3))})
        extra = {} if unit_price is None else {"unit_price": unit_price}
        ok(w, w.receipt(10, "LH", location=OR, sku=CATH, at=t0 + timedelta(days=d), po_id=po,
                        expiry="2028-01-01", **extra))


def cath_world(criticality: str = "critical", offers: tuple = (("CHEAP", 8, VALID), ("RELY", 10, VALID)),
               settings_: ProcurementSettings = ON, store: Any = None, item_supplier: str = "RELY",
               kind: str = "supplier_contract") -> World:
    w = World(store=store, procurement=settings_)
    ok(w, *[supplier(w, name, certs) for name, _, certs in offers],
       w.item(sku=CATH, criticality=criticality, lead_time_days=3, supplier=item_supplier, unit_cost=10),
       w.location(OR, site=SITE))
    ok(w, *[terms(w, name, price, kind=kind) for name, price, _ in offers], by=BUYER)
    return w


def demand(w: World, days: int = 20, qty: float = 4, sku: str = CATH, location: str = OR,
           lot: str = "LH") -> None:
    for day in range(days, 0, -1):
        ok(w, w.usage(qty, lot, location=location, sku=sku, at=w.now - timedelta(days=day)), by=SCANNER)


def rivals(criticality: str = "critical", settings_: ProcurementSettings = ON, store: Any = None) -> World:
    """CHEAP (8, late-prone) and RELY (10, on time), both on contract with 100 CATH received
    at OR1; nothing used yet."""
    w = cath_world(criticality, settings_=settings_, store=store)
    history(w, "CHEAP", LATE_PRONE)
    history(w, "RELY", ON_TIME)
    return w


def purchases(w: World) -> list[dict[str, Any]]:
    return w.p.purchasing.requisitions(kind="purchase")


def only(rows: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(rows) == 1, rows
    return rows[0]


def open_alerts(w: World, kind: str, supplier: str | None = None) -> list[dict[str, Any]]:
    return [a for a in w.p.alerts(status="open", kind=kind)
            if supplier is None or a.get("supplier") == supplier]


# -- choosing a supplier ---------------------------------------------------------------
def test_a_critical_need_buys_from_the_reliable_supplier_and_is_ordered_once() -> None:
    w = rivals()
    assert purchases(w) == []
    demand(w)
    req = only(purchases(w))
    view = w.view(CATH, OR)
    line = only(req["lines"])
    assert req["supplier"] == "RELY" and line["supplier"] == "RELY" and line["source"] == "contract"
    cands = {c["supplier"]: c for c in line["candidates"]}
    assert set(cands) == {"CHEAP", "RELY"}
    for c in cands.values():
        assert c["excluded"] is None
        assert c["total"] == pytest.approx(c["price"] + c["lateness"] + c["quality"])
        assert c["lead_time_source"] == "learned"
    assert cands["CHEAP"]["price"] < cands["RELY"]["price"]
    assert cands["CHEAP"]["lead_time_mean_days"] > cands["RELY"]["lead_time_mean_days"]
    assert cands["CHEAP"]["total"] > cands["RELY"]["total"]
    # a contract supplier, certified, under the auto-approval limit: ordered at once
    assert req["status"] == "ordered" and req["needs_buyer"] == []
    assert [a["by"] for a in req["approvals"]] == ["system"]
    po = only([p for p in w.p.purchasing.purchase_orders(status="open") if p["requisition_id"] == req["id"]])
    assert po["po_id"] == req["po_id"] and po["supplier"] == "RELY"
    qty = only(po["lines"])["quantity"]
    assert qty == line["quantity"] > 0
    issued = [s for _, _, t, s in w.stored() if t.endswith("PurchaseOrder.Issued")
              and s["event"]["po_id"] == po["po_id"]]
    assert len(issued) == 1 and issued[0]["event"]["type"] == "po_issued"
    assert view["on_order"] == qty  # the order, not the requisition as well
    assert view["inventory_position"] > view["reorder_point"]
    assert not view["replenishment_needed"]
    assert [r["po_id"] for r in w.p.purchasing.in_transit(CATH, OR, w.now)] == [po["po_id"]]
    # more use before the delivery: the need is covered, no second requisition
    for minutes in (30, 20, 10):
        ok(w, w.usage(1, "LH", location=OR, sku=CATH, at=w.now - timedelta(minutes=minutes)), by=SCANNER)
    assert len(purchases(w)) == 1
    assert w.view(CATH, OR)["on_order"] == qty
    assert len(w.p.purchasing.purchase_orders(status="open")) == 1


def test_a_normal_need_with_the_same_numbers_buys_from_the_cheaper_supplier() -> None:
    w = rivals("normal")
    demand(w)
    req = only(purchases(w))
    line = only(req["lines"])
    assert req["supplier"] == "CHEAP" and req["status"] == "ordered"
    cands = {c["supplier"]: c for c in line["candidates"]}
    assert cands["CHEAP"]["total"] < cands["RELY"]["total"]
    assert cands["CHEAP"]["expected_late_days"] > cands["RELY"]["expected_late_days"]


def test_needs_collect_during_the_ordering_window_and_are_ordered_once_when_it_closes() -> None:
    w = rivals(settings_=ProcurementSettings(enabled=True, ordering_window=timedelta(hours=2)))
    demand(w)
    req = only(purchases(w))
    assert req["status"] == "collecting" and req["supplier"] == "RELY"
    assert w.view(CATH, OR)["on_order"] == only(req["lines"])["quantity"]
    ok(w, w.usage(1, "LH", location=OR, sku=CATH, at=w.now - timedelta(minutes=3)), by=SCANNER)
    assert w.p.tick().stored == 0  # the window is still open
    assert w.p.purchasing.purchase_orders(status="open") == []
    w.now += timedelta(hours=2)
    w.p.tick()
    req = only(purchases(w))
    assert req["status"] == "ordered"
    po = only(w.p.purchasing.purchase_orders(status="open"))
    assert po["po_id"] == req["po_id"] and w.view(CATH, OR)["on_order"] == only(po["lines"])["quantity"]


# -- certificates -----------------------------------------------------------------------
def test_a_supplier_with_an_expired_certificate_is_excluded_and_named_in_a_notice() -> None:
    w = cath_world(offers=(("LAPSED", 5, EXPIRED), ("RELY", 10, VALID)))
    ok(w, w.receipt(100, "LH", location=OR, sku=CATH, at=w.now - timedelta(days=30)), by=SCANNER)
    demand(w)
    req = only(purchases(w))
    cands = {c["supplier"]: c for c in only(req["lines"])["candidates"]}
    assert cands["LAPSED"]["excluded"] == "certificate_expired"
    assert cands["LAPSED"]["total"] < cands["RELY"]["total"]  # cheaper, and still not chosen
    assert req["supplier"] == "RELY" and req["status"] == "ordered"
    notice = only(open_alerts(w, "supplier_certificate", "LAPSED"))
    assert "LAPSED" in notice["message"] and "expired" in notice["message"]
    assert open_alerts(w, "supplier_certificate", "RELY") == []


def test_a_supplier_without_certificates_is_a_candidate_but_waits_for_a_buyer() -> None:
    w = cath_world(offers=(("BARE", 10, None),), item_supplier="BARE")
    ok(w, w.receipt(100, "LH", location=OR, sku=CATH, at=w.now - timedelta(days=30)), by=SCANNER)
    demand(w)
    req = only(purchases(w))
    cand = only(only(req["lines"])["candidates"])
    assert cand["supplier"] == "BARE" and cand["excluded"] is None and cand["certificates"] == "none"
    assert req["supplier"] == "BARE" and req["status"] == "pending_approval"
    assert "no_certificate" in req["needs_buyer"]
    assert w.p.purchasing.purchase_orders() == []
    assert w.view(CATH, OR)["on_order"] == only(req["lines"])["quantity"]  # counted while it waits
    assert open_alerts(w, "supplier_certificate", "BARE")


# -- approvals --------------------------------------------------------------------------
def quote_only() -> tuple[World, dict[str, Any]]:
    w = cath_world(offers=(("QUOTER", 9, VALID),), item_supplier="QUOTER", kind="supplier_quote")
    ok(w, w.receipt(100, "LH", location=OR, sku=CATH, at=w.now - timedelta(days=30)), by=SCANNER)
    demand(w)
    return w, only(purchases(w))


def test_a_quote_only_requisition_waits_for_a_buyer_and_other_roles_may_not_decide() -> None:
    w, req = quote_only()
    assert only(req["lines"])["source"] == "quote"
    assert req["status"] == "pending_approval" and "quote_without_contract" in req["needs_buyer"]
    for who in (SCANNER, AUDITOR):
        with pytest.raises(ApprovalError) as err:
            w.p.decide_requisition(req["id"], True, "looks fine", who)
        assert err.value.status == 403
    assert w.p.requisition(req["id"])["status"] == "pending_approval"
    assert w.p.purchasing.purchase_orders() == []
    after, _ = w.p.decide_requisition(req["id"], True, "quote checked", ADMIN)
    assert after["status"] == "ordered" and [a["by"] for a in after["approvals"]] == [ADMIN.name]
    assert only(w.p.purchasing.purchase_orders(status="open"))["po_id"] == after["po_id"]


def test_a_buyers_approval_issues_the_purchase_order() -> None:
    w, req = quote_only()
    after, alerts = w.p.decide_requisition(req["id"], True, "quote checked", BUYER)
    assert after["status"] == "ordered" and [a["by"] for a in after["approvals"]] == [BUYER.name]
    po = only(w.p.purchasing.purchase_orders(status="open"))
    assert po["po_id"] == after["po_id"] and po["supplier"] == "QUOTER"
    assert any(a["kind"] == "purchase_order" and a.get("po_id") == po["po_id"] for a in alerts)
    assert w.view(CATH, OR)["on_order"] == only(po["lines"])["quantity"]


def test_above_the_second_limit_two_different_buyers_must_approve() -> None:
    limits = ProcurementSettings(enabled=True, auto_approve_limit=50.0, second_approval_limit=100.0)
    w = rivals(settings_=limits)
    demand(w)
    req = only(purchases(w))
    assert req["value"] > 100 and req["supplier"] == "RELY"
    assert req["status"] == "pending_approval" and req["approvals_needed"] == 2
    assert req["needs_buyer"] == ["over_auto_approval_limit"]
    first, _ = w.p.decide_requisition(req["id"], True, "needed", BUYER)
    assert first["status"] == "awaiting_second_approval" and first["po_id"] is None
    assert w.p.purchasing.purchase_orders(status="open") == []
    with pytest.raises(ApprovalError) as err:
        w.p.decide_requisition(req["id"], True, "again", BUYER)
    assert err.value.status == 409
    second, alerts = w.p.decide_requisition(req["id"], True, "agreed", Principal("buyer-cy", "buyer"))
    assert second["status"] == "ordered"
    assert [a["by"] for a in second["approvals"]] == [BUYER.name, "buyer-cy"]
    po = only(w.p.purchasing.purchase_orders(status="open"))
    assert po["po_id"] == second["po_id"] and po["requisition_id"] == req["id"]
    assert any(a["kind"] == "purchase_order" and a.get("po_id") == po["po_id"] for a in alerts)
    assert w.view(CATH, OR)["on_order"] == only(po["lines"])["quantity"]
    with pytest.raises(ApprovalError) as err:
        w.p.decide_requisition(req["id"], True, "once more", Principal("admin-two", "admin"))
    assert err.value.status == 409


def test_a_rejected_requisition_is_no_longer_counted_on_order() -> None:
    w, req = quote_only()
    assert w.view(CATH, OR)["on_order"] == only(req["lines"])["quantity"] > 0
    after, _ = w.p.decide_requisition(req["id"], False, "use the contract supplier", BUYER)
    assert after["status"] == "rejected" and after["rejection"]["by"] == BUYER.name
    waiting = [r for r in purchases(w) if r["status"] != "rejected"]
    assert w.view(CATH, OR)["on_order"] == sum(line["quantity"] for r in waiting for line in r["lines"])
    assert w.p.purchasing.purchase_orders() == []
    with pytest.raises(ApprovalError) as err:
        w.p.decide_requisition(req["id"], True, "changed my mind", BUYER)
    assert err.value.status == 409


def test_a_rejection_is_not_undone_by_an_identical_requisition() -> None:
    w, req = quote_only()
    w.p.decide_requisition(req["id"], False, "use the contract supplier", BUYER)
    assert [r["id"] for r in purchases(w)] == [req["id"]]
    assert w.view(CATH, OR)["on_order"] == 0


# -- network ----------------------------------------------------------------------------
def transfer(w: World, quantity: float, at: Any) -> dict[str, Any]:
    return {"event_id": w.eid("tr"), "type": "transfer", "occurred_at": iso(at), "site": SITE,
            "from_location": STORE, "to_location": WARD, "sku": SKU, "lot": "L1", "quantity": quantity}


def test_a_ward_is_restocked_by_a_transfer_request_and_the_central_store_buys() -> None:
    w = World(procurement=ON)
    ok(w, supplier(w, "GSUP"))
    ok(w, terms(w, "GSUP", 2.0, sku=SKU), by=BUYER)
    # (the central store is stocked the day before, with little: its first outflow, the
    # transfer, is then a day's demand, not one in forty quiet days, and takes it below its
    # reorder point)
    ok(w, w.receipt(30, "L1", location=STORE, at=w.now - timedelta(days=1)),
       w.receipt(60, "L1", location=WARD, at=w.now - timedelta(days=40)), by=SCANNER)
    for day in range(20, 0, -1):  # use at the ward until it needs restocking
        ok(w, w.usage(5, "L1", location=WARD, at=w.now - timedelta(days=day)), by=SCANNER)
        if w.p.purchasing.requisitions():
            break
    req = only(w.p.purchasing.requisitions())  # the ward's need only: a transfer request
    assert req["kind"] == "transfer" and req["source"] == STORE and req["supplier"] is None
    assert req["status"] == "open"
    line = only(req["lines"])
    assert line["location"] == WARD and line["quantity"] > 0 and req["outstanding"] == line["quantity"]
    assert purchases(w) == [] and w.p.purchasing.purchase_orders() == []
    assert w.view(SKU, WARD)["on_order"] == line["quantity"]
    picks = only(w.p.pick_list(STORE))
    assert picks["id"] == req["id"] and only(picks["lines"])["pick_from"][0]["lot"] == "L1"
    assert w.p.pick_list(WARD) == []
    ok(w, transfer(w, line["quantity"], w.now - timedelta(minutes=5)), by=SCANNER)
    assert w.p.requisition(req["id"])["status"] == "fulfilled"
    assert w.p.pick_list(STORE) == []
    assert w.view(SKU, WARD)["on_order"] == 0
    # the transfer out is the central store's demand: it buys from outside
    bought = only(purchases(w))
    assert bought["supplier"] == "GSUP" and only(bought["lines"])["location"] == STORE
    assert bought["status"] == "ordered"
    assert w.view(SKU, STORE)["on_order"] == only(bought["lines"])["quantity"]


# -- consignment ------------------------------------------------------------------------
def test_a_use_of_consigned_stock_is_billed_and_replaced() -> None:
    w = cath_world()
    ok(w, w.item(sku="CONS", consignment=True, supplier="RELY", unit_cost=50, criticality="normal"))
    ok(w, terms(w, "RELY", 45, sku="CONS"), by=BUYER)
    ok(w, w.receipt(20, "LC", location=OR, sku="CONS", at=w.now - timedelta(days=2)), by=SCANNER)
    use = w.usage(2, "LC", location=OR, sku="CONS")
    ok(w, use, by=SCANNER)
    bill = only(w.p.purchasing.purchase_orders(status="bill_only"))
    assert bill["bill_only"] is True and bill["supplier"] == "RELY"
    assert [(x["sku"], x["quantity"], x["unit_price"]) for x in bill["lines"]] == [("CONS", 2.0, 45.0)]
    stored = [s["event"] for _, _, t, s in w.stored() if t.endswith("PurchaseOrder.Issued")]
    assert [e["usage_event_id"] for e in stored if e.get("bill_only")] == [use["event_id"]]
    req = only(w.p.purchasing.requisitions(kind="consignment"))
    assert req["supplier"] == "RELY" and only(req["lines"])["quantity"] == 2
    assert req["status"] == "ordered"
    replacement = only(w.p.purchasing.purchase_orders(status="open"))
    assert replacement["po_id"] == req["po_id"] and not replacement["bill_only"]
    assert w.view("CONS", OR)["on_order"] == 2  # the replacement; the bill is not on order
    assert purchases(w) == []


# -- scorecards and contracts ------------------------------------------------------------
def card(w: World, name: str) -> dict[str, Any]:
    return only([c for c in w.p.purchasing.scorecards() if c["supplier"] == name])


def test_a_late_short_delivery_and_a_failed_inspection_call_for_a_review() -> None:
    w = cath_world(offers=(("SLOW", 10, VALID),), item_supplier="SLOW")
    history(w, "SLOW", [3])
    before = card(w, "SLOW")
    assert before["score"] >= 85 and open_alerts(w, "supplier_review_needed", "SLOW") == []
    t0 = w.now - timedelta(days=10)
    ok(w, {"event_id": "po-late", "type": "po_issued", "occurred_at": iso(t0), "po_id": "P-LATE",
           "supplier": "SLOW", "location": OR, "lines": [{"sku": CATH, "quantity": 10}],
           "expected_at": iso(t0 + timedelta(days=3))})
    ok(w, w.receipt(5, "LB", location=OR, sku=CATH, at=t0 + timedelta(days=8), po_id="P-LATE"), by=SCANNER)
    late = card(w, "SLOW")
    assert late["on_time_rate"] < before["on_time_rate"] and late["fill_rate"] < before["fill_rate"]
    assert late["score"] < before["score"]
    on_hand = w.view(CATH, OR)["on_hand"]
    ok(w, {"event_id": "insp", "type": "inspection_result", "occurred_at": w.ago(days=1), "po_id": "P-LATE",
           "location": OR, "sku": CATH, "lot": "LB", "accepted": 2, "rejected": 3, "reason": "torn packs"},
       by=SCANNER)
    after = card(w, "SLOW")
    assert after["batch_pass_rate"] < late["batch_pass_rate"] and after["score"] < late["score"]
    assert w.view(CATH, OR)["on_hand"] == on_hand - 3  # rejected units go back
    review = only(open_alerts(w, "supplier_review_needed", "SLOW"))
    assert "SLOW" in review["message"] and after["score"] < 85


def test_a_price_over_contract_is_a_breach_and_does_not_exclude_the_supplier() -> None:
    w = cath_world()
    history(w, "CHEAP", LATE_PRONE)
    history(w, "RELY", ON_TIME[:4], unit_price=10)
    assert open_alerts(w, "contract_breach", "RELY") == []
    history(w, "RELY", [3], unit_price=12)
    breach = only(open_alerts(w, "contract_breach", "RELY"))
    assert [(b["term"], b["contract"], b["actual"]) for b in breach["breaches"]] == [("price", 10.0, 12.0)]
    assert card(w, "RELY")["price_vs_contract"] > 1 and card(w, "RELY")["contract_breaches"] == 1
    demand(w)
    req = only(purchases(w))
    cands = {c["supplier"]: c for c in only(req["lines"])["candidates"]}
    assert cands["RELY"]["excluded"] is None and req["supplier"] == "RELY"


# -- replay -------------------------------------------------------------------------------
def test_a_procurement_history_replays_to_the_live_state(tmp_path: Path) -> None:
    path = tmp_path / "es.sqlite"
    w = rivals(store=sqlite_store(path))
    demand(w)
    po = only(w.p.purchasing.purchase_orders(status="open"))
    w.now += timedelta(days=5)
    ok(w, w.receipt(20, "LN", location=OR, sku=CATH, po_id=po["po_id"], unit_price=11), by=SCANNER)
    ok(w, {"event_id": "insp", "type": "inspection_result", "occurred_at": w.ago(minutes=1),
           "po_id": po["po_id"], "location": OR, "sku": CATH, "lot": "LN", "accepted": 19, "rejected": 1,
           "reason": "seal"}, by=SCANNER)
    live = (w.p.state_digest(), w.p.purchasing.requisitions(), w.p.purchasing.scorecards(),
            w.p.purchasing.purchase_orders(), w.view(CATH, OR))
    assert live[1] and live[2] and open_alerts(w, "contract_breach", "RELY")
    fresh = Processor(sqlite_store(path), KEY, late_after=w.late_after, clock=lambda: w.now, procurement=ON)
    assert (fresh.state_digest(), fresh.purchasing.requisitions(), fresh.purchasing.scorecards(),
            fresh.purchasing.purchase_orders(), fresh.stock_point_view(CATH, OR)) == live
    assert fresh.verify()[1] is None
    w.p.rebuild()
    assert w.p.state_digest() == live[0] and w.p.purchasing.scorecards() == live[2]


# -- envelopes ---------------------------------------------------------------------------
def bad_events(w: World) -> list[tuple[dict[str, Any], Principal, str, str]]:
    """(event, poster, the field refused, its code)."""
    return [
        (terms(w, "RELY", "cheap"), BUYER, "price", "malformed"),
        (terms(w, "RELY", -1), BUYER, "price", "malformed"),
        (terms(w, "RELY", 10, price_breaks="10 for 9"), BUYER, "price_breaks", "malformed"),
        (terms(w, "RELY", 10, price_breaks=[{"min_quantity": 10}]), BUYER, "price_breaks[0]", "malformed"),
        (terms(w, "RELY", 10, kind="supplier_quote", price_breaks=[{"min_quantity": -1, "price": 9}]), BUYER,
         "price_breaks[0]", "malformed"),
        (supplier(w, "NEW", certificates="ISO13485"), ADMIN, "certificates", "malformed"),
        (supplier(w, "NEW", certificates=[{"valid_until": "2027-01-01"}]), ADMIN, "certificates[0].name",
         "missing_field"),
        (supplier(w, "NEW", certificates=[{"name": "ISO", "valid_until": "31/12/2027"}]), ADMIN,
         "certificates[0].valid_until", "malformed"),
        ({"event_id": w.eid("insp"), "type": "inspection_result", "occurred_at": w.ago(hours=1),
          "supplier": "RELY", "location": OR, "sku": CATH, "accepted": 8, "rejected": 2}, SCANNER,
         "reason", "missing_field"),
        ({"event_id": w.eid("ack"), "type": "po_acknowledged", "occurred_at": w.ago(hours=1),
          "po_id": "NO-SUCH-PO"}, BUYER, "po_id", "malformed"),
        (terms(w, "RELY", 10), SCANNER, "type", "forbidden_type"),
    ]


def test_malformed_procurement_events_are_refused_with_the_field() -> None:
    w = cath_world()
    for event, by, field, code in bad_events(w):
        outcome = w.one(event, by=by)
        assert outcome.status == "rejected", (event, outcome)
        assert (field, code) in [(e["field"], e["code"]) for e in outcome.errors], (event, outcome.errors)
        assert w.stored_refusals(event["event_id"])


def test_well_formed_procurement_events_are_accepted() -> None:
    """The refusals above are about the field named, not the event type."""
    w = cath_world()
    history(w, "RELY", [3])
    po = w.p.purchasing.purchase_orders()[0]["po_id"]
    ok(w, terms(w, "RELY", 10, price_breaks=[{"min_quantity": 100, "price": 9}], min_order=5,
                valid_from="2026-01-01", valid_until="2026-12-31"),
       terms(w, "RELY", 9.5, kind="supplier_quote"), by=BUYER)
    ok(w, supplier(w, "NEW", certificates=[{"name": "ISO", "valid_from": "2025-01-01",
                                            "valid_until": "2027-12-31"}]))
    ok(w, {"event_id": w.eid("insp"), "type": "inspection_result", "occurred_at": w.ago(hours=1),
           "supplier": "RELY", "location": OR, "sku": CATH, "accepted": 10, "rejected": 0},
       {"event_id": w.eid("insp"), "type": "inspection_result", "occurred_at": w.ago(hours=1),
        "supplier": "RELY", "location": OR, "sku": CATH, "accepted": 8, "rejected": 2, "reason": "dented"},
       {"event_id": w.eid("ack"), "type": "po_acknowledged", "occurred_at": w.ago(hours=1), "po_id": po,
        "lines": [{"sku": CATH, "confirmed": 10}]}, by=SCANNER)


# -- what the review found --------------------------------------------------------------
def test_an_order_refused_at_approval_ends_the_requisition_and_later_batches_go_on() -> None:
    w, req = quote_only()
    # The location moves to another site: the order built from the requisition is refused.
    ok(w, w.location(OR, site="H9", at=w.now - timedelta(minutes=1)))
    after, _ = w.p.decide_requisition(req["id"], True, "fine", BUYER)
    assert after["status"] == "rejected" and after["rejection"]["by"] == "system"
    assert "refused" in after["rejection"]["reason"]
    assert w.view(CATH, OR)["on_order"] == 0
    ok(w, w.usage(1, "LH", location=OR, sku=CATH), by=SCANNER)  # the next batch is stored


def test_an_unpriced_item_master_supplier_does_not_beat_a_priced_contract() -> None:
    w = World(procurement=ON)
    ok(w, supplier(w, "MASTER"), supplier(w, "RELY"),
       w.item(sku=CATH, criticality="normal", lead_time_days=3, supplier="MASTER"), w.location(OR, site=SITE))
    ok(w, terms(w, "RELY", 10), by=BUYER)
    ok(w, w.receipt(100, "LH", location=OR, sku=CATH, at=w.now - timedelta(days=20)), by=SCANNER)
    demand(w)
    req = purchases(w)[-1]
    assert req["supplier"] == "RELY" and req["status"] == "ordered"
    master = only([c for c in only(req["lines"])["candidates"] if c["supplier"] == "MASTER"])
    assert master["total"] == 0 and "no_price" in master["flags"]


def test_an_item_master_price_without_a_contract_waits_for_a_buyer() -> None:
    w = World(procurement=ON)
    ok(w, supplier(w, "MASTER"), w.item(sku=CATH, lead_time_days=3, supplier="MASTER", unit_cost=2),
       w.location(OR, site=SITE))
    ok(w, w.receipt(100, "LH", location=OR, sku=CATH, at=w.now - timedelta(days=20)), by=SCANNER)
    demand(w)
    req = purchases(w)[-1]
    assert req["status"] == "pending_approval" and "no_contract" in req["needs_buyer"]


def test_clients_may_not_forge_the_systems_orders() -> None:
    w = rivals()
    demand(w)
    po = only(w.p.purchasing.purchase_orders(status="open"))
    forged = [
        {"event_id": "sys:po-mine", "type": "po_issued", "occurred_at": w.ago(minutes=1), "po_id": "X-1",
         "supplier": "CHEAP", "location": OR, "lines": [{"sku": CATH, "quantity": 1}]},
        {"event_id": "f-2", "type": "po_issued", "occurred_at": w.ago(minutes=1), "po_id": "X-2", "bill_only": True,
         "supplier": "CHEAP", "location": OR, "lines": [{"sku": CATH, "quantity": 1}]},
        {"event_id": "f-3", "type": "po_issued", "occurred_at": w.ago(minutes=1), "po_id": po["po_id"],
         "supplier": "CHEAP", "location": OR, "lines": [{"sku": CATH, "quantity": 1}]},
    ]
    outcomes = w.post(*forged, by=BUYER).outcomes
    assert [o.status for o in outcomes] == ["rejected"] * 3
    assert [o.errors[0]["field"] for o in outcomes] == ["event_id", "bill_only", "po_id"]
    assert only(w.p.purchasing.purchase_orders(status="open"))["supplier"] == po["supplier"]


def test_a_reissued_order_keeps_what_was_received() -> None:
    w = cath_world(settings_=ProcurementSettings())
    issue = {"event_id": "po-a", "type": "po_issued", "occurred_at": w.ago(days=3), "po_id": "ERP-1",
             "supplier": "RELY", "location": OR, "lines": [{"sku": CATH, "quantity": 10}]}
    ok(w, issue, by=SCANNER)
    ok(w, w.receipt(4, "LR", location=OR, sku=CATH, po_id="ERP-1", at=w.now - timedelta(days=2)), by=SCANNER)
    ok(w, dict(issue, event_id="po-b", occurred_at=w.ago(days=1)), by=SCANNER)  # the ERP sends it again
    assert w.view(CATH, OR)["on_order"] == 6
    ok(w, dict(issue, event_id="po-c", occurred_at=w.ago(hours=1), lines=[{"sku": CATH, "quantity": 12}]),
       by=SCANNER)
    assert w.view(CATH, OR)["on_order"] == 8


def test_a_transfer_request_the_store_cannot_supply_can_be_cancelled() -> None:
    w = World(procurement=ON)
    ok(w, w.receipt(60, "L1", location=WARD, at=w.now - timedelta(days=40)), by=SCANNER)
    for day in range(20, 0, -1):
        ok(w, w.usage(5, "L1", location=WARD, at=w.now - timedelta(days=day)), by=SCANNER)
        if w.p.purchasing.requisitions():
            break
    req = only(w.p.purchasing.requisitions(kind="transfer"))
    with pytest.raises(ApprovalError) as no:
        w.p.decide_requisition(req["id"], True, "approve a transfer?", BUYER)
    assert no.value.status == 409
    done, _ = w.p.decide_requisition(req["id"], False, "the store has none either", BUYER)
    assert done["status"] == "rejected"
    assert w.view(SKU, WARD)["on_order"] == 0 and w.p.pick_list(STORE) == []


def test_acknowledgements_and_shipping_notices_reach_the_scorecard() -> None:
    w = rivals()
    demand(w)
    po = only(w.p.purchasing.purchase_orders(status="open"))
    before = card(w, po["supplier"])
    ok(w, {"event_id": "ack-1", "type": "po_acknowledged", "occurred_at": w.ago(minutes=2), "po_id": po["po_id"],
           "lines": [{"sku": CATH, "confirmed": 10, "backordered": 18, "backorder_date": "2026-03-20"}]},
       {"event_id": "asn-1", "type": "shipment_sent", "occurred_at": w.ago(minutes=1), "po_id": po["po_id"],
        "expected_at": iso(w.now + timedelta(days=2))}, by=SCANNER)
    after = card(w, po["supplier"])
    assert before["backorder_rate"] == 0 and after["backorder_rate"] == 1
    assert after["shipping_notices"] == before["shipping_notices"] + 1
    assert after["orders"] == len([p for p in w.p.purchasing.purchase_orders() if p["supplier"] == po["supplier"]])
    row = only([t for t in w.p.purchasing.in_transit(CATH, OR, w.now) if t["po_id"] == po["po_id"]])
    assert (row["backordered"], row["backorder_date"]) == (18, "2026-03-20")
    assert row["expected_at"] == iso_z(w.now + timedelta(days=2))


def iso_z(t: Any) -> str:
    from domain.events import iso_utc
    return iso_utc(t)


def test_a_stockout_names_a_registered_substitute_that_has_stock() -> None:
    w = World()
    ok(w, w.item(sku="GLOVE-L", lead_time_days=3), w.item(sku=SKU, lead_time_days=3, substitutes=["GLOVE-L"]))
    ok(w, w.receipt(10, "L1", location=WARD, at=w.now - timedelta(days=10)),
       w.stock("receipt", 30, "G1", location=WARD, sku="GLOVE-L", expiry="2027-06-30",
               at=w.now - timedelta(days=10)), by=SCANNER)
    for day in range(9, -1, -1):
        ok(w, w.usage(1, "L1", location=WARD, at=w.now - timedelta(days=day, minutes=5)), by=SCANNER)
    (alert,) = [a for a in w.p.alerts(kind="stockout") if a["sku"] == SKU]
    assert [(s["sku"], s["location"], s["on_hand"]) for s in alert["substitutes"]] == [("GLOVE-L", WARD, 30.0)]
    assert "GLOVE-L" in alert["message"]


def test_a_contracts_promised_spread_is_the_candidates_prior_until_receipts_teach_it() -> None:
    """``lead_time_sd_days`` on supplier terms (issue 13, item 5): with no delivery yet, a
    candidate's lead-time spread is the contract's, not 20 % of its lead time."""
    w = World(procurement=ON)
    ok(w, supplier(w, "TIGHT"), supplier(w, "LOOSE"),
       w.item(sku=CATH, criticality="normal", lead_time_days=3, supplier="TIGHT", unit_cost=10),
       w.location(OR, site=SITE))
    ok(w, terms(w, "TIGHT", 9, lead_time_sd_days=0.25), terms(w, "LOOSE", 9), by=BUYER)
    demand(w)
    cands = {c["supplier"]: c for c in only(purchases(w)[0]["lines"])["candidates"]}
    assert cands["TIGHT"]["lead_time_sd_days"] == pytest.approx(0.25)
    assert cands["LOOSE"]["lead_time_sd_days"] == pytest.approx(0.2 * 3)
    assert cands["TIGHT"]["lead_time_source"] == cands["LOOSE"]["lead_time_source"] == "promised"


def test_a_supplier_notice_is_relayed_to_the_alerts_topic_keyed_by_its_supplier() -> None:
    """The distributed profile's relay publishes notices about a supplier (here a contract
    breach), raised and resolved, to ``replenish.alerts.v1`` keyed ``supplier:<id>``, as it
    publishes a stock point's alerts keyed by the stock point."""
    import orjson

    from streams.relay import RELAYED, relayed_message
    from streams.topics import Topics

    w = cath_world()
    history(w, "RELY", ON_TIME[:4], unit_price=10)
    history(w, "RELY", [3], unit_price=12)
    breach = only(open_alerts(w, "contract_breach", "RELY"))
    w.p.change_alert(breach["id"], "resolved", "price agreed", BUYER)
    topics = Topics("t.")
    relayed = [relayed_message(n, topics) for n in w.store.notifications() if n.topic in RELAYED]
    mine = [(topic, key, orjson.loads(value)) for topic, key, value in relayed
            if key == b"supplier:RELY"]
    raised = [b for _, _, b in mine if "alert" in b and b["alert"]["id"] == breach["id"]]
    changed = [b for _, _, b in mine if b.get("alert_id") == breach["id"]]
    assert {topic for topic, _, _ in mine} == {topics.alerts}
    assert len(raised) == 1 and raised[0]["alert"]["kind"] == "contract_breach"
    assert [b["status"] for b in changed] == ["resolved"]
