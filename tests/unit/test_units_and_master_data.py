"""Quantities are normalised to the base unit on the way in (by unit or by the packaging level
of the scanned GTIN), and master data re-registration takes effect from its occurred_at."""

from __future__ import annotations

from datetime import timedelta

import pytest
from unit_world import ADMIN, GTIN_BOX, GTIN_EACH, SKU, WARD, World

from domain.aggregates import stock_point_id


def stored_fact(w: World, event_id: str) -> dict:
    (event,) = [e.event for e in w.store.stream(stock_point_id(SKU, WARD))
                if getattr(e, "event", {}).get("event_id") == event_id and hasattr(e, "moves")]
    return event


def by_gtin(event: dict, gtin: str) -> dict:
    event = dict(event, gtin=gtin)
    del event["sku"]
    return event


def test_box_level_gtin_usage_is_normalised_to_base_units(world: World) -> None:
    w = world
    w.post(w.receipt(100))
    usage = by_gtin(w.usage(2), GTIN_BOX)
    assert w.one(usage).status == "accepted"
    assert w.lots() == {"L1": 80.0}
    fact = stored_fact(w, usage["event_id"])
    assert (fact["sku"], fact["quantity"], fact["unit"]) == (SKU, 20.0, "each")
    assert (fact["sent_quantity"], fact["sent_unit"]) == (2, "box")


def test_base_unit_gtin_counts_single_units(world: World) -> None:
    w = world
    w.post(w.receipt(100))
    assert w.one(by_gtin(w.usage(2), GTIN_EACH)).status == "accepted"
    assert w.lots() == {"L1": 98.0}


def test_gtin_given_in_its_8_12_or_13_digit_form_resolves_the_same_item(world: World) -> None:
    w = world
    w.post(w.item("MASK", gtin="5901234123457", units={}), by=ADMIN)  # registered as EAN-13
    w.post(w.receipt(10, sku="MASK"))
    assert w.one(by_gtin(w.usage(1, sku="MASK"), "05901234123457")).status == "accepted"  # GTIN-14 form
    assert w.lots("MASK", WARD) == {"L1": 9.0}


def test_explicit_unit_is_converted_with_the_items_factor(world: World) -> None:
    w = world
    outcome = w.one(w.receipt(3, unit="box"))
    assert outcome.status == "accepted"
    assert w.lots() == {"L1": 30.0}
    assert w.one(w.usage(1, unit="each")).status == "accepted"
    assert w.lots() == {"L1": 29.0}


def test_gs1_datamatrix_scan_of_a_box_becomes_the_right_usage(world: World) -> None:
    w = world
    w.post(w.receipt(50, lot="LB7", expiry="2027-05-31"))
    scan = {"event_id": "scan-1", "type": "usage", "occurred_at": w.ago(minutes=1), "site": "H1",
            "location": WARD, "quantity": 1,
            "barcode": "]d2" + "01" + GTIN_BOX + "17270500" + "10LB7" + "\x1d" + "21SER-1"}
    outcome = w.one(scan)
    assert outcome.status == "accepted" and outcome.flags == []
    assert w.lots() == {"LB7": 40.0}
    fact = stored_fact(w, "scan-1")
    assert (fact["gtin"], fact["lot"], fact["serial"], fact["expiry"], fact["quantity"], fact["unit"]) == (
        GTIN_BOX, "LB7", "SER-1", "2027-05-31", 10.0, "each")


def test_unreadable_barcode_is_refused_as_malformed(world: World) -> None:
    w = world
    outcome = w.one({"event_id": "scan-x", "type": "usage", "occurred_at": w.ago(minutes=1),
                     "site": "H1", "location": WARD, "quantity": 1, "barcode": "not a barcode"})
    assert outcome.status == "rejected"
    assert ("barcode", "malformed") in [(e["field"], e["code"]) for e in outcome.errors]


def test_packaging_gtin_without_a_unit_factor_is_refused_at_registration(world: World) -> None:
    outcome = world.one(world.item("BAD-LEVELS", gtins={"case": "4006381333931"}, units={"box": 10}),
                        by=ADMIN)
    assert outcome.status == "rejected"
    assert [(e["field"], e["code"]) for e in outcome.errors] == [("gtins.case", "unknown_unit")]


# -- effective-dated master data -------------------------------------------------------

