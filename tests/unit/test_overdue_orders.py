"""Open orders are evidence: an order older than its supplier's lead time allows is a
right-censored lead-time observation, so the reorder point rises while it is late, not after
it arrives; ``order_overdue`` is raised once per late order and resolved on its receipt."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from unit_world import ADMIN, KEY, SCANNER, SKU, WARD, World, iso

from domain import codes as c
from domain.policy import censored_lead_time
from streams.processor import Processor


def _with_demand_and_order(w: World) -> None:
    """Two weeks of 4 uses a day at the ward, stock received, and an order issued now for a
    supplier whose lead time (master data) is 3 days."""
    w.post(w.receipt(200, at=w.now - timedelta(days=15)))
    for day in range(14, 0, -1):
        for k in range(4):
            w.post(w.usage(1, at=w.now - timedelta(days=day, hours=k * 3)))
    po = {"event_id": "po-1", "type": "po_issued", "occurred_at": iso(w.now), "po_id": "PO-1",
          "supplier": "ACME", "location": WARD, "site": "H1", "lines": [{"sku": SKU, "quantity": 40}],
          "expected_at": iso(w.now + timedelta(days=3))}
    assert w.one(po, by=SCANNER).status == c.ACCEPTED


def _overdue_alerts(w: World) -> list[dict[str, Any]]:
    return [a for a in w.p.ledger.alerts.values() if a["kind"] == c.ALERT_ORDER_OVERDUE]


def test_an_order_growing_late_raises_the_reorder_point_before_it_arrives(world: World) -> None:
    w = world
    _with_demand_and_order(w)
    w.p.check_overdue()
    before = w.view()["reorder_point"]
    lead_time_before = w.view()["lead_time_demand"]["lead_time_days"]
    rops = []
    for _ in range(6):  # three days after the promise, then day by day
        w.now += timedelta(days=1 if rops else 5)
        w.p.check_overdue()
        rops.append(w.view()["reorder_point"])
    assert rops[0] > before  # late: the reorder point rose with no other event
    assert rops == sorted(rops) and rops[-1] > rops[0]  # and keeps rising while it stays late
    decision = w.view()["last_decisions"][0]
    inputs = decision["policy"]["inputs"]
    assert inputs["lead_time_source"] == "overdue_orders"
    assert [o["po_id"] for o in inputs["overdue_orders"]] == ["PO-1"]
    assert inputs["lead_time_days"] > lead_time_before


def test_a_supplier_that_doubles_its_lead_time_is_covered_within_two_days_of_the_first_late_order(
        world: World) -> None:
    """Twenty orders delivered in 5 days (± a day's rounding), at 4 uses a day; then an order
    that does not come. Two days after it becomes overdue (past the learned mean + 2 spreads)
    the reorder point covers the use over a doubled lead time (4 × 10), with nothing else
    posted; before it was three quarters of that or less."""
    import random

    w = world
    rng = random.Random(5)
    start = w.now - timedelta(days=200)
    supplier = {"event_id": "sup", "type": "supplier_registered", "occurred_at": iso(start - timedelta(days=1)),
                "supplier": "ACME", "name": "Acme"}
    assert [o.status for o in w.post(supplier, w.item(at=start, supplier="ACME", lead_time_days=5),
                                     by=ADMIN).outcomes] == [c.ACCEPTED] * 2
    w.post(w.receipt(500, at=start))
    for k in range(20):
        issued = start + timedelta(days=10 * k + 1)
        days = rng.choice((4.5, 5.0, 5.0, 5.5))
        po = {"event_id": f"po-{k}", "type": "po_issued", "occurred_at": iso(issued), "po_id": f"PO-{k}",
              "supplier": "ACME", "location": WARD, "site": "H1", "lines": [{"sku": SKU, "quantity": 40}]}
        assert w.one(po, by=SCANNER).status == c.ACCEPTED
        w.post(w.receipt(40, po_id=f"PO-{k}", at=issued + timedelta(days=days)))
    for day in range(200, 0, -1):
        w.post(*[w.usage(1, at=w.now - timedelta(days=day, hours=2 * h)) for h in range(4)])
    late = {"event_id": "po-late", "type": "po_issued", "occurred_at": iso(w.now), "po_id": "PO-LATE",
            "supplier": "ACME", "location": WARD, "site": "H1", "lines": [{"sku": SKU, "quantity": 40}]}
    assert w.one(late, by=SCANNER).status == c.ACCEPTED
    w.p.check_overdue()
    view = w.view()
    before, lead_time = view["reorder_point"], view["lead_time_demand"]["lead_time_days"]
    assert 4.5 <= lead_time <= 5.5 and before <= 0.75 * 4 * 10
    spread = w.p.planner.lead_time("ACME", SKU, 5.0)[1] ** 0.5
    w.now += timedelta(days=lead_time + 2 * spread + 2)  # two days after it became overdue
    w.p.check_overdue()
    after = w.view()
    assert after["reorder_point"] >= 4 * 10
    assert [o["po_id"] for o in after["last_decisions"][0]["policy"]["inputs"]["overdue_orders"]] == ["PO-LATE"]


def test_order_overdue_is_raised_once_and_resolved_when_the_order_arrives(world: World) -> None:
    w = world
    _with_demand_and_order(w)
    w.now += timedelta(days=6)
    for _ in range(3):
        w.p.check_overdue()
        w.now += timedelta(hours=6)
    (alert,) = _overdue_alerts(w)
    assert alert["status"] == "open" and alert["po_id"] == "PO-1" and alert["order_supplier"] == "ACME"
    assert alert["days_late"] >= 3
    assert w.one(w.receipt(40, po_id="PO-1", at=w.now - timedelta(minutes=1))).status == c.ACCEPTED
    (alert,) = _overdue_alerts(w)
    assert alert["status"] == "resolved"
    assert "overdue_orders" not in w.view()["last_decisions"][0]["policy"]["inputs"]


def test_an_order_within_its_lead_time_says_nothing(world: World) -> None:
    w = world
    _with_demand_and_order(w)
    w.p.check_overdue()
    before = w.view()["reorder_point"]
    w.now += timedelta(days=2)
    w.p.check_overdue()
    assert w.view()["reorder_point"] == before
    assert _overdue_alerts(w) == []


def test_replay_of_overdue_decisions_equals_live(world: World) -> None:
    w = world
    _with_demand_and_order(w)
    w.now += timedelta(days=7)
    w.p.check_overdue()
    w.post(w.receipt(40, po_id="PO-1", at=w.now - timedelta(minutes=1)))
    again = Processor(w.store, KEY, clock=lambda: w.now)
    assert again.state_digest() == w.p.state_digest()
    checked, differences, skipped = again.check_decisions()
    assert checked > 0 and differences == [] and skipped == 0


@given(mean=st.floats(0.5, 60), sd=st.floats(0.05, 20),
       bounds=st.lists(st.floats(0, 200), max_size=5), weight=st.floats(0.01, 1.0))
def test_censored_orders_never_lower_the_mean_and_an_order_ageing_raises_it_more(
        mean: float, sd: float, bounds: list[float], weight: float) -> None:
    """(With several bounds learned one after another, all of them a day later need not give a
    higher mean: each changes the spread the next is judged by. One order ageing does.)"""
    m, v = censored_lead_time(mean, sd * sd, bounds, weight)
    assert m >= mean and v >= 0
    for b in bounds[:1]:
        one, _ = censored_lead_time(mean, sd * sd, [b], weight)
        later, _ = censored_lead_time(mean, sd * sd, [b + 1.0], weight)
        assert later >= one - 1e-9
    if all(b <= mean for b in bounds):
        assert (m, v) == (mean, sd * sd)


@given(mean=st.floats(0.5, 60), sd=st.floats(0.05, 20), bound=st.floats(0, 200),
       weight=st.floats(0.01, 0.6))
def test_an_order_late_beyond_three_spreads_moves_the_estimate_as_a_change_would(
        mean: float, sd: float, bound: float, weight: float) -> None:
    """With the weight of a change (0.6) for bounds 3 spreads or more above the mean: never
    less than the plain update, the same below 3 spreads, never lower than the mean."""
    plain, _ = censored_lead_time(mean, sd * sd, [bound], weight)
    surprised, v = censored_lead_time(mean, sd * sd, [bound], weight, surprised_weight=0.6, surprise_sds=3.0)
    assert surprised >= plain - 1e-9 and surprised >= mean and v >= 0
    if bound < mean + 3 * sd:
        assert surprised == plain
    elif weight < 0.6 and bound > mean + 3.01 * sd:
        assert surprised > plain


def test_a_receipt_stored_before_its_order_leaves_nothing_open(world: World) -> None:
    """On the distributed profile an order and its receipt travel on different partitions:
    the receipt may be stored first. The order, once known, counts only what is to come."""
    w = world
    w.post(w.receipt(40, po_id="PO-9", at=w.now - timedelta(days=2)))
    po = {"event_id": "po-9", "type": "po_issued", "occurred_at": iso(w.now - timedelta(days=8)), "po_id": "PO-9",
          "supplier": "ACME", "location": WARD, "site": "H1", "lines": [{"sku": SKU, "quantity": 40}]}
    assert w.one(po, by=SCANNER).status == c.ACCEPTED
    assert w.view()["on_order"] == 0
    w.now += timedelta(days=10)
    w.p.check_overdue()
    assert _overdue_alerts(w) == []
