"""Each named KPI on a small dataset whose answers are worked out by hand.

The stored events are posted directly (``StoredEvent`` bodies as the store keeps them), so
the KPIs of purchase orders and prices are tested before the processor records those."""

from __future__ import annotations

import itertools
import statistics
from datetime import date
from typing import Any

import orjson
import pytest
from pytest import approx

from projections import queries
from projections.follower import Follower, json_state

from .projections_world import Hospital, Notification

S = "MEDSUP"


@pytest.fixture(scope="session")
def servers() -> dict[str, str]:
    """These tests need ClickHouse only: not the Kafka and PostgreSQL servers of conftest."""
    return {}


class Log:
    """Builds a notification log of stored events as the store keeps them."""

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self.versions: dict[str, int] = {}
        self.ids = itertools.count(1)

    def add(self, stream: str, kind: str, recorded: str, **body: Any) -> None:
        version = self.versions[stream] = self.versions.get(stream, 0) + 1
        body = {"timestamp": recorded, **body}
        self.notifications.append(Notification(len(self.notifications) + 1, stream, version,
                                               f"domain.aggregates:{kind}", orjson.dumps(body)))

    def fact(self, kind: str, stream: str, event: dict[str, Any], **extra: Any) -> None:
        self.add(stream, kind, event["occurred_at"], event=dict(event, event_id=f"e{next(self.ids)}"),
                 recorded_at=event["occurred_at"], recorded_by="x", fingerprint="f", **extra)

    def item(self, sku: str, cost: float, at: str = "2026-02-01T00:00:00.000000Z", **extra: Any) -> None:
        self.fact("MasterRecord.Registered", f"item:{sku}",
                  {"type": "item_registered", "occurred_at": at, "sku": sku, "base_unit": "each",
                   "unit_cost": cost, **extra})

    def location(self, location: str, site: str) -> None:
        self.fact("MasterRecord.Registered", f"location:{location}",
                  {"type": "location_registered", "occurred_at": "2026-02-01T00:00:00.000000Z",
                   "location": location, "site": site})

    def lot(self, sku: str, lot: str, expiry: str | None) -> None:
        self.add(f"lot:{sku}/{lot}", "Lot.Opened", "2026-02-01T00:00:00.000000Z",
                 key={"sku": sku, "lot": lot, "expiry": expiry},
                 originator_topic="domain.aggregates:Lot")

    def stock(self, etype: str, at: str, location: str, sku: str, lot: str, quantity: float,
              **extra: Any) -> None:
        sign = 1 if etype in ("receipt", "return") else -1
        site = "H2" if location == "N1" else "H1"
        event = {"type": etype, "occurred_at": at, "site": site, "location": location, "sku": sku,
                 "lot": lot, "quantity": quantity, "unit": "each", **extra}
        flags = event.pop("flags", [])
        self.fact("StockPoint.Recorded", f"sp:{sku}@{location}", event,
                  moves=[["add", lot, sign * quantity]], effects=[[lot, sign * quantity]], flags=flags)

    def po(self, po_id: str, at: str, location: str, sku: str, quantity: float, expected: str) -> None:
        self.fact("PurchaseOrder.Issued", f"po:{po_id}",
                  {"type": "po_issued", "occurred_at": at, "po_id": po_id, "supplier": S,
                   "location": location, "expected_at": expected,
                   "lines": [{"sku": sku, "quantity": quantity, "unit": "each"}]})

    def decided(self, at: str, location: str, sku: str, demand: float) -> None:
        self.add(f"sp:{sku}@{location}", "StockPoint.Decided", at,
                 decision={"type": "reorder_point_changed", "sku": sku, "location": location,
                           "decided_at": at, "policy": {"reorder_point": 10.0, "safety_stock": 2.0,
                                                        "inputs": {"demand_mean_per_day": demand,
                                                                   "demand_sd_per_day": 1.0}}})


