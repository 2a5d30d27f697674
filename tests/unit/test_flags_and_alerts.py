"""Accepted but flagged: every flag is in the event's result and on the stock point, and
raises an alert (``data_quality`` for bookkeeping, critical kinds for expired or recalled use)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from unit_world import ADMIN, SKU, STORE, WARD, World, intake_alerts

from domain import codes as c
from streams.processor import Processor


@pytest.fixture
def stocked(world: World) -> World:
    world.post(world.receipt(10, lot="L1", expiry="2027-06-30", at=world.now - timedelta(minutes=50)))
    return world


def data_quality_alert_for(w: World, event_id: str, flag: str, location: str = WARD) -> dict:
    found = [a for a in w.p.alerts(kind="data_quality", location=location)
             if a["event_id"] == event_id and a["flag"] == flag]
    assert len(found) == 1, (flag, w.p.alerts())
    assert found[0]["severity"] == "warning" and found[0]["status"] == "open"
    return found[0]


def test_usage_of_a_lot_never_received_is_accepted_flagged_and_alerts(stocked: World) -> None:
    w = stocked
    event = w.usage(2, lot="STRAY")
    result = w.post(event)
    (outcome,) = result.outcomes
    assert outcome.status == "accepted"
    assert c.LOT_NOT_RECEIVED in outcome.flags
    assert c.LOT_NOT_RECEIVED in w.view()["flags"]
    assert "data_quality" in [a["kind"] for a in result.alerts]
    data_quality_alert_for(w, event["event_id"], c.LOT_NOT_RECEIVED)
    # the ward's L1 is untouched: the stray lot came from elsewhere (the central store, which
    # restocks the ward and now owes it: flagged there too)
    assert w.lots()["L1"] == 10.0
    store_alert = data_quality_alert_for(w, event["event_id"], c.LOT_NOT_RECEIVED, location=STORE)
    assert store_alert["lot"] == "STRAY"
    data_quality_alert_for(w, event["event_id"], c.NEGATIVE_STOCK, location=STORE)


def test_lot_not_received_records_an_implied_transfer_from_the_restocking_location(stocked: World) -> None:
    w = stocked
    w.post(w.receipt(50, lot="STRAY", location=STORE))
    assert w.lots(SKU, STORE) == {"STRAY": 50.0}
    outcome = w.one(w.usage(3, lot="STRAY"))
    assert c.LOT_NOT_RECEIVED in outcome.flags
    assert w.lots(SKU, STORE) == {"STRAY": 47.0}  # the central store gave it out
    assert "STRAY" not in w.lots(SKU, WARD)  # in and straight out at the ward
    implied = [e for e in w.store.stream(f"sp:{SKU}@{STORE}") if getattr(e, "event", {}).get("type") == "implied_transfer"]
    assert len(implied) == 1 and implied[0].event["to_location"] == WARD


def test_usage_beyond_on_hand_is_accepted_with_negative_stock_until_a_count(stocked: World) -> None:
    w = stocked
    event = w.usage(12, lot="L1")
    outcome = w.one(event)
    assert outcome.status == "accepted" and c.NEGATIVE_STOCK in outcome.flags
    assert w.lots() == {"L1": -2.0}
    assert c.NEGATIVE_STOCK in w.view()["flags"]
    data_quality_alert_for(w, event["event_id"], c.NEGATIVE_STOCK)
    counted = w.one(w.count(4, lot="L1", at=w.now - timedelta(minutes=1)))
    assert counted.status == "accepted" and c.NEGATIVE_STOCK not in counted.flags
    assert w.lots() == {"L1": 4.0}
    assert c.NEGATIVE_STOCK not in w.view()["flags"]


def test_event_recorded_more_than_an_hour_after_it_happened_is_flagged_late(stocked: World) -> None:
    w = stocked
    exactly = w.usage(1, at=w.now - timedelta(hours=1))
    late = w.usage(1, at=w.now - timedelta(hours=1, seconds=1))
    o_exactly, o_late = w.post(exactly, late).outcomes
    assert c.LATE not in o_exactly.flags
    assert o_late.status == "accepted" and c.LATE in o_late.flags
    assert c.LATE in w.view()["flags"]
    data_quality_alert_for(w, late["event_id"], c.LATE)
    assert w.lots() == {"L1": 8.0}


def test_late_threshold_is_configurable() -> None:
    w = World(late_after=timedelta(minutes=5))
    outcome = w.one(w.receipt(1, at=w.now - timedelta(minutes=6)))
    assert c.LATE in outcome.flags
    assert c.LATE not in w.one(w.receipt(1, at=w.now - timedelta(minutes=4))).flags


def test_event_older_than_the_stock_points_latest_is_flagged_out_of_order(stocked: World) -> None:
    w = stocked
    newer = w.usage(1, at=w.now - timedelta(minutes=5))
    older = w.usage(1, at=w.now - timedelta(minutes=10))
    o_newer, o_older = w.post(newer, older).outcomes
    assert c.OUT_OF_ORDER not in o_newer.flags
    assert o_older.status == "accepted" and c.OUT_OF_ORDER in o_older.flags
    assert c.OUT_OF_ORDER in w.view()["flags"]
    data_quality_alert_for(w, older["event_id"], c.OUT_OF_ORDER)
    assert w.lots() == {"L1": 8.0}


def test_out_of_order_is_per_stock_point(stocked: World) -> None:
    w = stocked
    w.post(w.receipt(5, lot="L1", location=STORE, at=w.now - timedelta(minutes=1)))
    # older than the store's latest event, but newer than anything at the ward
    outcome = w.one(w.usage(1, at=w.now - timedelta(minutes=20)))
    assert c.OUT_OF_ORDER not in outcome.flags


def test_scanned_expiry_differing_from_the_recorded_one_is_flagged_and_recorded_one_wins(stocked: World) -> None:
    w = stocked
    event = w.usage(1, lot="L1", expiry="2028-01-31")
    outcome = w.one(event)
    assert outcome.status == "accepted" and c.EXPIRY_MISMATCH in outcome.flags
    assert c.EXPIRY_MISMATCH in w.view()["flags"]
    data_quality_alert_for(w, event["event_id"], c.EXPIRY_MISMATCH)
    assert w.view()["lots"][0]["expiry"] == "2027-06-30"


def test_recorded_expiry_wins_even_when_the_scan_claims_the_lot_is_still_good(stocked: World) -> None:
    w = stocked
    w.post(w.receipt(5, lot="OLD", expiry="2026-03-01"))
    outcome = w.one(w.usage(1, lot="OLD", expiry="2030-01-01"))
    assert outcome.status == "rejected" and outcome.errors[0]["code"] == "expired_lot"


def test_case_usage_of_an_expired_lot_is_kept_flagged_and_raises_critical_alert(stocked: World) -> None:
    w = stocked
    w.post(w.receipt(5, lot="OLD", expiry="2026-03-01"))
    result = w.post(w.usage(1, lot="OLD", case_id="OR-2026-17"))
    (outcome,) = result.outcomes
    assert outcome.status == "accepted" and c.EXPIRED_LOT_USED in outcome.flags
    assert w.lots()["OLD"] == 4.0
    assert c.EXPIRED_LOT_USED in w.view()["flags"]
    assert [(a["kind"], a["severity"], a["lot"]) for a in intake_alerts(result.alerts)] == [
        ("expired_lot_used", "critical", "OLD")]


def test_recalled_lot_scan_is_refused_while_case_usage_of_it_is_kept_flagged_and_alerts(stocked: World) -> None:
    w = stocked
    w.post(w.recall(["L1"]), by=ADMIN)
    scan = w.post(w.usage(1, lot="L1"))
    case = w.post(w.usage(1, lot="L1", case_id="OR-2026-18"))
    assert scan.outcomes[0].status == "rejected"
    assert [a["kind"] for a in intake_alerts(scan.alerts)] == ["recalled_lot_scanned"]
    assert case.outcomes[0].status == "accepted"
    assert c.RECALLED_LOT_USED in case.outcomes[0].flags
    assert [(a["kind"], a["severity"]) for a in intake_alerts(case.alerts)] == [("recalled_lot_used", "critical")]
    assert w.lots() == {"L1": 9.0}
    assert c.RECALLED_LOT_USED in w.view()["flags"]


def test_usage_that_happened_before_the_recall_was_issued_is_kept_and_flagged(stocked: World) -> None:
    w = stocked
    w.post(w.recall(["L1"], at=w.now - timedelta(minutes=10)), by=ADMIN)
    before = w.one(w.usage(1, lot="L1", at=w.now - timedelta(minutes=20)))
    after = w.one(w.usage(1, lot="L1", at=w.now - timedelta(minutes=5)))
    assert before.status == "accepted" and c.RECALLED_LOT_USED in before.flags
    assert after.status == "rejected" and after.errors[0]["code"] == "recalled_lot"


def test_case_usage_of_a_lot_both_expired_and_recalled_carries_both_flags(stocked: World) -> None:
    w = stocked
    w.post(w.receipt(5, lot="BAD", expiry="2026-01-31"))
    w.post(w.recall(["BAD"]), by=ADMIN)
    result = w.post(w.usage(1, lot="BAD", case_id="OR-1"))
    assert set(result.outcomes[0].flags) >= {c.EXPIRED_LOT_USED, c.RECALLED_LOT_USED}
    assert sorted(a["kind"] for a in intake_alerts(result.alerts)) == ["expired_lot_used", "recalled_lot_used"]


def test_every_flag_is_a_contract_word_and_only_bookkeeping_flags_raise_data_quality() -> None:
    assert set(c.FLAGS) == c.BOOKKEEPING_FLAGS | c.CRITICAL_FLAGS
    assert not (c.BOOKKEEPING_FLAGS & c.CRITICAL_FLAGS)
    assert {c.ALERT_SEVERITY[k] for k in (c.ALERT_EXPIRED_LOT_USED, c.ALERT_RECALLED_LOT_USED,
                                          c.ALERT_EXPIRED_LOT_SCANNED, c.ALERT_RECALLED_LOT_SCANNED)} == {"critical"}


def test_one_event_with_two_bookkeeping_flags_raises_two_distinct_alerts(stocked: World) -> None:
    w = stocked
    w.post(w.usage(1, at=w.now - timedelta(minutes=5)))
    event = w.usage(1, lot="L1", at=w.now - timedelta(hours=2))  # late and out of order
    result = w.post(event)
    assert {c.LATE, c.OUT_OF_ORDER} <= set(result.outcomes[0].flags)
    raised = intake_alerts(result.alerts)
    assert len(raised) == 2
    assert len({a["id"] for a in raised}) == 2
    mine = [a for a in w.p.alerts() if a["event_id"] == event["event_id"]]
    assert sorted(a["flag"] for a in mine) == ["late", "out_of_order"]
    assert sorted(a["message"].split(" on ")[0] for a in mine) == ["late", "out of order"]
    assert {a["id"] for a in raised} <= set(w.view()["open_alerts"])


def test_data_quality_alert_names_the_events_lot_not_the_flag(stocked: World) -> None:
    w = stocked
    result = w.post(w.usage(12, lot="L1"))
    (alert,) = intake_alerts(result.alerts)
    assert alert["kind"] == "data_quality" and alert["lot"] == "L1"


def test_an_open_data_quality_alert_is_not_raised_again_for_the_same_flag(stocked: World) -> None:
    w = stocked
    first = w.post(w.usage(11))
    second = w.post(w.usage(1))
    assert c.NEGATIVE_STOCK in second.outcomes[0].flags
    assert len(intake_alerts(first.alerts)) == 1 and intake_alerts(second.alerts) == []
    (alert,) = w.p.alerts(kind="data_quality")
    # counted on the open alert, from the flagged fact itself (no extra stored event), the
    # same after a replay
    assert alert["count"] == 2 and alert["last_event_id"] == second.outcomes[0].event_id
    assert not [t for _, _, t, _ in w.stored() if t.endswith("AlertRepeated")]
    again = Processor(w.store, w.p.case_id_key, clock=lambda: w.now)
    assert again.alerts(kind="data_quality") == w.p.alerts(kind="data_quality")
    assert [e["change"] for e in again.ledger.alert_feed if e["id"] == alert["id"]] == ["raised", "repeated"]


def test_flags_of_a_transfer_are_reported_for_both_sides(stocked: World) -> None:
    w = stocked
    transfer = {"event_id": "t-1", "type": "transfer", "occurred_at": w.ago(minutes=1), "site": "H1",
                "from_location": STORE, "to_location": WARD, "sku": SKU, "lot": "L1", "quantity": 4}
    outcome = w.one(transfer)
    assert outcome.status == "accepted"
    assert set(outcome.flags) == {c.LOT_NOT_RECEIVED, c.NEGATIVE_STOCK}  # the store never had L1
    assert w.lots(SKU, STORE) == {"L1": -4.0}
    assert w.lots(SKU, WARD) == {"L1": 14.0}
    assert {c.LOT_NOT_RECEIVED, c.NEGATIVE_STOCK} <= set(w.view(SKU, STORE)["flags"])


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_case_id_is_no_case_so_a_recalled_lot_scan_is_still_refused(stocked: World, blank: str) -> None:
    w = stocked
    w.post(w.recall(["L1"]), by=ADMIN)
    w.post(w.receipt(5, lot="OLD", expiry="2026-01-01"))
    recalled = w.one(w.usage(1, lot="L1", case_id=blank))
    expired = w.one(w.usage(1, lot="OLD", case_id=blank))
    assert recalled.status == "rejected" and recalled.errors[0]["code"] == "recalled_lot"
    assert expired.status == "rejected" and expired.errors[0]["code"] == "expired_lot"
    assert w.lots() == {"L1": 10.0, "OLD": 5.0}


def test_repeated_refused_scans_of_one_recalled_lot_are_one_alert_with_a_count(stocked: World, tmp_path: Any) -> None:
    """Issue 13, item 6: ten refused scans of one recalled lot are one open alert with count
    10 and first/last seen; each repeat is a stored event (a replay gives the same alert) on
    the alert feed as ``change: "repeated"``; a case's use of the lot is still its own alert;
    once resolved, the next scan raises a new alert."""
    w = stocked
    w.post(w.recall(["L1"]), by=ADMIN)
    firsts = []
    for _ in range(10):
        w.now += timedelta(minutes=1)
        result = w.post(w.usage(1, lot="L1", at=w.now - timedelta(minutes=30)))
        assert result.outcomes[0].status == "rejected"
        firsts.append([a["kind"] for a in intake_alerts(result.alerts)])
    assert firsts == [["recalled_lot_scanned"]] + [[]] * 9
    (alert,) = w.p.alerts(kind="recalled_lot_scanned")
    assert alert["count"] == 10 and alert["status"] == "open" and alert["lot"] == "L1"
    assert alert["first_seen"] < alert["last_seen"]
    feed = [e for e in w.p.ledger.alert_feed if e["id"] == alert["id"]]
    assert [e["change"] for e in feed] == ["raised"] + ["repeated"] * 9
    assert [e["count"] for e in feed] == list(range(1, 11))
    repeats = [s for _, _, t, s in w.stored() if t.endswith("StockPoint.AlertRepeated")]
    assert len(repeats) == 9 and {r["alert_id"] for r in repeats} == {alert["id"]}
    again = Processor(w.store, w.p.case_id_key, clock=lambda: w.now)
    assert again.alerts(kind="recalled_lot_scanned") == w.p.alerts(kind="recalled_lot_scanned")
    assert again.state_digest() == w.p.state_digest()
    # a patient's case: its own alert, every time
    for case in ("OR-1", "OR-2"):
        w.post(w.usage(1, lot="L1", case_id=case))
    assert len(w.p.alerts(kind="recalled_lot_used")) == 2
    # resolved: the next refused scan is a new alert
    w.p.change_alert(alert["id"], "resolved", "lot quarantined", ADMIN)
    result = w.post(w.usage(1, lot="L1"))
    assert [a["kind"] for a in intake_alerts(result.alerts)] == ["recalled_lot_scanned"]
    assert len(w.p.alerts(kind="recalled_lot_scanned", status="open")) == 1


def test_a_repeat_is_relayed_to_the_alerts_topic_as_a_repeated_change(stocked: World) -> None:
    """The distributed profile's relay publishes each stored repeat to ``alerts`` with the
    alert's id and ``change: "repeated"``, keyed by its stock point like the raise."""
    import orjson

    from streams.relay import REPEATED, relayed_message
    from streams.topics import Topics
    w = stocked
    w.post(w.recall(["L1"]), by=ADMIN)
    for _ in range(2):
        w.now += timedelta(minutes=1)
        w.post(w.usage(1, lot="L1"))
    (alert,) = w.p.alerts(kind="recalled_lot_scanned")
    topics = Topics()
    raised = [n for n in w.store.notifications() if n.topic.endswith("StockPoint.AlertRaised")
              and orjson.loads(n.state)["alert"]["id"] == alert["id"]]
    (repeat,) = [n for n in w.store.notifications() if n.topic == REPEATED]
    topic, key, value = relayed_message(repeat, topics)
    assert topic == topics.alerts and key == relayed_message(raised[0], topics)[1]
    body = orjson.loads(value)
    assert (body["alert_id"], body["change"], body["kind"]) == (alert["id"], "repeated", "StockPoint.AlertRepeated")
