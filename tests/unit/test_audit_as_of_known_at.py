"""The audit view of a stock point: ``as_of`` (an instant of occurred_at) and ``known_at`` (an
instant of recording) give the earlier states and the events up to them."""

from __future__ import annotations

from datetime import timedelta

from unit_world import ADMIN, SKU, WARD, World


def lots_of(audit: dict | None) -> dict:
    assert audit is not None
    return {row["lot"]: row["quantity"] for row in audit["state"]["lots"]}


def event_ids(audit: dict) -> list[str]:
    return [row["event"]["event_id"] for row in audit["events"] if isinstance(row.get("event"), dict)]


def test_as_of_gives_the_state_at_an_instant_of_occurred_at(world: World) -> None:
    w = world
    t1, t2, t3 = (w.now - timedelta(minutes=m) for m in (50, 40, 30))
    r, u1, u2 = w.receipt(10, at=t1), w.usage(3, at=t2), w.usage(2, at=t3)
    w.post(r, u1, u2)
    assert lots_of(w.p.audit_stock_point(SKU, WARD)) == {"L1": 5.0}
    mid = w.p.audit_stock_point(SKU, WARD, as_of=t2 + timedelta(minutes=1))
    assert lots_of(mid) == {"L1": 7.0}
    assert event_ids(mid) == [r["event_id"], u1["event_id"]]
    assert mid["state"]["on_hand"] == 7.0
    assert lots_of(w.p.audit_stock_point(SKU, WARD, as_of=t2)) == {"L1": 7.0}  # inclusive
    assert lots_of(w.p.audit_stock_point(SKU, WARD, as_of=t1 - timedelta(seconds=1))) == {}


def test_known_at_limits_to_what_had_been_recorded_then(world: World) -> None:
    w = world
    recorded_1 = w.now
    w.post(w.receipt(10, at=w.now - timedelta(minutes=50)))
    w.now += timedelta(hours=1)
    recorded_2 = w.now
    late = w.usage(4, at=recorded_1 - timedelta(minutes=40))  # happened long ago, reported now
    assert "late" in w.one(late).flags
    full = w.p.audit_stock_point(SKU, WARD)
    then = w.p.audit_stock_point(SKU, WARD, known_at=recorded_1)
    assert lots_of(full) == {"L1": 6.0}
    assert lots_of(then) == {"L1": 10.0}
    assert late["event_id"] in event_ids(full) and late["event_id"] not in event_ids(then)
    assert lots_of(w.p.audit_stock_point(SKU, WARD, known_at=recorded_2)) == {"L1": 6.0}
    assert lots_of(w.p.audit_stock_point(SKU, WARD, known_at=recorded_1 - timedelta(seconds=1))) == {}


def test_as_of_and_known_at_combine(world: World) -> None:
    w = world
    t0 = w.now
    w.post(w.receipt(10, at=t0 - timedelta(minutes=50)), w.usage(1, at=t0 - timedelta(minutes=10)))
    w.now += timedelta(hours=2)
    w.post(w.usage(2, at=t0 - timedelta(minutes=30)))  # late; between the two
    as_of = t0 - timedelta(minutes=20)
    assert lots_of(w.p.audit_stock_point(SKU, WARD, as_of=as_of)) == {"L1": 8.0}
    assert lots_of(w.p.audit_stock_point(SKU, WARD, as_of=as_of, known_at=t0)) == {"L1": 10.0}
    assert lots_of(w.p.audit_stock_point(SKU, WARD, known_at=t0)) == {"L1": 9.0}


def test_audit_shows_refusals_and_alerts_in_the_history(world: World) -> None:
    w = world
    w.post(w.receipt(5, lot="OLD", expiry="2026-01-01"))
    scan = w.usage(1, lot="OLD")
    w.post(scan)
    audit = w.p.audit_stock_point(SKU, WARD)
    kinds = [row["kind"] for row in audit["events"]]
    assert kinds.count("Refused") == 1 and kinds.count("AlertRaised") == 1
    refused = next(row for row in audit["events"] if row["kind"] == "Refused")
    assert refused["event"]["event_id"] == scan["event_id"] and refused["errors"][0]["code"] == "expired_lot"
    assert all(len(row["hash"]) == 64 for row in audit["events"])


def test_lot_status_as_of_before_a_recall_is_ok_and_after_is_recalled(world: World) -> None:
    w = world
    w.post(w.receipt(10, at=w.now - timedelta(minutes=50)))
    recall_at = w.now - timedelta(minutes=20)
    w.post(w.recall(["L1"], at=recall_at), by=ADMIN)
    before = w.p.audit_stock_point(SKU, WARD, as_of=recall_at - timedelta(minutes=1))
    after = w.p.audit_stock_point(SKU, WARD, as_of=recall_at + timedelta(minutes=1))
    assert before["state"]["lots"][0]["status"] == "ok" and before["state"]["on_hand"] == 10.0
    assert after["state"]["lots"][0]["status"] == "recalled" and after["state"]["quarantined"] == 10.0
    assert after["state"]["on_hand"] == 0.0