def t(day: int, hour: int = 0, minute: int = 0) -> str:
    """An instant in March 2026 (2 March is a Monday)."""
    return f"2026-03-{day:02d}T{hour:02d}:{minute:02d}:00.000000Z"


def known_log() -> Log:
    log = Log()
    for loc, site in (("W1", "H1"), ("W2", "H1"), ("N1", "H2")):
        log.location(loc, site)
    log.item("A", 2.0)
    log.item("B", 5.0)
    log.item("C", 1.0)
    log.lot("A", "A1", "2026-03-05")
    log.lot("A", "A2", "2026-03-06")
    log.lot("A", "A3", None)
    log.lot("B", "B1", "2026-03-04")
    log.po("P1", "2026-02-26T10:00:00.000000Z", "W1", "A", 10, t(1, 12))
    log.po("P3", t(1), "N1", "A", 20, t(2, 6))
    log.decided(t(1, 20), "W1", "A", 3.0)
    # A at ward W1 (site H1): two lots, each expiring; stock runs out twice.
    log.stock("receipt", t(2, 8), "W1", "A", "A1", 10, po_id="P1", supplier=S, unit_price=1.5)
    log.stock("usage", t(2, 12), "W1", "A", "A1", 4)
    log.stock("receipt", t(2, 10), "N1", "A", "A3", 20.0, po_id="P3", supplier=S, unit_price=30.0,
              sent_quantity=2, sent_unit="box")
    log.stock("receipt", t(2, 9), "W2", "B", "B1", 10, supplier=S)
    log.stock("receipt", t(2, 9, 5), "W2", "B", "B2", 10, supplier=S)
    log.decided(t(2, 18), "W1", "A", 4.0)
    log.decided(t(2, 23), "W1", "A", 5.0)
    log.stock("usage", t(3, 10), "W1", "A", "A1", 6, flags=["recalled_lot_used"])
    log.stock("usage", t(3, 10), "W2", "B", "B2", 7)
    log.po("P2", t(3, 9), "W1", "A", 8, t(5, 18))
    log.po("P4", t(3, 9), "W2", "C", 10, t(5, 12))
    log.fact("Lot.Changed", "lot:A/A1", {"type": "lot_changed", "occurred_at": t(3, 11), "sku": "A",
                                         "lot": "A1", "change": "hold", "reason": "inspection"})
    log.po("P4", t(4, 9), "W2", "C", 12, t(5, 12))  # re-issued: 12, not 10
    log.stock("usage", t(4, 10), "N1", "A", "A3", 5)
    log.decided(t(4, 12), "W1", "A", 2.0)
    log.fact("Lot.Changed", "lot:A/A3", {"type": "lot_changed", "occurred_at": t(4, 13), "sku": "A",
                                         "lot": "A3", "change": "expiry_corrected",
                                         "new_expiry": "2026-03-20", "reason": "label"})
    log.fact("Recall.Issued", "recall:R1", {"type": "recall_issued", "occurred_at": t(4, 14), "sku": "A",
                                            "lots": ["A1"], "reference": "R1", "recall_class": "II"})
    log.stock("receipt", t(5, 9), "W1", "A", "A2", 5, po_id="P2", supplier=S, unit_price=1.0)
    log.add("sp:A@W1", "StockPoint.Refused", t(5, 10),
            event={"event_id": "bad-1", "type": "usage", "occurred_at": t(5, 10), "location": "W1",
                   "sku": "A", "lot": "A1", "quantity": 1},
            errors=[{"field": "lot", "code": "recalled_lot", "message": "recalled"}],
            recorded_at=t(5, 10), recorded_by="x", fingerprint="f")
    log.add("refusals", "RefusalLog.Refused", t(5, 11),
            event={"event_id": "bad-2", "type": "usage", "occurred_at": "yesterday", "location": "W1",
                   "sku": 17, "quantity": "lots"},
            errors=[{"field": "sku", "code": "unknown_item", "message": "?"},
                    {"field": "occurred_at", "code": "malformed", "message": "?"}],
            recorded_at=t(5, 11), recorded_by="x", fingerprint="f")
    log.stock("usage", t(6, 10), "W1", "A", "A2", 2)
    log.stock("receipt", t(6, 8), "W2", "C", "C1", 6, po_id="P4", supplier=S, unit_price=1.2)
    log.fact("Recall.Closed", "recall:R1", {"type": "recall_closed", "occurred_at": t(6, 12),
                                            "reference": "R1"})
    log.stock("waste", t(7, 10), "W1", "A", "A2", 3, reason="expired")
    log.stock("receipt", t(9, 8), "W2", "C", "C1", 4, po_id="P4", supplier=S)
    log.item("A", 3.0, at=t(9))
    log.stock("waste", t(10, 10), "N1", "A", "A3", 1, reason="damaged")
    return log


