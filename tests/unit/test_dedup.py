"""De-duplication: an event id seen before with the same content gets its first outcome again
and changes nothing; with different content it is refused as ``event_id_reused``."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from unit_world import ADMIN, SKU, STORE, WARD, World, sqlite_store


def shuffled_keys(event: dict[str, Any], seed: int = 1) -> dict[str, Any]:
    keys = list(event)
    random.Random(seed).shuffle(keys)
    if keys == list(event):
        keys.reverse()
    return {k: event[k] for k in keys}


def test_resent_batch_with_reordered_keys_is_duplicate_and_counts_once(world: World) -> None:
    w = world
    batch = [w.receipt(20, lot="L1"), w.usage(3, lot="L1"), w.usage(2, lot="L1", case_id="C-9"),
             w.count(14, lot="L1", at=w.now - timedelta(minutes=1))]
    first = w.post(*batch)
    assert [o.status for o in first.outcomes] == ["accepted"] * 4
    assert w.lots() == {"L1": 14.0}
    stored_before = len(w.stored())
    digest = w.p.state_digest()

    again = w.post(*[shuffled_keys(e) for e in batch])
    assert [o.status for o in again.outcomes] == ["duplicate"] * 4
    assert [o.event_id for o in again.outcomes] == [e["event_id"] for e in batch]
    assert again.stored == 0 and again.alerts == []
    assert len(w.stored()) == stored_before
    assert w.lots() == {"L1": 14.0}
    assert w.p.state_digest() == digest


def test_duplicate_within_one_batch_counts_once(world: World) -> None:
    w = world
    r = w.receipt(5)
    result = w.post(r, dict(r), shuffled_keys(r))
    assert [o.status for o in result.outcomes] == ["accepted", "duplicate", "duplicate"]
    assert w.lots() == {"L1": 5.0}


def test_duplicate_repeats_the_first_outcomes_flags(world: World) -> None:
    w = world
    late = w.usage(1, lot="NEVER", at=w.now - timedelta(hours=3))
    first = w.one(late)
    assert {"late", "lot_not_received"} <= set(first.flags)
    again = w.one(shuffled_keys(late))
    assert again.status == "duplicate"
    assert sorted(again.flags) == sorted(first.flags)
    w.p.rebuild()  # the same from the store
    assert sorted(w.one(late).flags) == sorted(first.flags)


def test_duplicate_transfer_repeats_the_flags_of_both_sides(world: World) -> None:
    w = world
    w.post(w.receipt(1, lot="L1", at=w.now - timedelta(minutes=1)))  # the ward has a newer event
    transfer = {"event_id": "t-1", "type": "transfer", "occurred_at": w.ago(minutes=5), "site": "H1",
                "from_location": STORE, "to_location": WARD, "sku": SKU, "lot": "L1", "quantity": 4}
    first = w.one(transfer)
    # out of the store: a lot it never had, so negative; into the ward: out of order
    assert first.status == "accepted"
    assert sorted(first.flags) == ["lot_not_received", "negative_stock", "out_of_order"]
    again = w.one(shuffled_keys(transfer))
    assert (again.status, sorted(again.flags)) == ("duplicate", sorted(first.flags))
    assert w.lots(SKU, WARD) == {"L1": 5.0} and w.lots(SKU, STORE) == {"L1": -4.0}
    w.p.rebuild()
    assert sorted(w.one(transfer).flags) == sorted(first.flags)


def test_refused_event_resent_after_the_world_changed_gets_the_same_refusal(world: World) -> None:
    w = world
    usage = w.usage(1, sku="SUTURE-3", lot="S1")
    first = w.one(usage)
    assert first.status == "rejected" and first.errors[0]["code"] == "unknown_item"
    # the item is registered and stocked afterwards ...
    w.post(w.item("SUTURE-3"), by=ADMIN)
    w.post(w.receipt(10, lot="S1", sku="SUTURE-3"))
    assert w.one(w.usage(1, sku="SUTURE-3", lot="S1")).status == "accepted"
    # ... yet the re-sent event gets its first answer and changes nothing
    result = w.post(shuffled_keys(usage))
    assert result.outcomes[0].status == "rejected"
    assert result.outcomes[0].errors == first.errors
    assert result.stored == 0
    assert w.lots("SUTURE-3", WARD) == {"S1": 9.0}


def test_accepted_usage_resent_after_a_recall_is_duplicate_not_recalled(world: World) -> None:
    w = world
    w.post(w.receipt(10))
    usage = w.usage(1)
    assert w.one(usage).status == "accepted"
    w.post(w.recall(["L1"]), by=ADMIN)
    again = w.post(usage)
    assert again.outcomes[0].status == "duplicate" and again.alerts == []
    assert w.lots() == {"L1": 9.0}


def test_recalled_scan_resent_after_recall_closed_is_still_refused(world: World) -> None:
    w = world
    w.post(w.receipt(10))
    w.post(w.recall(["L1"], reference="RC-7"), by=ADMIN)
    scan = w.usage(1)
    assert w.one(scan).errors[0]["code"] == "recalled_lot"
    w.post({"event_id": "close", "type": "recall_closed", "occurred_at": w.ago(minutes=1),
            "reference": "RC-7"}, by=ADMIN)
    again = w.post(scan)
    assert again.outcomes[0].status == "rejected"
    assert again.outcomes[0].errors[0]["code"] == "recalled_lot"
    assert again.alerts == [] and again.stored == 0
    assert w.lots() == {"L1": 10.0}


def test_reuse_refusal_does_not_replace_the_first_outcome(world: World) -> None:
    w = world
    receipt = w.receipt(5)
    w.post(receipt)
    reused = dict(receipt, quantity=50)
    assert w.one(reused).errors[0]["code"] == "event_id_reused"
    assert w.one(reused).errors[0]["code"] == "event_id_reused"  # still, not a "duplicate" of itself
    assert w.one(receipt).status == "duplicate"
    assert w.lots() == {"L1": 5.0}


def test_same_case_content_is_a_duplicate_different_case_is_reuse(world: World) -> None:
    w = world
    w.post(w.receipt(5))
    usage = w.usage(1, case_id="CASE-1")
    w.post(usage)
    assert w.one(dict(usage)).status == "duplicate"
    assert w.one(dict(usage, case_id="CASE-2")).errors[0]["code"] == "event_id_reused"


def test_master_data_resent_is_duplicate(world: World) -> None:
    w = world
    item = w.item("PUMP", units={"box": 4})
    assert w.one(item, by=ADMIN).status == "accepted"
    assert w.one(shuffled_keys(item), by=ADMIN).status == "duplicate"
    assert w.one(dict(item, units={"box": 5}), by=ADMIN).errors[0]["code"] == "event_id_reused"
    assert w.p.ledger.catalog.item("PUMP", w.now).units == {"box": 4.0}


def test_dedup_survives_a_restart_on_the_same_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "es.sqlite"
    w = World(store=sqlite_store(path))
    batch = [w.receipt(10), w.usage(2), w.usage(1, sku="NOPE")]
    first = w.post(*batch)
    restarted = World(store=sqlite_store(path), seed_catalog=False)
    again = restarted.post(*batch)
    assert [o.status for o in again.outcomes] == ["duplicate", "duplicate", "rejected"]
    assert again.outcomes[2].errors == first.outcomes[2].errors
    assert again.stored == 0
    assert restarted.lots() == {"L1": 8.0}


stock_ops = st.lists(
    st.tuples(st.sampled_from(["receipt", "usage", "return", "waste", "stock_count"]),
              st.sampled_from(["A", "B"]), st.integers(1, 9), st.integers(0, 50)),
    min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(stock_ops, st.integers(0, 2**16), st.integers(1, 4))
def test_any_history_resent_in_any_order_and_key_order_changes_nothing(
        ops: list[tuple[str, str, int, int]], seed: int, chunks: int) -> None:
    w = World()
    events = [w.stock(kind, q, lot, at=w.now - timedelta(minutes=minutes))
              for kind, lot, q, minutes in ops]
    size = max(1, len(events) // chunks)
    for i in range(0, len(events), size):
        w.post(*events[i:i + size])
    lots, digest, stored = w.lots(), w.p.state_digest(), len(w.stored())

    rng = random.Random(seed)
    resend = [shuffled_keys(e, seed) for e in events]
    rng.shuffle(resend)
    result = w.post(*resend)
    assert {o.status for o in result.outcomes} == {"duplicate"}
    assert result.stored == 0
    assert (w.lots(), w.p.state_digest(), len(w.stored())) == (lots, digest, stored)
