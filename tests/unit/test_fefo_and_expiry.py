"""FEFO pick suggestions and the daily expiry check across lots with different expiries and
stock points with different usage rates (issue 7)."""

from __future__ import annotations

from datetime import timedelta

from unit_world import ADMIN, LONG_AGO, SKU, STORE, WARD, World

from domain import codes as c
from domain.aggregates import StockPoint
from streams import traceability

COST = 2.0


def world() -> World:
    """A fast mover (5 a day at the ward) and a slow one (one every 5 days at the store), each
    holding lot B (expires in 3 days), lot A (in 11 days), lot C (expired) and lot H (no expiry)."""
    w = World()
    w.post(w.item(at=LONG_AGO + timedelta(days=1), unit_cost=COST), by=ADMIN)
    w.post(w.receipt(1000, lot="H", expiry=None, location=WARD, at=w.now - timedelta(days=40)),
           w.receipt(1000, lot="H", expiry=None, location=STORE, at=w.now - timedelta(days=40)))
    history = []
    for d in range(30, 0, -1):
        at = w.now - timedelta(days=d)
        history += [w.usage(1, lot="H", location=WARD, at=at + timedelta(minutes=m)) for m in range(5)]
        if d % 5 == 0:
            history.append(w.usage(1, lot="H", location=STORE, at=at))
    w.post(*history)
    for loc in (WARD, STORE):
        w.post(w.receipt(10, lot="B", expiry="2026-03-12", location=loc, at=w.now - timedelta(hours=2)),
               w.receipt(10, lot="A", expiry="2026-03-20", location=loc, at=w.now - timedelta(hours=2)),
               w.receipt(4, lot="C", expiry="2026-03-05", location=loc, at=w.now - timedelta(hours=2)))
    return w


def test_fefo_orders_usable_lots_by_expiry():
    w = world()
    fefo = w.view(location=WARD)["fefo"]
    assert [(r["rank"], r["lot"], r["expiry"], r["days_left"]) for r in fefo] == [
        (1, "B", "2026-03-12", 3), (2, "A", "2026-03-20", 11), (3, "H", None, None)]
    assert "C" not in [r["lot"] for r in fefo]  # expired: never suggested


def test_daily_check_raises_expiry_alerts_by_usage_rate_with_value_at_cost():
    w = world()
    result = w.p.daily_check()
    ward, store = w.p.ledger.stock_point(SKU, WARD), w.p.ledger.stock_point(SKU, STORE)
    assert isinstance(ward, StockPoint) and isinstance(store, StockPoint)
    fast, slow = ward.expiry["demand_per_day"], store.expiry["demand_per_day"]
    assert fast > 3 and slow < 0.5, (fast, slow)

    for sp in (ward, store):
        assert [(r["lot"], r["quantity"], r["value_at_cost"]) for r in sp.expiry["expired_on_shelf"]] == [
            ("C", 4.0, 8.0)]
    # Fast mover: B (10 in 3 days) and A (20 cumulative in 11 days) are used in time.
    assert ward.expiry["expiry_risk"] == []
    # Slow mover: what the rate leaves on the shelf at each expiry.
    risk_b = round(min(10, 10 - slow * 3), 3)
    risk_a = round(min(10, 20 - slow * 11), 3)
    assert [(r["lot"], r["at_risk"]) for r in store.expiry["expiry_risk"]] == [("B", risk_b), ("A", risk_a)]
    assert store.expiry["value_at_cost"]["expiry_risk"] == round((risk_b + risk_a) * COST, 2)

    kinds = sorted((a["kind"], a["location"], a["lot"]) for a in result.alerts)
    assert kinds == sorted([(c.ALERT_EXPIRED_ON_SHELF, WARD, "C"), (c.ALERT_EXPIRED_ON_SHELF, STORE, "C"),
                            (c.ALERT_EXPIRY_RISK, STORE, "B"), (c.ALERT_EXPIRY_RISK, STORE, "A")])
    report = traceability.expiry_report(w.p)
    by_loc = {loc["location"]: loc for loc in report["locations"]}
    assert by_loc[WARD]["value_at_cost"] == {"expired_on_shelf": 8.0, "expiry_risk": 0.0}
    assert by_loc[STORE]["value_at_cost"]["expiry_risk"] == round((risk_b + risk_a) * COST, 2)

    # The same day again: nothing changes, nothing is stored.
    assert w.p.daily_check().stored == 0
    # Lots B and C pulled from the store's shelf (wasted): the next day resolves their alerts.
    w.post(w.stock("waste", 10, "B", location=STORE, at=w.now - timedelta(minutes=1)),
           w.stock("waste", 4, "C", location=STORE, at=w.now - timedelta(minutes=1)))
    w.now += timedelta(days=1)
    w.p.daily_check()
    open_store = sorted((a["kind"], a["lot"]) for a in w.p.alerts(status="open", location=STORE)
                        if a["kind"] in (c.ALERT_EXPIRY_RISK, c.ALERT_EXPIRED_ON_SHELF))
    assert open_store == [(c.ALERT_EXPIRY_RISK, "A")]
    assert [(r["lot"], r["at_risk"]) for r in store.expiry["expiry_risk"]] == [
        ("A", round(10 - store.expiry["demand_per_day"] * 10, 3))]

    # Stored as decisions: replay gives the same state.
    live = w.p.state_digest()
    w.p.rebuild()
    assert w.p.state_digest() == live
    assert w.p.check_decisions()[1] == []