@pytest.fixture(scope="module")
def known(clickhouse_dsn: str) -> Any:
    from projections.client import drop_database, open_projections
    client = open_projections(clickhouse_dsn, "t_known_kpis")
    from projections.schema import drop_all, migrate
    drop_all(client)
    migrate(client)
    Follower(client, batch_size=8).follow(known_log().notifications, json_state)
    yield client
    drop_database(client, "t_known_kpis")
    client.close()


WEEK1: dict[str, Any] = {"start": "2026-03-02", "end": "2026-03-09"}


def rows(client: Any, name: str, **filters: Any) -> list[dict[str, Any]]:
    return queries.run(client, name, **filters).rows


def test_forecast_accuracy_is_wape_bias_and_mase_of_the_standing_forecast(known: Any) -> None:
    # Standing forecasts of A at W1 for 2..7 March: 3, 5, 5, 2, 2, 2; used: 4, 6, 0, 0, 2, 0.
    out = rows(known, "forecast_accuracy", **WEEK1)
    assert [(r["week"], r["sku"]) for r in out] == [(date(2026, 3, 2), ""), (date(2026, 3, 2), "A")]
    overall, item = out
    naive_scale = (2 + 6 + 0 + 2 + 2) / 5
    for r in (overall, item):
        assert r["wape"] == approx(11 / 12) and r["bias"] == approx(7 / 12)
        assert r["mase"] == approx((11 / 6) / naive_scale)
        assert (r["forecast"], r["actual"], r["stock_points"], r["stock_point_days"]) == (19, 12, 1, 6)
    assert rows(known, "forecast_accuracy", site="H2", **WEEK1) == []


def test_stockout_rate_counts_days_at_or_below_zero_and_estimates_unmet_demand(known: Any) -> None:
    # A at W1 closes Mon..Sun at 6, 0, 0, 5, 3, 0, 0: four stockout days; used 4, 6, 0, 0, 2,
    # 0, 0; mean use on in-stock days 6 / 3 = 2, so unmet 0 + 2 + 2 + 2 = 6.
    (w1,) = rows(known, "stockout_rate", sku="A", location="W1", **WEEK1)
    assert (w1["stock_point_days"], w1["stockout_days"]) == (7, 4)
    assert w1["stockout_rate"] == approx(4 / 7)
    assert (w1["demand_met"], w1["demand_unmet"]) == (approx(12), approx(6))
    assert w1["unmet_share"] == approx(6 / 18)
    # With A at N1 (20, 20, 15, ... never out) and B at W2 (never out).
    (week,) = rows(known, "stockout_rate", sku="A", **WEEK1)
    assert (week["stock_point_days"], week["stockout_days"]) == (14, 4)
    assert week["unmet_share"] == approx(6 / (12 + 5 + 6))
    (h1,) = rows(known, "stockout_rate", site="H1", **WEEK1)  # A at W1, B and C at W2
    assert (h1["stock_point_days"], h1["stockout_days"]) == (7 + 7 + 3, 4)


