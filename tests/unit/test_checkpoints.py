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


def independent_check_sidecar(export_lines: list[bytes], side: dict, public_pem: bytes) -> list[str]:
    """An export's sidecar checked with the standard library and ``cryptography`` only: the
    checkpoint's signature, each line's leaf in the signed tree (RFC 9162 2.1.3.2), and that
    the lines' leaves follow on (a line removed from inside the period leaves a gap)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    cp = side["checkpoint"]
    signed = (f"replenish-checkpoint/{cp['format']}\n{cp['tree_size']}\n{cp['root_hash']}\n"
              f"{cp['last_notification_id']}\n{cp['timestamp']}\n{cp['key_id']}\n").encode()
    try:
        load_pem_public_key(public_pem).verify(bytes.fromhex(cp["signature"]), signed)  # type: ignore[union-attr]
    except InvalidSignature:
        return ["the checkpoint's signature"]

    def included(leaf: bytes, index: int, size: int, path: list[str]) -> bool:
        fn, sn, r = index, size - 1, hashlib.sha256(b"\x00" + leaf).digest()
        for p in map(bytes.fromhex, path):
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                r = hashlib.sha256(b"\x01" + p + r).digest()
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
            else:
                r = hashlib.sha256(b"\x01" + r + p).digest()
            fn, sn = fn >> 1, sn >> 1
        return sn == 0 and r.hex() == cp["root_hash"]

    proofs = {p["notification_id"]: p for p in side["proofs"]}
    problems, indices = [], []
    for line in export_lines:
        row = orjson.loads(line)
        proof = proofs.get(row["notification_id"])
        if proof is None or not included(bytes.fromhex(row["state"]["hash"]), proof["leaf_index"],
                                         cp["tree_size"], proof["audit_path"]):
            problems.append(f"notification {row['notification_id']} is not in the signed log")
        if proof is not None:
            indices.append(proof["leaf_index"])
    if indices and indices != list(range(indices[0], indices[0] + len(indices))):
        problems.append("the lines' leaves do not follow on")
    return problems


def test_a_period_export_carries_a_sidecar_an_outside_party_checks_line_by_line(tmp_path: Path, key) -> None:
    """``replenish audit export --out F`` writes ``F.proofs.json``: a signed checkpoint and
    each exported event's audit path, so a period's export (not the whole log) is checked
    against the signed tree without the store; an event recorded after the checkpoint has none."""
    w, _db = filled(tmp_path)
    period = tmp_path / "period.jsonl"
    ids: list[int] = []
    with period.open("wb") as f:
        n = export(w.store, f, None, None, ids)
    lines = period.read_bytes().splitlines()
    some = lines[3:9]  # a period: a run of lines from the middle
    cp = checkpoints.make(w.store, key)
    side = checkpoints.sidecar(w.store, cp, ids[3:9], key.public_key())
    pem = side["public_key"].encode()
    assert n == len(lines) and side["not_covered"] == [] and len(side["proofs"]) == 6
    assert independent_check_sidecar(some, side, pem) == []
    changed = orjson.loads(some[2])
    changed["state"]["hash"] = hashlib.sha256(b"another event").hexdigest()
    assert independent_check_sidecar([*some[:2], orjson.dumps(changed), *some[3:]], side, pem) == [
        f"notification {changed['notification_id']} is not in the signed log"]
    assert independent_check_sidecar([*some[:2], *some[3:]], side, pem) == ["the lines' leaves do not follow on"]
    forged = dict(side, checkpoint=dict(side["checkpoint"], tree_size=side["checkpoint"]["tree_size"] + 1))
    assert independent_check_sidecar(some, forged, pem) == ["the checkpoint's signature"]
    w.post(w.usage(1))
    later = [i for i in (n.id for n in w.store.notifications()) if i not in ids]
    side2 = checkpoints.sidecar(w.store, cp, ids[3:9] + later)
    assert side2["not_covered"] == later and side2["public_key"] is None
