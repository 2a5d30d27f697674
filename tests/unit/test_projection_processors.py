"""The projection processors are pure: a stored event in, rows out, with no ClickHouse."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest

from domain.intake import Principal
from projections.follower import json_state
from projections.processors import COLUMNS, StoredEvent, process, process_batch, stored_event
from streams.processor import Processor
from streams.store import EventStore, memory_env

ADMIN = Principal("admin-ana", "admin")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def small_store() -> EventStore:
    store = EventStore(env=memory_env())
    p = Processor(store, b"k" * 32, clock=lambda: NOW)
    t0 = "2026-03-01T00:00:00+00:00"
    events: list[dict[str, Any]] = [
        {"type": "location_registered", "location": "CS", "site": "H1", "kind": "central_store"},
        {"type": "location_registered", "location": "W3", "site": "H1", "restocked_from": "CS"},
        {"type": "item_registered", "sku": "GLV", "base_unit": "each", "units": {"box": 100},
         "pack_size": 100, "unit_cost": 0.1, "lead_time_days": 3},
        {"type": "receipt", "location": "W3", "sku": "GLV", "lot": "L1", "expiry": "2027-01-01",
         "quantity": 2, "unit": "box", "po_id": "PO1", "unit_price": 9.0, "occurred_at": "2026-03-02T07:00:00Z"},
        {"type": "usage", "location": "W3", "sku": "GLV", "lot": "L1", "quantity": 5,
         "case_id": "OR-CASE-12", "occurred_at": "2026-03-02T07:30:00Z"},
        {"type": "transfer", "from_location": "W3", "to_location": "CS", "sku": "GLV", "lot": "L1",
         "quantity": 3, "occurred_at": "2026-03-02T07:45:00Z"},
        {"type": "usage", "location": "W9", "sku": "GLV", "quantity": 1, "occurred_at": "2026-03-02T07:50:00Z"},
    ]
    batch: list[tuple[Any, Principal]] = [
        (dict({"occurred_at": t0}, **e, event_id=f"e{i}"), ADMIN) for i, e in enumerate(events)]
    batch.append(("not an event", ADMIN))
    p.process(batch)
    return store


@pytest.fixture(scope="module")
def log() -> list[tuple[Any, Any]]:
    store = small_store()
    return [(n, store.mapper.to_domain_event(n)) for n in store.notifications()]


def test_the_same_stored_event_twice_gives_the_same_rows(log: list[tuple[Any, Any]]) -> None:
    for n, decoded in log:
        first = process(stored_event(n, decoded))
        assert process(stored_event(n, copy.deepcopy(decoded))) == first
        # Decoding the stored JSON directly gives the rows the domain event gives.
        assert process(stored_event(n, json_state(n))) == first


def test_every_stored_event_gives_one_raw_row_with_every_column(log: list[tuple[Any, Any]]) -> None:
    rows = process_batch(stored_event(n, d) for n, d in log)
    assert [r["notification_id"] for r in rows["events_raw"]] == [n.id for n, _ in log]
    for table, table_rows in rows.items():
        for row in table_rows:
            assert sorted(row) == sorted(COLUMNS[table]), table
    kinds = {r["kind"] for r in rows["events_raw"]}
    assert {"StockPoint.Recorded", "StockPoint.Decided", "MasterRecord.Registered",
            "RefusalLog.Refused", "Lot.Opened"} <= kinds


def test_a_recorded_fact_gives_its_typed_columns_and_its_lot_effects(log: list[tuple[Any, Any]]) -> None:
    rows = process_batch(stored_event(n, d) for n, d in log)
    receipt = next(r for r in rows["events_raw"] if r["type"] == "receipt")
    assert (receipt["sku"], receipt["location"], receipt["lot"], receipt["quantity"]) == ("GLV", "W3", "L1", 200.0)
    assert receipt["occurred_at"] == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    assert receipt["unit_price"] == pytest.approx(0.09)  # 9.00 a box of 100
    assert receipt["expiry"] == date(2027, 1, 1) and receipt["refused"] == 0
    assert orjson.loads(receipt["payload"])["event"]["po_id"] == "PO1"
    usage = next(r for r in rows["events_raw"] if r["type"] == "usage" and not r["refused"])
    assert usage["case_id"].startswith("ps_")  # pseudonymised, never the case id in clear
    moves = [(m["location"], m["type"], m["side"], m["delta"]) for m in rows["stock_moves"]]
    assert moves == [("W3", "receipt", "", 200.0), ("W3", "usage", "", -5.0),
                     ("W3", "transfer", "out", -3.0), ("CS", "transfer", "in", 3.0)]


def test_refusals_keep_what_was_sent_without_failing(log: list[tuple[Any, Any]]) -> None:
    rows = process_batch(stored_event(n, d) for n, d in log)
    refused = [r for r in rows["events_raw"] if r["refused"]]
    assert [r["error_codes"] for r in refused] == [["unknown_location"], ["malformed"]]
    assert refused[1]["type"] == "refused" and refused[1]["event_id"] == ""
    odd = StoredEvent(9, "refusals", 3, "domain.aggregates:RefusalLog.Refused",
                      {"timestamp": "2026-03-02T08:00:00+00:00",
                       "event": {"type": "usage", "sku": 17, "quantity": "lots", "occurred_at": "soon",
                                 "expiry": "2026-13-40", "site": ["H1"]},
                       "errors": [{"code": "malformed"}, "?"]})
    (row,) = process(odd)["events_raw"]
    assert (row["sku"], row["quantity"], row["expiry"], row["site"]) == ("17", None, None, "")
    assert row["occurred_at"] == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # falls back to recorded
    assert row["error_codes"] == ["malformed"]


def test_decisions_give_their_numbers_from_wherever_the_decision_keeps_them(log: list[tuple[Any, Any]]) -> None:
    rows = process_batch(stored_event(n, d) for n, d in log)
    assert rows["decisions"], "the processor decided on the stock points it moved"
    d = rows["decisions"][0]
    assert d["demand_mean"] is not None and d["lead_time_days"] == 3 and d["formula"]
    # A decision of another shape (a future kind): found by its topic, numbers found flat.
    other = StoredEvent(40, "sp:IVC@W1", 7, "domain.aggregates:Supplier.OrderDecided",
                        {"timestamp": "2026-03-03T10:00:00+00:00",
                         "decision": {"type": "replenishment_needed", "quantity": 50,
                                      "inputs": {"demand_mean": 4.5, "demand_sd": 1.5,
                                                 "lead_time_mean": 2, "service_level": 0.99}}})
    (row,) = process(other)["decisions"]
    assert (row["sku"], row["location"], row["decision_type"]) == ("IVC", "W1", "replenishment_needed")
    assert (row["demand_mean"], row["demand_spread"], row["lead_time_days"]) == (4.5, 1.5, 2.0)
    assert (row["service_level"], row["quantity"], row["reorder_point"]) == (0.99, 50.0, None)
    assert row["decided_at"] == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


def test_master_data_lots_alerts_and_purchase_orders_fill_their_tables() -> None:
    def ev(nid: int, stream: str, kind: str, **body: Any) -> StoredEvent:
        return StoredEvent(nid, stream, 1, f"domain.aggregates:{kind}",
                           {"timestamp": "2026-03-02T08:00:00+00:00", **body})

    rows = process_batch([
        ev(1, "lot:GLV/L1", "Lot.Opened", key={"sku": "GLV", "lot": "L1", "expiry": None}),
        ev(2, "lot:GLV/L1", "Lot.ExpiryLearned", expiry="2027-01-31", event_id="e1"),
        ev(3, "lot:GLV/L1", "Lot.Changed", event={"type": "lot_changed", "sku": "GLV", "lot": "L1",
                                                  "change": "expiry_corrected", "new_expiry": "2027-02-28",
                                                  "occurred_at": "2026-03-02T07:00:00.000000Z"}),
        ev(4, "sp:GLV@W3", "StockPoint.AlertRaised",
           alert={"id": "al_1", "kind": "stockout", "severity": "critical", "sku": "GLV",
                  "location": "W3", "site": "H1", "lot": None, "raised_at": "2026-03-02T08:00:00.000000Z",
                  "status": "open", "event_id": "e9", "message": "out"}),
        ev(5, "sp:GLV@W3", "StockPoint.AlertChanged", alert_id="al_1", status="resolved",
           reason="condition cleared", by="system"),
        ev(6, "po:P1", "PurchaseOrder.Issued",
           event={"type": "po_issued", "po_id": "P1", "supplier": "S", "location": "W3",
                  "occurred_at": "2026-03-01T09:00:00.000000Z", "expected_at": "2026-03-04T09:00:00.000000Z",
                  "lines": [{"sku": "GLV", "quantity": 200.0, "unit": "each", "sent_quantity": 2,
                             "sent_unit": "box", "unit_price": 9.0}]}),
        ev(7, "refusals", "RefusalLog.Refused", event={"type": "po_issued", "po_id": "P2", "lines": "x"},
           errors=[{"code": "malformed"}]),
    ])
    assert [(r["expiry"], r["source"]) for r in rows["lot_expiries"]] == [
        (date(2027, 1, 31), "learned"), (date(2027, 2, 28), "corrected")]
    assert [(r["change"], r["status"], r["sku"]) for r in rows["alerts"]] == [
        ("raised", "open", "GLV"), ("resolved", "resolved", "GLV")]
    (line,) = rows["po_lines"]
    assert (line["po_id"], line["quantity"], line["unit_price"]) == ("P1", 200.0, pytest.approx(0.09))
    assert line["expected_at"] == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    assert len(rows["events_raw"]) == 7


def test_an_unknown_kind_gives_only_its_raw_row() -> None:
    future = StoredEvent(1, "contract:C1", 1, "domain.contracts:Contract.PriceChanged",
                         {"timestamp": "2026-03-02T08:00:00+00:00",
                          "event": {"type": "price_changed", "sku": "GLV", "unit_price": 0.08,
                                    "occurred_at": "2026-03-02T00:00:00.000000Z"}})
    rows = process(future)
    assert list(rows) == ["events_raw"]
    assert (rows["events_raw"][0]["type"], rows["events_raw"][0]["unit_price"]) == ("price_changed", 0.08)
