"""Snapshots of the write model (``streams.snapshots``): a start from the newest snapshot plus
the log after it equals a full replay; a snapshot of another format, a changed or corrupt one,
one ahead of the store, or one of another store is ignored (a full replay), with the reason."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from unit_world import KEY, SCANNER, World, sqlite_store

from streams import snapshots
from streams.processor import Processor


def _busy(w: World, days: int, start: int = 0) -> None:
    for d in range(start, start + days):
        at = w.now - timedelta(days=60 - d)
        w.post(w.receipt(20, at=at), w.usage(3, at=at + timedelta(hours=2)), w.usage(2, at=at + timedelta(hours=5)))


def _models(p: Processor) -> tuple[object, ...]:
    """The online models' numbers (each model's own state; Slotted states compare by value)."""
    return ({k: m.__getstate__() for k, m in p.planner.models.items()}, p.planner.lead_times, p.posted_by)


@pytest.fixture
def stored(tmp_path: Path) -> World:
    return World(store=sqlite_store(tmp_path / "events.sqlite"))


def test_a_start_from_a_snapshot_and_the_log_after_it_equals_a_full_replay(stored: World, tmp_path: Path) -> None:
    w = stored
    _busy(w, 20)
    path = snapshots.write(tmp_path / "snap", KEY, w.p.position, w.p.position, w.p.snapshot_state())
    _busy(w, 20, start=20)  # more after the snapshot
    snap = snapshots.newest(tmp_path / "snap", KEY)
    assert snap is not None and snap.path == path and snap.position < w.p.position
    restored = Processor(w.store, KEY, clock=lambda: w.now, snapshot=snap)
    full = Processor(w.store, KEY, clock=lambda: w.now)
    assert restored.restored_from is snap and full.restored_from is None
    assert restored.position == full.position == w.p.position
    assert restored.state_digest() == full.state_digest() == w.p.state_digest()
    assert _models(restored) == _models(full)
    # and it goes on deciding: what it stores replays to the state it holds
    restored.process([(w.usage(1, at=w.now - timedelta(minutes=1)), SCANNER)])
    again = Processor(w.store, KEY, clock=lambda: w.now)
    assert again.state_digest() == restored.state_digest()
    assert _models(again) == _models(restored)


@pytest.mark.parametrize("damage", ["format", "model", "relabelled", "bytes", "key", "truncated"])
def test_a_changed_or_foreign_snapshot_is_ignored_with_the_reason(
        stored: World, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    w = stored
    _busy(w, 5)
    path = snapshots.write(tmp_path / "snap", KEY, w.p.position, w.p.position, w.p.snapshot_state())
    raw = path.read_bytes()
    if damage == "format":
        path.write_bytes(raw.replace(b'"format":2', b'"format":99', 1))
    elif damage == "model":  # another model version's state (checked before the HMAC)
        path.write_bytes(raw.replace(b'"model":"', b'"model":"older-', 1))
    elif damage == "relabelled":  # a header field changed without the key: the HMAC says so
        path.write_bytes(raw.replace(b'"events":', b'"events":1', 1))
    elif damage == "bytes":
        path.write_bytes(raw[:-10] + bytes(b ^ 0xFF for b in raw[-10:]))
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    key = b"another-key-entirely-32-bytes!!!" if damage == "key" else KEY
    with caplog.at_level(logging.WARNING):
        assert snapshots.newest(tmp_path / "snap", key) is None
    assert "ignored" in caplog.text
    if damage == "model":
        assert "made by model 'older-" in caplog.text


def test_a_snapshot_ahead_of_the_store_or_of_another_store_is_not_used(stored: World, tmp_path: Path) -> None:
    w = stored
    _busy(w, 5)
    snapshots.write(tmp_path / "snap", KEY, w.p.position, w.p.position, w.p.snapshot_state())
    assert snapshots.newest(tmp_path / "snap", KEY, at_most=w.p.position - 1) is None
    other = World(store=sqlite_store(tmp_path / "other.sqlite"))
    other.post(other.receipt(7, lot="OTHER"))  # another store: its log differs from the start
    _busy(other, 6)
    snap = snapshots.newest(tmp_path / "snap", KEY, at_most=other.p.position)
    assert snap is not None
    p = Processor(other.store, KEY, clock=lambda: other.now, snapshot=snap)
    assert p.restored_from is None and p.state_digest() == other.p.state_digest()


def test_only_the_newest_snapshots_are_kept(stored: World, tmp_path: Path) -> None:
    w = stored
    for day in range(4):
        _busy(w, 1, start=day)
        snapshots.write(tmp_path / "snap", KEY, w.p.position, w.p.position, w.p.snapshot_state())
    names = sorted(p.name for p in (tmp_path / "snap").iterdir())
    assert len(names) == snapshots.KEEP and names[-1] == f"snapshot-{w.p.position:012d}.bin"
