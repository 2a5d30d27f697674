"""Signed checkpoints of the whole log (issue 16, section 1): a checkpoint held outside the
store catches each tampering the per-stream chains cannot (the newest events removed, a whole
stream removed, a chain rewritten from its first event with its hashes recomputed, events
reordered), and an independent verifier (standard library and ``cryptography`` only) checks
an export against it without our code."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from unit_world import World, sqlite_store

from domain.chain import GENESIS, link_hash
from streams import checkpoints
from streams.processor import verify_store
from streams.traceability import export


def filled(tmp_path: Path) -> tuple[World, Path]:
    db = tmp_path / "events.sqlite"
    w = World(store=sqlite_store(db))
    w.post(w.receipt(50, at=w.now - timedelta(hours=3)))
    for k in range(6):
        w.post(w.usage(1, at=w.now - timedelta(hours=2, minutes=-k)))
    return w, db


def rows(db: Path) -> list[tuple[int, str, int, str, bytes]]:
    with sqlite3.connect(db) as con:
        return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in con.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid")]


def delete(db: Path, where: str, args: tuple = ()) -> None:
    con = sqlite3.connect(db)
    with con:
        con.execute(f"DELETE FROM stored_events WHERE {where}", args)
    con.close()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_an_untouched_store_matches_its_checkpoint_and_a_grown_one_still_does(tmp_path: Path, key) -> None:
    w, _ = filled(tmp_path)
    cp = checkpoints.make(w.store, key)
    assert cp.tree_size == len(list(w.store.notifications())) > 10
    assert checkpoints.check(w.store, cp, key.public_key()) == []
    w.post(w.usage(1))  # more events later: the checkpoint's prefix is unchanged
    assert checkpoints.check(w.store, cp, key.public_key()) == []


def test_the_newest_events_removed_are_caught_where_every_chain_still_verifies(tmp_path: Path, key) -> None:
    w, db = filled(tmp_path)
    cp = checkpoints.make(w.store, key)
    last = rows(db)[-1]
    delete(db, "originator_id = ? AND originator_version >= ?", (last[1], last[2] - 1))
    store = sqlite_store(db)
    assert verify_store(store)[1] is None  # the chains alone cannot tell
    (problem,) = checkpoints.check(store, cp, key.public_key())
    assert "missing" in problem


def test_a_whole_stream_removed_is_caught(tmp_path: Path, key) -> None:
    w, db = filled(tmp_path)
    cp = checkpoints.make(w.store, key)
    victim = next(r[1] for r in rows(db) if r[1].startswith("lot:"))
    delete(db, "originator_id = ?", (victim,))
    store = sqlite_store(db)
    assert verify_store(store)[1] is None
    assert checkpoints.check(store, cp, key.public_key())


def test_a_chain_rewritten_from_its_first_event_with_hashes_recomputed_is_caught(tmp_path: Path, key) -> None:
    w, db = filled(tmp_path)
    cp = checkpoints.make(w.store, key)
    stream = next(r[1] for r in rows(db) if r[1].startswith("sp:"))
    prev = GENESIS
    con = sqlite3.connect(db)
    with con:
        for rowid, sid, version, topic, state in rows(db):
            if sid != stream:
                continue
            body = orjson.loads(state)
            body.pop("hash")
            if version == 2:
                body["event"]["quantity"] = 2.0  # the forgery
            body["prev_hash"] = prev
            body["hash"] = prev = link_hash(sid, version, topic, {k: v for k, v in body.items() if k != "hash"})
            con.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (orjson.dumps(body), rowid))
    con.close()
    store = sqlite_store(db)
    assert verify_store(store)[1] is None  # a consistent forgery: every chain verifies
    assert checkpoints.check(store, cp, key.public_key())


def test_events_reordered_are_caught(tmp_path: Path, key) -> None:
    w, db = filled(tmp_path)
    cp = checkpoints.make(w.store, key)
    all_rows = rows(db)
    a, b = next((x, y) for x, y in zip(all_rows, all_rows[1:], strict=False) if x[1] != y[1])
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM stored_events WHERE rowid IN (?, ?)", (a[0], b[0]))
        con.execute("INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?, ?)", (a[0], *b[1:]))
        con.execute("INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?, ?)", (b[0], *a[1:]))
    con.close()
    store = sqlite_store(db)
    assert verify_store(store)[1] is None
    assert checkpoints.check(store, cp, key.public_key())


def test_a_changed_checkpoint_or_another_key_is_caught(tmp_path: Path, key) -> None:
    w, _ = filled(tmp_path)
    cp = checkpoints.make(w.store, key)
    forged = checkpoints.Checkpoint.from_json({**orjson.loads(cp.as_json()), "timestamp": "2020-01-01T00:00:00+00:00"})
    assert any("signature" in p for p in checkpoints.check(w.store, forged, key.public_key()))
    other = Ed25519PrivateKey.generate()
    assert any("signed by key" in p for p in checkpoints.check(w.store, cp, other.public_key()))


# -- an independent verifier: standard library and cryptography only -------------------------

def independent_root(export_lines: list[bytes], size: int) -> str:
    def leaf(h: bytes) -> bytes:
        return hashlib.sha256(b"\x00" + h).digest()

    def node(a: bytes, b: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + a + b).digest()

    def mth(d: list[bytes]) -> bytes:
        if len(d) == 1:
            return leaf(d[0])
        k = 1
        while k * 2 < len(d):
            k *= 2
        return node(mth(d[:k]), mth(d[k:]))

    hashes = [bytes.fromhex(orjson.loads(line)["state"]["hash"]) for line in export_lines[:size]]
    return mth(hashes).hex()


def independent_verify(export_lines: list[bytes], checkpoint: dict, public_pem: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    signed = (f"replenish-checkpoint/{checkpoint['format']}\n{checkpoint['tree_size']}\n{checkpoint['root_hash']}\n"
              f"{checkpoint['last_notification_id']}\n{checkpoint['timestamp']}\n{checkpoint['key_id']}\n").encode()
    try:
        load_pem_public_key(public_pem).verify(bytes.fromhex(checkpoint["signature"]), signed)  # type: ignore[union-attr]
    except InvalidSignature:
        return False
    return len(export_lines) >= checkpoint["tree_size"] and \
        independent_root(export_lines, checkpoint["tree_size"]) == checkpoint["root_hash"]


def test_the_independent_verifier_passes_a_clean_export_and_fails_a_tampered_one(tmp_path: Path, key) -> None:
    w, _ = filled(tmp_path)
    cp = orjson.loads(checkpoints.make(w.store, key).as_json())
    out = tmp_path / "all.jsonl"
    with out.open("wb") as f:
        export(w.store, f, None, None)
    lines = out.read_bytes().splitlines()
    pem = checkpoints.public_pem(key).encode()
    assert independent_verify(lines, cp, pem)
    assert not independent_verify(lines[:-1], cp, pem)  # the newest removed
    assert not independent_verify([lines[1], lines[0], *lines[2:]], cp, pem)  # reordered
    assert not independent_verify(lines, {**cp, "tree_size": cp["tree_size"] - 1}, pem)  # checkpoint changed


def test_several_checkpoints_are_checked_in_one_pass_each_on_its_own_prefix(tmp_path: Path, key) -> None:
    w, db = filled(tmp_path)
    older = checkpoints.make(w.store, key)
    w.post(w.usage(1))
    newer = checkpoints.make(w.store, key)
    assert checkpoints.check_all(w.store, [newer, older], key.public_key()) == [[], []]
    last = rows(db)[-1]
    delete(db, "originator_id = ? AND originator_version = ?", (last[1], last[2]))
    found = checkpoints.check_all(sqlite_store(db), [newer, older], key.public_key())
    assert found[1] == [] and len(found[0]) == 1 and "missing" in found[0][0]