def test_fill_rate_counts_latest_order_lines_due_in_the_period(known: Any) -> None:
    # Due 2-8 March: P2 (8, got 5 on time), P3 (20, got 20 on time), P4 (re-issued for 12,
    # got 6 a day late; 4 more on 9 March, after the period). P1 was due 1 March.
    (week,) = rows(known, "fill_rate", **WEEK1)
    assert (week["week"], week["supplier"], week["lines"], week["ordered"]) == (date(2026, 3, 2), S, 3, 40)
    assert week["filled"] == 31 and week["fill_rate"] == approx(31 / 40)
    assert week["filled_on_time"] == 25 and week["on_time_fill_rate"] == approx(25 / 40)
    (later,) = rows(known, "fill_rate", start="2026-03-02", end="2026-03-10")
    assert later["filled"] == 35 and later["filled_on_time"] == 25
    (c,) = rows(known, "fill_rate", sku="C", **WEEK1)
    assert (c["ordered"], c["filled"]) == (12, 6)


def test_days_of_supply_divides_usable_on_hand_by_mean_daily_usage(known: Any) -> None:
    out = {(r["sku"], r["location"]): r for r in rows(known, "days_of_supply", **WEEK1)}
    assert out["A", "N1"]["on_hand"] == 15 and out["A", "N1"]["days_of_supply"] == approx(15 / (5 / 7))
    # B at W2: lot B1 (10) expired on 4 March and is not usable; B2 holds 3; 7 used in 7 days.
    assert out["B", "W2"]["on_hand"] == 3 and out["B", "W2"]["days_of_supply"] == approx(3.0)
    assert out["A", "W1"]["on_hand"] == 0 and out["A", "W1"]["days_of_supply"] == 0
    assert out["C", "W2"]["mean_daily_usage"] == 0 and out["C", "W2"]["days_of_supply"] is None
    assert out["A", "N1"]["site"] == "H2"
    # The default window is the 28 days before the end.
    default = {(r["sku"], r["location"]): r for r in rows(known, "days_of_supply", end="2026-03-09")}
    assert default["A", "N1"]["mean_daily_usage"] == approx(5 / 28)


def test_turnover_is_use_over_mean_on_hand(known: Any) -> None:
    out = {(r["sku"], r["location"]): r for r in rows(known, "turnover", sku="A", **WEEK1)}
    w1, n1 = out["A", "W1"], out["A", "N1"]
    assert w1["mean_on_hand"] == approx(14 / 7) and w1["turnover"] == approx(12 / 2)
    assert w1["annual_turnover"] == approx(6 * 365 / 7)
    assert n1["mean_on_hand"] == approx((20 + 20 + 5 * 15) / 7)
    assert n1["turnover"] == approx(5 / (115 / 7))


def test_expired_value_values_expired_shelf_stock_and_waste(known: Any) -> None:
    # Expired on the shelf: A2 at W1 (3 left on 6 March, received at 1.00) and B1 at W2 (10 on
    # 4 March, no price: registered 5.00). Waste: 3 of A2 (expired, 1.00) in week 1; 1 of A3
    # (damaged) on 10 March, no lot price: A's registered cost from 9 March, 3.00.
    week1, week2 = rows(known, "expired_value", start="2026-03-02", end="2026-03-16")
    assert week1 == {"week": date(2026, 3, 2), "expired_quantity": 13, "expired_value": approx(53),
                     "wasted_quantity": 3, "wasted_value": approx(3), "expired_waste_value": approx(3)}
    assert week2 == {"week": date(2026, 3, 9), "expired_quantity": 0, "expired_value": 0,
                     "wasted_quantity": 1, "wasted_value": approx(3), "expired_waste_value": 0}
    (b,) = rows(known, "expired_value", sku="B", **WEEK1)
    assert b["expired_value"] == approx(50) and b["wasted_quantity"] == 0


