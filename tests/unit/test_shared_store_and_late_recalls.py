"""Processors sharing one store (as Kafka workers do), tracking records stored with the events
they consumed, and recalls that become known after uses of the recalled lot were stored."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError
from unit_world import ADMIN, KEY, SCANNER, STORE, WARD, World, intake_alerts

from domain import codes as c
from domain.aggregates import stock_point_id
from streams.processor import Processor
from streams.store import sqlite_env
from streams.tracked_store import TrackedEventStore, Tracking


@pytest.fixture
def stocked() -> World:
    w = World()
    w.post(w.receipt(10, lot="L1"), w.receipt(10, lot="L2"))
    return w


def test_a_use_stored_before_an_earlier_recall_was_known_is_flagged_when_it_arrives(stocked: World) -> None:
    w = stocked
    use = w.usage(1, lot="L1", at=w.now - timedelta(minutes=5))
    other_lot = w.usage(1, lot="L2", at=w.now - timedelta(minutes=5))
    before_recall = w.usage(1, lot="L1", at=w.now - timedelta(minutes=50))
    stored = w.post(use, other_lot, before_recall).outcomes
    assert not any(c.RECALLED_LOT_USED in o.flags for o in stored)

    result = w.post(w.recall(["L1"], at=w.now - timedelta(minutes=30)), by=ADMIN)

    assert [(a["kind"], a["event_id"], a["lot"]) for a in intake_alerts(result.alerts)] == [
        ("recalled_lot_used", use["event_id"], "L1")]
    assert c.RECALLED_LOT_USED in w.view()["flags"]
    assert w.p.event_outcome(use["event_id"])["flags"] == [c.RECALLED_LOT_USED]
    assert w.p.event_outcome(other_lot["event_id"])["flags"] == []
    assert w.p.event_outcome(before_recall["event_id"])["flags"] == [c.OUT_OF_ORDER]
    assert w.lots()["L1"] == 8.0  # flagged, not undone: the unit was used
    again = w.one(use)
    assert again.status == "duplicate" and again.flags == [c.RECALLED_LOT_USED]
    # Flagging is a stored fact: a rebuild gives the same state, and a second pass adds nothing.
    live = w.p.state_digest()
    w.p.rebuild()
    assert w.p.state_digest() == live
    assert w.p.recheck_recalls() == 1
    assert intake_alerts(w.post().alerts) == []


def test_the_outcome_of_an_event_is_kept_with_who_posted_it(stocked: World) -> None:
    w = stocked
    bad = w.usage(1, lot="L1", location="NOWHERE")
    w.post(bad)
    assert w.p.event_outcome(bad["event_id"]) == {
        "event_id": bad["event_id"], "status": "rejected",
        "errors": w.p.ledger.seen[bad["event_id"]].errors, "flags": [],
        "recorded_by": SCANNER.name}
    assert w.p.event_outcome("never-posted") is None
    w.p.rebuild()
    assert w.p.event_outcome(bad["event_id"])["recorded_by"] == SCANNER.name


def _shared(tmp_path: Path) -> tuple[World, Processor]:
    store = TrackedEventStore(sqlite_env(str(tmp_path / "events.sqlite")))
    ward_side = World(store=store)
    store_side = Processor(TrackedEventStore(sqlite_env(str(tmp_path / "events.sqlite"))), KEY,
                           clock=lambda: ward_side.now)
    ward_side.p.owns = lambda sp: sp == stock_point_id("GLOVE-M", WARD)
    store_side.owns = lambda sp: sp != stock_point_id("GLOVE-M", WARD)
    return ward_side, store_side


def test_processors_sharing_a_store_follow_what_the_others_stored(tmp_path: Path) -> None:
    w, other = _shared(tmp_path)
    assert other.follow() == 0  # it rebuilt at start: master data included
    w.post(w.receipt(10, lot="L1"))
    # Not in step with the log, it would open lot L1 again: the store refuses the whole batch
    # (one stream, one version), and the processor rebuilds its model from the store.
    receipt = w.receipt(4, lot="L1", location=STORE)
    with pytest.raises(IntegrityError):
        other.process([(receipt, SCANNER)])
    assert other.process([(receipt, SCANNER)]).outcomes[0].status == "accepted"
    other.process([(w.receipt(1, lot="L1", location=STORE), SCANNER)])
    assert w.p.follow() > 0
    assert w.p.state_digest() == other.state_digest()
    assert w.p.follow() == 0 and other.follow() == 0  # their own events are not applied twice


def test_a_recall_stored_by_another_processor_flags_the_uses_this_one_stored(tmp_path: Path) -> None:
    w, other = _shared(tmp_path)
    w.post(w.receipt(10, lot="L1"))
    use = w.usage(1, lot="L1", at=w.now - timedelta(minutes=5))
    w.post(use)
    other.follow()
    stored = other.process([(w.recall(["L1"], at=w.now - timedelta(minutes=30)), ADMIN)])
    assert intake_alerts(stored.alerts) == []  # not its stock point: its owner flags it

    w.p.follow()
    assert w.p.rechecks_pending
    flagged = w.post()
    assert [a["kind"] for a in intake_alerts(flagged.alerts)] == ["recalled_lot_used"]
    assert w.p.event_outcome(use["event_id"])["flags"] == [c.RECALLED_LOT_USED]
    other.follow()
    assert other.state_digest() == w.p.state_digest()


def test_consumed_offsets_are_stored_with_the_events_and_a_batch_is_never_stored_twice(tmp_path: Path) -> None:
    w, _ = _shared(tmp_path)
    batch = [(w.receipt(3, lot="L9"), SCANNER)]
    w.p.process(batch, tracking=[Tracking("replenish.events.v1-0", 41)])
    store = w.p.store
    assert isinstance(store, TrackedEventStore)
    assert store.positions(["replenish.events.v1-0", "replenish.events.v1-1"]) == {"replenish.events.v1-0": 41}
    count = len(w.stored())
    with pytest.raises(IntegrityError):  # redelivered: the tracking record refuses it
        w.p.process([(w.receipt(3, lot="L9"), SCANNER)], tracking=[Tracking("replenish.events.v1-0", 41)])
    assert len(w.stored()) == count and w.lots()["L9"] == 3.0
    # A batch that stores nothing (a duplicate) still moves the position.
    assert w.p.process(batch, tracking=[Tracking("replenish.events.v1-0", 42)]).stored == 0
    assert store.positions(["replenish.events.v1-0"]) == {"replenish.events.v1-0": 42}


def test_a_store_without_tracking_records_refuses_to_pretend_it_keeps_them() -> None:
    w = World()
    with pytest.raises(TypeError, match="tracking"):
        w.p.process([], tracking=[Tracking("t-0", 1)])
