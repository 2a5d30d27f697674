"""Derived state is a pure function of the log: rebuilding from the store (in the same process
or in a fresh one on the same SQLite file) gives exactly the live state."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from unit_world import ADMIN, GTIN_BOX, SCANNER, SKU, STORE, WARD, World, sqlite_store

from streams.processor import Processor


def eventful(w: World) -> None:
    """A bit of everything: receipts, box scans, late and out-of-order events, counts,
    refusals, flags, recalls, lot changes, transfers and critical alerts."""
    t = w.now - timedelta(hours=3)
    w.post(w.receipt(50, lot="L1", at=t), w.receipt(20, lot="L2", expiry="2026-03-01", at=t),
           w.receipt(100, lot="L1", location=STORE, at=t))
    w.post(w.usage(2, lot="L1", gtin=GTIN_BOX), w.usage(1, lot="L2", case_id="OR-1"),
           w.usage(1, lot="L2"), w.usage(3, lot="STRAY"), w.usage(1, sku="NOPE"), ["junk"],
           w.count(40, lot="L1", at=t + timedelta(hours=1)), w.usage(1, lot="L1", at=t + timedelta(minutes=30)))
    w.now += timedelta(minutes=30)
    w.post_as([
        (w.recall(["L1"], reference="RC-1"), ADMIN),
        ({"event_id": "hold", "type": "lot_changed", "occurred_at": w.ago(minutes=1), "sku": SKU,
          "lot": "L2", "change": "hold", "reason": "check"}, ADMIN),
        (w.usage(1, lot="L1"), SCANNER),
        (w.usage(1, lot="L1", case_id="OR-2"), SCANNER),
        ({"event_id": "tr", "type": "transfer", "occurred_at": w.ago(minutes=2), "site": "H1",
          "from_location": STORE, "to_location": WARD, "sku": SKU, "lot": "L3", "quantity": 5}, SCANNER),
        (w.item("NEW", units={"case": 6}), ADMIN),
        (w.item("NOPE2"), SCANNER),
    ])


def test_rebuild_gives_the_same_state_digest_as_live(world: World) -> None:
    eventful(world)
    statuses = [s["event"].get("event_id") for _, _, t, s in world.stored()
                if t.endswith("Refused") and isinstance(s.get("event"), dict)]
    assert len(statuses) >= 4  # unknown item, refused scans, forbidden type ...
    live = world.p.state_digest()
    view, alerts = world.view(), world.p.alerts()
    replayed = world.p.rebuild()
    assert replayed == len(world.stored()) > 50
    assert world.p.state_digest() == live
    assert world.view() == view
    assert sorted(a["id"] for a in world.p.alerts()) == sorted(a["id"] for a in alerts)
    assert len(alerts) >= 5


def test_fresh_processor_on_the_same_sqlite_file_has_the_same_state(tmp_path: Path) -> None:
    path = tmp_path / "es.sqlite"
    w = World(store=sqlite_store(path))
    eventful(w)
    live = w.p.state_digest()
    fresh = Processor(sqlite_store(path), w.p.case_id_key, clock=lambda: w.now)
    assert fresh.state_digest() == live
    assert fresh.stock_point_view(SKU, WARD) == w.view()
    assert fresh.verify()[1] is None


def test_state_digest_notices_a_difference(world: World) -> None:
    before = world.p.state_digest()
    world.post(world.receipt(1))
    assert world.p.state_digest() != before


def test_processing_continues_identically_after_a_restart(tmp_path: Path) -> None:
    """The same inputs give the same state whether or not the process restarted in between."""
    a = World(store=sqlite_store(tmp_path / "a.sqlite"))
    b = World(store=sqlite_store(tmp_path / "b.sqlite"))
    first = [a.receipt(10, lot="L1", at=a.now - timedelta(minutes=50)), a.usage(3, lot="L1")]
    then = [a.usage(2, lot="L1", at=a.now - timedelta(minutes=40)), a.count(7, lot="L1"),
            a.usage(1, lot="L1", case_id="OR-5")]
    a.post(*first)
    b.post(*first)
    b = World(store=sqlite_store(tmp_path / "b.sqlite"), seed_catalog=False)  # restart
    assert [o.status for o in a.post(*then).outcomes] == [o.status for o in b.post(*then).outcomes]
    assert a.lots() == b.lots() == {"L1": 6.0}
    assert a.view() == b.view()
    assert a.p.state_digest() == b.p.state_digest()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["receipt", "usage", "waste", "stock_count"]),
                          st.sampled_from(["A", "B"]), st.integers(1, 9), st.integers(0, 180),
                          st.booleans()),
                min_size=1, max_size=15))
def test_any_history_replays_to_the_live_state(ops: list[tuple[str, str, int, int, bool]]) -> None:
    w = World()
    for kind, lot, q, minutes, with_case in ops:
        extra = {"case_id": f"C{q}"} if with_case and kind == "usage" else {}
        w.post(w.stock(kind, q, lot, at=w.now - timedelta(minutes=minutes), **extra))
        w.now += timedelta(minutes=1)
    live = w.p.state_digest()
    w.p.rebuild()
    assert w.p.state_digest() == live


def test_failed_store_write_leaves_nothing_half_done(world: World, monkeypatch) -> None:
    w = world
    w.post(w.receipt(10))
    digest, stored = w.p.state_digest(), len(w.stored())
    batch = [w.usage(2), w.usage(1, lot="NEW"), w.usage(1, sku="NOPE")]

    def broken_append(*events, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(w.store, "append", broken_append)
    try:
        w.post(*batch)
    except OSError:
        pass
    else:
        raise AssertionError("the failure must reach the caller: no answer without storage")
    assert (w.p.state_digest(), len(w.stored()), w.lots()) == (digest, stored, {"L1": 10.0})
    monkeypatch.undo()
    # nothing was remembered as seen: the re-send is processed for real
    assert [o.status for o in w.post(*batch).outcomes] == ["accepted", "accepted", "rejected"]
    assert w.lots() == {"L1": 8.0}


def test_each_event_is_stored_as_the_transcoder_would_store_it(world: World, monkeypatch) -> None:
    """Events are encoded once, when made (``ChainedAggregate.append``): at save time the bytes
    kept then still say what the event's attributes say, as the library's mapper would encode
    them (so nothing shared was changed in between), and they chain."""
    from domain.chain import ChainVerifier
    from streams.store import PrecodedMapper

    checked: list[str] = []
    plain = world.store.mapper.transcoder
    to_stored = PrecodedMapper.to_stored_event

    def checking(self: PrecodedMapper, event: object):  # type: ignore[no-untyped-def]
        stored = to_stored(self, event)
        state = {k: v for k, v in vars(event).items() if k not in ("originator_id", "originator_version")}
        assert plain.decode(stored.state) == plain.decode(plain.encode(state)), type(event).__qualname__
        checked.append(type(event).__qualname__)
        return stored

    before = len(world.stored())  # (the world's master data)
    monkeypatch.setattr(PrecodedMapper, "to_stored_event", checking)
    eventful(world)
    assert len(checked) == len(world.stored()) - before > 50
    assert {"StockPoint.Recorded", "StockPoint.Refused", "StockPoint.Decided", "StockPoint.AlertRaised",
            "Recall.Issued", "Lot.Changed"} <= set(checked)
    verifier = ChainVerifier()
    for n in world.store.notifications():
        assert verifier.feed(n.originator_id, n.originator_version, n.topic, n.state, n.id) is None


def test_an_event_with_a_field_missing_or_unknown_is_not_made(world: World) -> None:
    import pytest

    from domain.aggregates import StockPoint

    eventful(world)
    sp = next(a for a in world.p.ledger.streams.values() if isinstance(a, StockPoint))
    version = sp.version
    with pytest.raises(TypeError, match="Decided"):
        sp.append(StockPoint.Decided, world.now)  # no decision
    with pytest.raises(TypeError, match="Decided"):
        sp.append(StockPoint.Decided, world.now, decision={}, hash="forged")
    assert sp.version == version