def test_lot_status_known_at_before_the_recall_was_recorded_is_ok(world: World) -> None:
    w = world
    w.post(w.receipt(10, at=w.now - timedelta(minutes=50)))
    known = w.now
    w.now += timedelta(hours=1)
    w.post(w.recall(["L1"], at=known - timedelta(minutes=20)), by=ADMIN)  # effective earlier
    assert w.p.audit_stock_point(SKU, WARD, known_at=known)["state"]["lots"][0]["status"] == "ok"
    assert w.p.audit_stock_point(SKU, WARD)["state"]["lots"][0]["status"] == "recalled"


def test_lot_status_as_of_follows_expiry_and_holds(world: World) -> None:
    w = world
    w.post(w.receipt(10, lot="X", expiry="2026-03-09", at=w.now - timedelta(days=2)))
    hold = {"event_id": "hold-1", "type": "lot_changed", "occurred_at": w.ago(days=1), "sku": SKU,
            "lot": "X", "change": "hold", "reason": "inspection"}
    assert w.one(hold, by=ADMIN).status == "accepted"
    statuses = {label: w.p.audit_stock_point(SKU, WARD, as_of=w.now - delta)["state"]["lots"][0]["status"]
                for label, delta in (("before hold", timedelta(days=1, hours=1)),
                                     ("held", timedelta(hours=23)))}
    assert statuses == {"before hold": "ok", "held": "on_hold"}
    assert w.view()["lots"][0]["status"] == "on_hold"


def test_lot_status_as_of_is_ok_on_expiry_day_and_expired_after(world: World) -> None:
    w = world  # Paris, winter (UTC+1): 10 March starts at 23:00 UTC on the 9th
    w.post(w.receipt(10, lot="Y", expiry="2026-03-09", at=w.now - timedelta(days=2)))
    on_day = w.p.audit_stock_point(SKU, WARD, as_of=w.now - timedelta(hours=13, minutes=1))  # 22:59Z
    next_day = w.p.audit_stock_point(SKU, WARD, as_of=w.now - timedelta(hours=13))  # 23:00Z
    assert on_day["state"]["lots"][0]["status"] == "ok" and on_day["state"]["on_hand"] == 10.0
    assert next_day["state"]["lots"][0]["status"] == "expired"
    assert next_day["state"]["on_hand"] == 0.0 and next_day["state"]["quarantined"] == 10.0
    assert w.view()["lots"][0]["status"] == "expired"


def test_unknown_stock_point_has_no_audit(world: World) -> None:
    assert world.p.audit_stock_point(SKU, "NOWHERE") is None
    assert world.p.stock_point_view(SKU, "NOWHERE") is None


def test_as_of_places_a_refusal_sent_with_an_offset_at_its_instant(world: World) -> None:
    w = world  # now 12:00Z
    w.post(w.receipt(10, lot="OLD", expiry="2026-01-31", at=w.now - timedelta(minutes=50)))
    refused = w.usage(1, lot="OLD", at="2026-03-10T12:55:00+01:00")  # 11:55Z, an expired lot
    assert w.one(refused).status == "rejected"
    at_1156 = w.p.audit_stock_point(SKU, WARD, as_of=w.now - timedelta(minutes=4))
    at_1154 = w.p.audit_stock_point(SKU, WARD, as_of=w.now - timedelta(minutes=6))
    assert refused["event_id"] in event_ids(at_1156)
    assert refused["event_id"] not in event_ids(at_1154)


def test_corrected_expiry_applies_from_the_correction(world: World) -> None:
    w = world
    w.post(w.receipt(10, lot="Z", expiry="2027-01-31", at=w.now - timedelta(days=3)))
    fix = {"event_id": "fix-1", "type": "lot_changed", "occurred_at": w.ago(days=1), "sku": SKU,
           "lot": "Z", "change": "expiry_corrected", "new_expiry": "2026-03-01", "reason": "misprint"}
    assert w.one(fix, by=ADMIN).status == "accepted"
    scan = w.one(w.usage(1, lot="Z"))
    assert scan.status == "rejected" and scan.errors[0]["code"] == "expired_lot"
    before = w.p.audit_stock_point(SKU, WARD, as_of=w.now - timedelta(days=2))
    assert before["state"]["lots"][0]["status"] == "ok"
    assert w.p.audit_stock_point(SKU, WARD)["state"]["lots"][0]["status"] == "expired"
