"""Stock balances follow ``occurred_at``: a late event lands at its place in its stock point's
history, and a count supersedes what came before it (and only that)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from unit_world import SKU, WARD, World, nonzero

from domain.inventory import fold_balances, inventory_position


def test_late_usage_older_than_a_count_changes_nothing(world: World) -> None:
    w = world
    t = w.now - timedelta(minutes=50)
    w.post(w.receipt(10, at=t), w.count(4, at=t + timedelta(minutes=20)))
    assert w.lots() == {"L1": 4.0}
    late = w.one(w.usage(3, at=t + timedelta(minutes=10)))  # happened before the count
    assert late.status == "accepted" and "out_of_order" in late.flags
    assert w.lots() == {"L1": 4.0}
    w.post(w.usage(1, at=t + timedelta(minutes=30)))
    assert w.lots() == {"L1": 3.0}


def test_late_count_lands_before_later_movements(world: World) -> None:
    w = world
    t = w.now - timedelta(minutes=50)
    w.post(w.receipt(10, at=t), w.usage(2, at=t + timedelta(minutes=30)))
    assert w.lots() == {"L1": 8.0}
    # counted 5 at t+10, reported late: the usage after it still applies -> 3
    w.post(w.count(5, at=t + timedelta(minutes=10)))
    assert w.lots() == {"L1": 3.0}
    # and an even older count changes nothing now
    w.post(w.count(100, at=t + timedelta(minutes=5)))
    assert w.lots() == {"L1": 3.0}


def test_late_receipt_between_a_count_and_now_is_added(world: World) -> None:
    w = world
    t = w.now - timedelta(minutes=50)
    w.post(w.count(4, at=t), w.usage(1, at=t + timedelta(minutes=30)))
    w.post(w.receipt(6, at=t + timedelta(minutes=10)))
    assert w.lots() == {"L1": 9.0}


def test_count_of_one_lot_leaves_other_lots_unchanged(world: World) -> None:
    w = world
    w.post(w.receipt(10, lot="A"), w.receipt(7, lot="B"), w.count(2, lot="A"))
    assert w.lots() == {"A": 2.0, "B": 7.0}
    view = w.view()
    assert view["on_hand"] == 9.0 and view["inventory_position"] == 9.0 == inventory_position(9.0)


def test_fold_balances_orders_by_occurred_at_then_recording_order() -> None:
    facts = [("2026-01-02", [["add", "A", -1.0]]),
             ("2026-01-01", [["set", "A", 5.0]]),
             ("2026-01-02", [["set", "A", 10.0]]),   # same instant, recorded later: wins
             ("2026-01-03", [["add", "A", 2.0], ["add", "B", 1.0]])]
    assert fold_balances(facts) == {"A": 12.0, "B": 1.0}
    assert fold_balances(facts, until="2026-01-02") == {"A": 10.0}
    assert fold_balances(facts, until="2026-01-01") == {"A": 5.0}
    assert fold_balances([]) == {}


# -- property: live incremental balances equal the fold of the stored facts ----------------

OPS = st.lists(
    st.tuples(st.sampled_from(["receipt", "usage", "waste", "return", "stock_count"]),
              st.sampled_from(["A", "B", "C"]),
              st.integers(0, 12),        # quantity (0 only makes sense for counts)
              st.integers(0, 120)),      # minutes before now (random occurred_at order)
    min_size=1, max_size=20)


def expected_balances(ops: list[tuple[str, str, int, int]]) -> dict[str, float]:
    """An independent model: apply the operations in occurred_at order (ties in arrival
    order). A usage or waste of a lot the location had never seen (in arrival order) is an
    implied transfer in and straight out, so it does not move the lot's balance."""
    seen: set[str] = set()
    facts = []
    for i, (kind, lot, q, minutes_ago) in enumerate(ops):
        if kind in ("usage", "waste") and lot not in seen:
            delta = None
        elif kind == "stock_count":
            delta = ("set", q)
        else:
            delta = ("add", q if kind in ("receipt", "return") else -q)
        seen.add(lot)
        facts.append((-minutes_ago, i, lot, delta))
    balances: dict[str, float] = {}
    for _, _, lot, delta in sorted(facts):
        if delta is None:
            balances.setdefault(lot, 0.0)
        elif delta[0] == "set":
            balances[lot] = float(delta[1])
        else:
            balances[lot] = balances.get(lot, 0.0) + delta[1]
    return nonzero(balances)


@settings(max_examples=120, deadline=None)
@given(OPS, st.integers(1, 5))
def test_live_balances_equal_the_fold_of_stored_facts_and_the_audit(
        ops: list[tuple[str, str, int, int]], batches: int) -> None:
    w = World()
    events = [w.stock(kind, q if kind == "stock_count" else max(q, 1), lot,
                      at=w.now - timedelta(minutes=m)) for kind, lot, q, m in ops]
    ops = [(k, lot, q if k == "stock_count" else max(q, 1), m) for k, lot, q, m in ops]
    size = -(-len(events) // batches)
    for i in range(0, len(events), size):
        result = w.post(*events[i:i + size])
        assert {o.status for o in result.outcomes} == {"accepted"}, result.outcomes

    live = w.lots()
    folded = nonzero(fold_balances(w.facts()))
    audit = w.p.audit_stock_point(SKU, WARD)
    assert audit is not None
    audited = {row["lot"]: row["quantity"] for row in audit["state"]["lots"]}
    assert live == folded == audited == expected_balances(ops)
    assert audit["state"]["on_hand"] == w.view()["on_hand"] == sum(live.values())

    digest = w.p.state_digest()
    w.p.rebuild()
    assert w.p.state_digest() == digest
    assert w.lots() == live