@pytest.fixture
def repacked(world: World) -> World:
    """Boxes of GLOVE-M held 10 until two hours ago and 12 since."""
    w = world
    w.post(w.receipt(500, at=w.now - timedelta(hours=30)))
    change = w.item(units={"box": 12}, at=w.now - timedelta(hours=2))
    assert w.one(change, by=ADMIN).status == "accepted"
    return w


def test_units_changed_later_leave_earlier_events_on_the_old_factor(repacked: World) -> None:
    w = repacked
    before = w.one(w.usage(1, unit="box", at=w.now - timedelta(hours=3)))  # arrives late
    after = w.one(w.usage(1, unit="box", at=w.now - timedelta(minutes=5)))
    assert before.status == after.status == "accepted"
    assert w.lots() == {"L1": 500.0 - 10 - 12}


def test_box_gtin_scan_uses_the_factor_in_force_when_it_happened(repacked: World) -> None:
    w = repacked
    w.post(by_gtin(w.usage(1, at=w.now - timedelta(hours=5)), GTIN_BOX),
           by_gtin(w.usage(1, at=w.now - timedelta(minutes=1)), GTIN_BOX))
    assert w.lots() == {"L1": 500.0 - 10 - 12}


def test_re_registration_recorded_before_an_older_one_still_orders_by_occurred_at(world: World) -> None:
    w = world
    # recorded first: the change effective an hour ago; recorded second: one effective a day ago
    w.post(w.item(units={"box": 20}, at=w.now - timedelta(hours=1)), by=ADMIN)
    w.post(w.item(units={"box": 15}, at=w.now - timedelta(days=1)), by=ADMIN)
    w.post(w.receipt(1, unit="box", at=w.now - timedelta(hours=2)),   # 15
           w.receipt(1, unit="box", at=w.now - timedelta(minutes=5)),  # 20
           w.receipt(1, unit="box", at=w.now - timedelta(days=2)))     # 10 (the first version)
    assert w.lots() == {"L1": 45.0}


def test_unit_added_later_is_unknown_before_it_takes_effect(world: World) -> None:
    w = world
    w.post(w.item(units={"box": 10, "case": 100}, at=w.now - timedelta(hours=1)), by=ADMIN)
    early = w.one(w.receipt(1, unit="case", at=w.now - timedelta(hours=2)))
    late = w.one(w.receipt(1, unit="case", at=w.now - timedelta(minutes=5)))
    assert early.status == "rejected" and early.errors[0]["code"] == "unknown_unit"
    assert late.status == "accepted"
    assert w.lots() == {"L1": 100.0}


def test_location_time_zone_change_applies_from_its_occurred_at(world: World) -> None:
    w = world  # now = 2026-03-10T12:00Z; the lot expires on 9 March
    w.post(w.receipt(5, lot="OLD", expiry="2026-03-09", at=w.now - timedelta(days=2)))
    # From 08:00 UTC the ward is registered in Pago Pago (UTC-11), where 10 March only starts
    # at 11:00 UTC; before that it was in Paris, where 10 March started at 23:00 UTC on the 9th.
    w.post(w.location(WARD, timezone="Pacific/Pago_Pago", at=w.now - timedelta(hours=4),
                      restocked_from="CS"), by=ADMIN)
    under_paris = w.one(w.usage(1, lot="OLD", at=w.now - timedelta(hours=5)))  # 07:00Z
    under_pago = w.one(w.usage(1, lot="OLD", at=w.now - timedelta(hours=3)))   # 09:00Z = 22:00 on the 9th
    after_midnight = w.one(w.usage(1, lot="OLD", at=w.now - timedelta(minutes=59)))  # 11:01Z
    assert under_paris.status == "rejected" and under_paris.errors[0]["code"] == "expired_lot"
    assert under_pago.status == "accepted"
    assert after_midnight.status == "rejected" and after_midnight.errors[0]["code"] == "expired_lot"
    assert w.lots() == {"OLD": 4.0}


def test_every_stored_fact_records_its_principal(world: World) -> None:
    w = world
    w.post(w.receipt(5))
    w.post(w.recall(["L1"]), by=ADMIN)
    recorded_by = {(topic.rsplit(".", 1)[-1], state["recorded_by"]) for _, _, topic, state in w.stored()
                   if "recorded_by" in state}
    assert ("Recorded", "scanner-7") in recorded_by
    assert ("Issued", "admin-ana") in recorded_by
    assert ("Registered", "admin-ana") in recorded_by
