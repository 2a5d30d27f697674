"""Every refusal code through the processor: the event is answered ``rejected`` with a field
and a sentence, the refusal is stored (with the payload as sent), and no stock changes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from unit_world import (
    ADMIN,
    AUDITOR,
    BAD_GTIN,
    BUYER,
    NY_WARD,
    SCANNER,
    SKU,
    WARD,
    World,
    intake_alerts,
    iso,
)

from domain.aggregates import stock_point_id
from domain.intake import Principal


@pytest.fixture
def stocked(world: World) -> World:
    world.post(world.receipt(10, lot="L1", expiry="2027-06-30"))
    assert world.lots() == {"L1": 10.0}
    return world


def assert_refused_and_stored(w: World, event: Any, code: str, field: str | None = None,
                              by: Principal = SCANNER) -> dict[str, Any]:
    """Post ``event``; check the refusal, that it was stored and that stock did not move."""
    before_lots = {loc: w.lots(SKU, loc) for loc in (WARD, NY_WARD, "CS")}
    before_facts = len(w.facts())
    result = w.post(event, by=by)
    (outcome,) = result.outcomes
    assert outcome.status == "rejected", outcome
    assert code in [e["code"] for e in outcome.errors], outcome.errors
    if field is not None:
        assert {"field": field, "code": code} in [{"field": e["field"], "code": e["code"]}
                                                  for e in outcome.errors]
    assert all(e["message"] for e in outcome.errors)
    assert outcome.flags == []
    assert result.stored > 0
    assert {loc: w.lots(SKU, loc) for loc in (WARD, NY_WARD, "CS")} == before_lots
    assert len(w.facts()) == before_facts
    if isinstance(event, dict) and isinstance(event.get("event_id"), str):
        (record,) = w.stored_refusals(event["event_id"])
        assert [e["code"] for e in record["errors"]] == [e["code"] for e in outcome.errors]
        assert record["recorded_by"] == by.name
    return outcome.as_dict()


def test_non_object_event_is_refused_as_malformed_and_stored(stocked: World) -> None:
    for raw in (["not", "an", "object"], "usage", 42, None):
        assert_refused_and_stored(stocked, raw, "malformed")
    assert sum(t.endswith("RefusalLog.Refused") for _, _, t, _ in stocked.stored()) == 4


def test_unreadable_timestamp_and_unknown_type_are_refused_as_malformed(stocked: World) -> None:
    w = stocked
    assert_refused_and_stored(w, w.usage(at="10/03/2026 12:00"), "malformed", "occurred_at")
    assert_refused_and_stored(w, dict(w.usage(), type="teleport"), "malformed", "type")
    assert_refused_and_stored(w, w.usage(expiry="2027-13-01"), "malformed", "expiry")


def test_usage_without_quantity_is_refused_as_missing_field(stocked: World) -> None:
    w = stocked
    event = w.usage()
    del event["quantity"]
    assert_refused_and_stored(w, event, "missing_field", "quantity")
    no_item = w.usage()
    del no_item["sku"]
    assert_refused_and_stored(w, no_item, "missing_field", "sku")
    assert_refused_and_stored(w, {"type": "usage", "quantity": 1}, "missing_field", "event_id")


def test_unknown_sku_and_unknown_gtin_are_refused_as_unknown_item(stocked: World) -> None:
    w = stocked
    assert_refused_and_stored(w, w.usage(sku="NO-SUCH"), "unknown_item", "sku")
    by_gtin = w.usage(gtin="4006381333931")  # valid check digit, not registered
    del by_gtin["sku"]
    assert_refused_and_stored(w, by_gtin, "unknown_item", "gtin")


def test_gtin_of_another_item_than_the_sku_is_refused_as_unknown_item(stocked: World) -> None:
    w = stocked
    w.post(w.item("MASK", gtin="4006381333931"), by=ADMIN)
    assert_refused_and_stored(w, w.usage(gtin="4006381333931"), "unknown_item", "gtin")


def test_unknown_location_is_refused(stocked: World) -> None:
    w = stocked
    assert_refused_and_stored(w, w.usage(location="NOWHERE"), "unknown_location", "location")


def test_location_at_another_site_is_refused_as_unknown_location(stocked: World) -> None:
    w = stocked
    assert_refused_and_stored(w, w.usage(site="H2"), "unknown_location", "site")


def test_unit_without_conversion_is_refused_as_unknown_unit(stocked: World) -> None:
    w = stocked
    assert_refused_and_stored(w, w.usage(unit="pallet"), "unknown_unit", "unit")


@pytest.mark.parametrize("quantity", [0, -1, -0.5])
@pytest.mark.parametrize("etype", ["usage", "receipt", "return", "waste"])
def test_zero_or_negative_quantity_is_refused_as_invalid_quantity(
        stocked: World, etype: str, quantity: float) -> None:
    assert_refused_and_stored(stocked, stocked.stock(etype, quantity), "invalid_quantity", "quantity")


def test_stock_count_of_zero_is_accepted_and_empties_the_lot(stocked: World) -> None:
    w = stocked
    outcome = w.one(w.count(0, lot="L1"))
    assert outcome.status == "accepted"
    assert w.lots() == {}
    assert w.view()["on_hand"] == 0.0


def test_negative_stock_count_is_refused_as_invalid_quantity(stocked: World) -> None:
    assert_refused_and_stored(stocked, stocked.count(-1), "invalid_quantity", "quantity")


def test_timestamp_more_than_ten_minutes_ahead_is_refused_as_future_timestamp(stocked: World) -> None:
    w = stocked
    ahead = w.usage(at=w.now + timedelta(minutes=10, seconds=1))
    assert_refused_and_stored(w, ahead, "future_timestamp", "occurred_at")
    just_in = w.one(w.usage(at=w.now + timedelta(minutes=10)))
    assert just_in.status == "accepted"


def test_future_timestamp_is_judged_against_the_injected_clock(stocked: World) -> None:
    w = stocked
    event = w.usage(at=w.now + timedelta(hours=1))
    assert w.one(event).status == "rejected"
    w.now += timedelta(hours=2)  # the clock moves; a new event at that instant is fine
    assert w.one(w.usage(at=iso(w.now - timedelta(hours=1)))).status == "accepted"


def test_gtin_with_bad_check_digit_is_refused_as_invalid_gtin(stocked: World) -> None:
    w = stocked
    event = w.usage(gtin=BAD_GTIN)
    del event["sku"]
    assert_refused_and_stored(w, event, "invalid_gtin", "gtin")


def test_scanned_barcode_with_bad_check_digit_is_refused_as_invalid_gtin(stocked: World) -> None:
    w = stocked
    event = {"event_id": "scan-bad", "type": "usage", "occurred_at": w.ago(minutes=1), "site": "H1",
             "location": WARD, "quantity": 1, "barcode": "01" + BAD_GTIN + "10L1"}
    assert_refused_and_stored(w, event, "invalid_gtin", "gtin")


def test_item_registration_with_bad_gtin_is_refused_as_invalid_gtin(world: World) -> None:
    assert_refused_and_stored(world, world.item("X", gtin=BAD_GTIN), "invalid_gtin", "gtin", by=ADMIN)
    assert_refused_and_stored(world, world.item("Y", gtins={"box": BAD_GTIN}), "invalid_gtin",
                              "gtins.box", by=ADMIN)
    assert world.p.ledger.catalog.item("X", world.now) is None


def test_event_id_reused_with_different_content_is_refused(stocked: World) -> None:
    w = stocked
    first = w.usage(2, lot="L1")
    assert w.one(first).status == "accepted"
    reused = dict(first, quantity=3)
    outcome = w.one(reused)
    assert outcome.status == "rejected"
    assert [(e["field"], e["code"]) for e in outcome.errors] == [("event_id", "event_id_reused")]
    assert w.lots() == {"L1": 8.0}
    assert len(w.stored_refusals(first["event_id"])) == 1


def test_scanner_posting_item_registered_is_refused_as_forbidden_type(world: World) -> None:
    outcome = assert_refused_and_stored(world, world.item("SNEAKY"), "forbidden_type", "type",
                                        by=SCANNER)
    assert outcome["errors"][0]["code"] == "forbidden_type"
    assert world.p.ledger.catalog.item("SNEAKY", world.now) is None


@pytest.mark.parametrize("build", ["usage", "receipt", "count", "item", "recall"])
@pytest.mark.parametrize("who", [AUDITOR, BUYER], ids=["auditor", "buyer"])
def test_auditor_or_buyer_posting_anything_is_refused_as_forbidden_type(
        stocked: World, build: str, who: Principal) -> None:
    w = stocked
    event = {"usage": lambda: w.usage(), "receipt": lambda: w.receipt(), "count": lambda: w.count(3),
             "item": lambda: w.item("NEW"), "recall": lambda: w.recall(["L1"])}[build]()
    assert_refused_and_stored(w, event, "forbidden_type", "type", by=who)
    assert w.lots() == {"L1": 10.0}
    assert not w.p.ledger.is_recalled(SKU, "L1")


def test_scanner_posting_a_recall_is_refused_and_the_lot_stays_usable(stocked: World) -> None:
    w = stocked
    assert_refused_and_stored(w, w.recall(["L1"]), "forbidden_type", "type", by=SCANNER)
    assert w.one(w.usage(1)).status == "accepted"


def test_expired_lot_scan_is_refused_and_alerts(stocked: World) -> None:
    w = stocked
    w.post(w.receipt(5, lot="OLD", expiry="2026-03-01"))
    scan = w.usage(1, lot="OLD")
    before = set(a["id"] for a in w.p.alerts())
    outcome = assert_refused_and_stored(w, scan, "expired_lot", "lot")
    assert "2026-03-01" in outcome["errors"][0]["message"]
    new = [a for a in intake_alerts(w.p.alerts()) if a["id"] not in before]
    assert [(a["kind"], a["severity"], a["lot"], a["event_id"]) for a in new] == [
        ("expired_lot_scanned", "critical", "OLD", scan["event_id"])]
    assert w.lots() == {"L1": 10.0, "OLD": 5.0}
    assert w.view()["quarantined"] == 5.0 and w.view()["on_hand"] == 10.0
    # the refusal is on the stock point's own stream, so its audit trail shows it
    refused = [s for sid, _, t, s in w.stored() if sid == stock_point_id(SKU, WARD) and t.endswith("Refused")]
    assert [r["event"]["event_id"] for r in refused] == [scan["event_id"]]


def test_recalled_lot_scan_is_refused_and_alerts(stocked: World) -> None:
    w = stocked
    assert w.one(w.recall(["L1"], reference="RC-9"), by=ADMIN).status == "accepted"
    scan = w.usage(1, lot="L1")
    result = w.post(scan)
    (outcome,) = result.outcomes
    assert outcome.status == "rejected"
    assert [(e["field"], e["code"]) for e in outcome.errors] == [("lot", "recalled_lot")]
    assert [(a["kind"], a["severity"]) for a in intake_alerts(result.alerts)] == [
        ("recalled_lot_scanned", "critical")]
    assert w.stored_refusals(scan["event_id"])
    assert w.lots() == {"L1": 10.0}
    view = w.view()
    assert view["lots"][0]["status"] == "recalled" and view["quarantined"] == 10.0 and view["on_hand"] == 0


def test_recalled_serial_scan_is_refused(stocked: World) -> None:
    w = stocked
    recall = w.recall([], reference="RC-S")
    del recall["lots"]
    recall["serials"] = ["SN-1"]
    assert w.one(recall, by=ADMIN).status == "accepted"
    bad = w.one(w.usage(1, lot="L1", serial="SN-1"))
    ok = w.one(w.usage(1, lot="L1", serial="SN-2"))
    assert bad.status == "rejected" and bad.errors[0]["code"] == "recalled_lot"
    assert ok.status == "accepted"


def test_closed_recall_makes_the_lot_usable_again(stocked: World) -> None:
    w = stocked
    w.post(w.recall(["L1"], reference="RC-2"), by=ADMIN)
    assert w.one(w.usage(1)).errors[0]["code"] == "recalled_lot"
    closed = {"event_id": "close-1", "type": "recall_closed", "occurred_at": w.ago(minutes=1),
              "reference": "RC-2"}
    assert w.one(closed, by=ADMIN).status == "accepted"
    assert w.one(w.usage(1)).status == "accepted"
    assert w.lots() == {"L1": 9.0}


def test_closing_an_unknown_recall_is_refused_and_stored(world: World) -> None:
    closed = {"event_id": "close-x", "type": "recall_closed", "occurred_at": world.ago(minutes=1),
              "reference": "NOPE"}
    assert_refused_and_stored(world, closed, "malformed", "reference", by=ADMIN)


def test_each_event_of_a_batch_gets_its_own_outcome_in_order(stocked: World) -> None:
    w = stocked
    events = [w.usage(1), w.usage(0), w.usage(1, sku="NOPE"), w.usage(2)]
    result = w.post(*events)
    assert [(o.event_id, o.status) for o in result.outcomes] == [
        (events[0]["event_id"], "accepted"), (events[1]["event_id"], "rejected"),
        (events[2]["event_id"], "rejected"), (events[3]["event_id"], "accepted")]
    assert w.lots() == {"L1": 7.0}


@pytest.mark.parametrize(("quantity", "unit"), [(1e308, "box"), (2e9, None), (2e8, "box")])
def test_implausibly_large_quantity_is_refused_as_invalid_quantity(
        stocked: World, quantity: float, unit: str | None) -> None:
    w = stocked
    event = w.receipt(quantity, unit=unit)
    assert_refused_and_stored(w, event, "invalid_quantity", "quantity")
    # and the store still replays (an infinite balance could not be stored as JSON)
    digest = w.p.state_digest()
    w.p.rebuild()
    assert w.p.state_digest() == digest


def test_largest_plausible_quantity_is_accepted_and_replays(stocked: World) -> None:
    w = stocked
    assert w.one(w.receipt(1e8, unit="box")).status == "accepted"
    assert w.lots() == {"L1": 1e9 + 10}
    w.p.rebuild()
    assert w.lots() == {"L1": 1e9 + 10}
