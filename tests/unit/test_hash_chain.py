"""Tamper evidence: every stored stream is a hash chain, and verification names the first
broken link."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from unit_world import SKU, WARD, World, sqlite_store

from domain.aggregates import stock_point_id
from domain.chain import GENESIS, ChainVerifier, canonical_json, link_hash
from streams.processor import verify_store

TOPIC = "domain.aggregates:StockPoint.Recorded"


def _chain(stream: str, states: list[dict]) -> list[bytes]:
    """Stored bytes of a valid chain over ``states`` (as the store would write them)."""
    out, prev = [], GENESIS
    for version, state in enumerate(states, start=1):
        body = dict(state, prev_hash=prev)
        h = link_hash(stream, version, TOPIC, body)
        out.append(orjson.dumps(dict(body, hash=h)))
        prev = h
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10)
states = st.lists(st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k not in ("hash", "prev_hash")),
                                  json_values, max_size=4), min_size=1, max_size=6)


def test_link_hash_is_sha256_of_canonical_json_with_sorted_keys() -> None:
    a = link_hash("s", 1, "t", {"b": 1, "a": "é"})
    b = link_hash("s", 1, "t", {"a": "é", "b": 1})
    assert a == b and len(a) == 64
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    assert link_hash("s", 2, "t", {"a": "é", "b": 1}) != a
    assert link_hash("other", 1, "t", {"a": "é", "b": 1}) != a


@given(states)
def test_untampered_chain_verifies(chain_states: list[dict]) -> None:
    verifier = ChainVerifier()
    for version, raw in enumerate(_chain("sp:X@W", chain_states), start=1):
        assert verifier.feed("sp:X@W", version, TOPIC, raw) is None
    assert verifier.checked == len(chain_states)


@given(states, st.data())
def test_any_changed_byte_in_a_stored_event_is_detected_at_that_version(
        chain_states: list[dict], data: st.DataObject) -> None:
    raws = _chain("sp:X@W", chain_states)
    victim = data.draw(st.integers(0, len(raws) - 1))
    pos = data.draw(st.integers(0, len(raws[victim]) - 1))
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != raws[victim][pos]))
    tampered = bytearray(raws[victim])
    tampered[pos] = new_byte
    raws[victim] = bytes(tampered)
    verifier = ChainVerifier()
    broken = None
    for version, raw in enumerate(raws, start=1):
        broken = verifier.feed("sp:X@W", version, TOPIC, raw)
        if broken is not None:
            break
    if broken is None:
        # A change that leaves the same JSON value (e.g. inside insignificant whitespace) is
        # impossible here: orjson writes none. So every change must be caught.
        pytest.fail(f"tampering byte {pos} of version {victim + 1} went unnoticed")
    assert broken.stream == "sp:X@W"
    assert broken.version == victim + 1


def test_rewritten_hash_breaks_the_next_link() -> None:
    raws = _chain("s", [{"q": 1}, {"q": 2}, {"q": 3}])
    # An attacker changes version 2 and recomputes its own hash: version 3 still points at the old one.
    forged_body = {"q": 20, "prev_hash": orjson.loads(raws[1])["prev_hash"]}
    raws[1] = orjson.dumps(dict(forged_body, hash=link_hash("s", 2, TOPIC, forged_body)))
    verifier = ChainVerifier()
    results = [verifier.feed("s", v, TOPIC, r) for v, r in enumerate(raws, start=1)]
    assert results[0] is None and results[1] is None
    assert results[2] is not None and results[2].version == 3
    assert "prev_hash" in results[2].reason


def test_missing_event_is_reported_as_a_version_gap() -> None:
    raws = _chain("s", [{"q": 1}, {"q": 2}, {"q": 3}])
    verifier = ChainVerifier()
    assert verifier.feed("s", 1, TOPIC, raws[0]) is None
    broken = verifier.feed("s", 3, TOPIC, raws[2])
    assert broken is not None and broken.version == 3 and "version gap" in broken.reason


@pytest.mark.parametrize(("raw", "reason"), [(b"{not json", "not valid JSON"),
                                             (b'{"q": 1, "prev_hash": "' + GENESIS.encode() + b'"}', "no hash")])
def test_unreadable_or_unhashed_event_is_a_broken_link(raw: bytes, reason: str) -> None:
    broken = ChainVerifier().feed("s", 1, TOPIC, raw, notification_id=41)
    assert broken is not None and reason in broken.reason and broken.notification_id == 41


def test_streams_are_verified_independently_in_any_interleaving() -> None:
    a, b = _chain("a", [{"x": 1}, {"x": 2}]), _chain("b", [{"y": 1}, {"y": 2}])
    verifier = ChainVerifier()
    for stream, version, raw in [("a", 1, a[0]), ("b", 1, b[0]), ("b", 2, b[1]), ("a", 2, a[1])]:
        assert verifier.feed(stream, version, TOPIC, raw) is None
    # a stream's event fed as another stream's does not verify
    assert ChainVerifier().feed("b", 1, TOPIC, a[0]) is not None


# -- the real store ----------------------------------------------------------------------

def _busy_world(path: Path) -> World:
    w = World(store=sqlite_store(path))
    w.post(w.receipt(10, lot="L1"), w.usage(2, lot="L1"), w.usage(1, lot="L1", case_id="C-1"))
    w.post({"event_id": "x", "type": "usage"}, w.usage(1, lot="NEW"))  # a refusal, a flag
    return w


def test_untampered_store_verifies_every_stored_event(tmp_path: Path) -> None:
    w = _busy_world(tmp_path / "es.sqlite")
    checked, broken = w.p.verify()
    assert broken is None
    assert checked == len(w.stored()) > 10


def test_changed_byte_in_sqlite_row_is_named_by_stream_and_version(tmp_path: Path) -> None:
    path = tmp_path / "es.sqlite"
    w = _busy_world(path)
    sp = stock_point_id(SKU, WARD)
    target = next((stream, version) for stream, version, topic, state in w.stored()
                  if stream == sp and topic.endswith("Recorded") and state["event"]["type"] == "usage"
                  and state["event"]["quantity"] == 2.0)
    del w
    con = sqlite3.connect(path)
    (state,) = con.execute("SELECT state FROM stored_events WHERE originator_id=? AND originator_version=?",
                           target).fetchone()
    assert b'"quantity":2.0' in state
    con.execute("UPDATE stored_events SET state=? WHERE originator_id=? AND originator_version=?",
                (state.replace(b'"quantity":2.0', b'"quantity":1.0'), *target))
    con.commit()
    con.close()

    checked, broken = verify_store(sqlite_store(path))
    assert broken is not None
    assert (broken.stream, broken.version) == target
    assert "content does not match its hash" in broken.reason
    assert broken.notification_id is not None


def test_deleted_sqlite_row_is_named_as_a_version_gap(tmp_path: Path) -> None:
    path = tmp_path / "es.sqlite"
    _busy_world(path)
    sp = stock_point_id(SKU, WARD)
    con = sqlite3.connect(path)
    con.execute("DELETE FROM stored_events WHERE originator_id=? AND originator_version=2", (sp,))
    con.commit()
    con.close()
    _, broken = verify_store(sqlite_store(path))
    assert broken is not None and broken.stream == sp and broken.version == 3