def test_unit_cost_is_the_quantity_weighted_price_per_base_unit(known: Any) -> None:
    a, c = rows(known, "unit_cost", **WEEK1)
    assert (a["sku"], a["supplier"], a["receipts"], a["received_quantity"]) == ("A", S, 3, 35)
    # 10 at 1.50, 5 at 1.00 and 2 boxes of 10 at 30.00 a box (3.00 each).
    assert a["mean_unit_cost"] == approx((15 + 5 + 60) / 35)
    assert (a["min_unit_cost"], a["max_unit_cost"]) == (approx(1.0), approx(3.0))
    assert (c["sku"], c["receipts"], c["mean_unit_cost"]) == ("C", 1, approx(1.2))


def test_in_transit_time_runs_from_first_issue_to_receipt(known: Any) -> None:
    (week,) = rows(known, "in_transit_time", **WEEK1)
    days = [3 + 22 / 24, 1 + 10 / 24, 2.0, 2 + 23 / 24]  # P1, P3, P2, P4 (first issued 3 March)
    assert (week["supplier"], week["receipts"]) == (S, 4)
    assert week["mean_days"] == approx(statistics.mean(days))
    assert week["median_days"] == approx(statistics.median(days))
    assert week["p90_days"] == approx(statistics.quantiles(days, n=10, method="inclusive")[-1])
    assert week["on_time_share"] == approx(2 / 4)  # P1 and P4 arrived after their expected day
    (h2,) = rows(known, "in_transit_time", site="H2", **WEEK1)
    assert h2["receipts"] == 1 and h2["mean_days"] == approx(1 + 10 / 24)


def test_compliance_events_count_lot_changes_recalls_refusals_and_flagged_uses(known: Any) -> None:
    got = {(r["category"], r["detail"]): r["events"] for r in rows(known, "compliance_events", **WEEK1)}
    assert got == {("lot_changed", "hold"): 1, ("lot_changed", "expiry_corrected"): 1,
                   ("recall_issued", "II"): 1, ("recall_closed", ""): 1,
                   ("refused", "recalled_lot"): 1, ("refused", "unknown_item"): 1,
                   ("refused", "malformed"): 1, ("flagged_use", "recalled_lot_used"): 1}
    at_w2 = {(r["category"], r["detail"]) for r in rows(known, "compliance_events", location="W2", **WEEK1)}
    assert at_w2 == {("lot_changed", "hold"), ("lot_changed", "expiry_corrected"),
                     ("recall_issued", "II"), ("recall_closed", "")}


def test_every_kpi_has_a_definition_and_runs_with_every_filter(ch: Any) -> None:
    hospital = Hospital()
    hospital.register()
    for _ in hospital.run(days=8, per_batch=25):
        pass
    Follower(ch).catch_up(hospital.store.notifications, hospital.store.mapper.to_domain_event)
    assert set(queries.KPIS) >= {"forecast_accuracy", "stockout_rate", "fill_rate", "days_of_supply",
                                  "turnover", "expired_value", "unit_cost", "in_transit_time",
                                  "compliance_events"}
    for name, definition in queries.definitions().items():
        assert len(definition) > 80, name
        for filters in ({}, {"site": "H1"}, {"location": "W1"}, {"sku": "GLV"},
                        {"start": "2026-03-03", "end": "2026-03-08T12:00:00+01:00"}):
            result = queries.run(ch, name, queries.make_filters(**filters))
            assert result.columns, (name, filters)
    assert rows(ch, "stockout_rate", start="2026-03-02", end="2026-03-10")
    assert rows(ch, "forecast_accuracy", start="2026-03-02", end="2026-03-10")


def test_an_unknown_kpi_is_refused_with_the_known_names(ch: Any) -> None:
    with pytest.raises(queries.UnknownKpi, match="fill_rate"):
        queries.run(ch, "nope")
