"""Signed checkpoints through the service and the CLI (issue 16, section 1): the service makes
them (``POST /v1/audit/checkpoints``) into ``REPLENISH_AUDIT_CHECKPOINT_FILE``, serves its
public key, and ``replenish audit verify --checkpoint FILE`` fails, naming what is missing, once
the newest events are deleted from the store (which the per-stream chains alone do not show)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from .support import Service, now, post_events, receipt, run_cli, setup_master, statuses, usage

pytestmark = pytest.mark.e2e


def test_a_checkpoint_held_outside_the_store_catches_the_newest_events_deleted(tmp_path: Path) -> None:
    key, held = tmp_path / "audit.pem", tmp_path / "checkpoints.jsonl"
    made = run_cli("audit", "keygen", "--out", str(key), data_dir=tmp_path)
    assert made.returncode == 0 and key.exists(), made.stdout + made.stderr
    data = tmp_path / "data"
    data.mkdir()
    env = {"REPLENISH_AUDIT_SIGNING_KEY": str(key), "REPLENISH_AUDIT_CHECKPOINT_FILE": str(held),
           "REPLENISH_AUDIT_CHECKPOINT_EVERY_MINUTES": "600"}  # only the two asked for below
    service = Service(data, env).start()
    try:
        t = now()
        with service.client("admin") as admin, service.client("scanner") as scanner, \
                service.client("auditor") as auditor:
            setup_master({"admin": admin}, t - timedelta(days=1))
            exp = (t + timedelta(days=300)).date().isoformat()
            assert statuses(post_events(scanner, [receipt("c-r", t - timedelta(minutes=30), 40, "L1", exp),
                                                  usage("c-u1", t - timedelta(minutes=20), 5, "L1")])) == ["accepted"] * 2
            first = admin.post("/v1/audit/checkpoints").json()
            assert auditor.get("/v1/audit/checkpoints/latest").json() == first
            published = auditor.get("/v1/audit/public-key").json()
            assert published["key_id"] == first["key_id"]
            assert statuses(post_events(scanner, [usage("c-u2", t - timedelta(minutes=10), 3, "L1")])) == ["accepted"]
            second = admin.post("/v1/audit/checkpoints").json()
            assert second["tree_size"] > first["tree_size"]
            # Proofs against the two signed roots, checked with the RFC's algorithms.
            from domain.merkle import verify_consistency, verify_inclusion
            c = auditor.get(f"/v1/audit/proof/consistency?first={first['tree_size']}&second={second['tree_size']}").json()
            assert (c["first_root"], c["second_root"]) == (first["root_hash"], second["root_hash"])
            assert verify_consistency(first["tree_size"], second["tree_size"], bytes.fromhex(first["root_hash"]),
                                      bytes.fromhex(second["root_hash"]), [bytes.fromhex(p) for p in c["proof"]])
            i = auditor.get(f"/v1/audit/proof/inclusion?notification=3&size={second['tree_size']}").json()
            assert verify_inclusion(bytes.fromhex(i["leaf_hash"]), i["leaf_index"], second["tree_size"],
                                    [bytes.fromhex(p) for p in i["proof"]], bytes.fromhex(second["root_hash"]))
            assert auditor.get(f"/v1/audit/proof/inclusion?notification=3&size={second['tree_size'] + 50}"
                               ).status_code == 404
    finally:
        service.stop()
    assert [orjson.loads(line)["tree_size"] for line in held.read_bytes().splitlines()] == \
        [first["tree_size"], second["tree_size"]]
    pem = tmp_path / "public.pem"
    printed = run_cli("audit", "public-key", data_dir=tmp_path, REPLENISH_AUDIT_SIGNING_KEY=str(key))
    assert printed.stdout == published["public_key"]
    pem.write_text(printed.stdout)

    ok = run_cli("audit", "verify", "--checkpoint", str(held), "--public-key", str(pem), data_dir=data)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "matches all 2 checkpoints" in ok.stdout

    # An export with its sidecar, proved against the newest checkpoint held outside the store.
    period = tmp_path / "period.jsonl"
    exported = run_cli("audit", "export", "--out", str(period), "--checkpoint", str(held), data_dir=data)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    side = orjson.loads((tmp_path / "period.jsonl.proofs.json").read_bytes())
    lines = period.read_bytes().splitlines()
    assert side["checkpoint"] == second and side["not_covered"] == []
    assert [p["notification_id"] for p in side["proofs"]] == [orjson.loads(x)["notification_id"] for x in lines]
    from domain.merkle import (  # (the outside party's own: tests/unit/test_checkpoints.py)
        leaf_hash,
        verify_inclusion,
    )
    for line, proof in zip(lines, side["proofs"], strict=True):
        leaf = leaf_hash(bytes.fromhex(orjson.loads(line)["state"]["hash"]))
        assert verify_inclusion(leaf, proof["leaf_index"], second["tree_size"],
                                [bytes.fromhex(h) for h in proof["audit_path"]], bytes.fromhex(second["root_hash"]))

    con = sqlite3.connect(data / "events.sqlite")  # the newest event of the usage's stock point goes
    with con:
        (rowid, stream, version) = con.execute(
            "SELECT rowid, originator_id, originator_version FROM stored_events WHERE originator_id LIKE 'sp:%' "
            "ORDER BY rowid DESC LIMIT 1").fetchone()
        con.execute("DELETE FROM stored_events WHERE originator_id = ? AND originator_version >= ?", (stream, version))
    con.close()
    chains = run_cli("audit", "verify", data_dir=data)
    assert chains.returncode == 0, chains.stdout  # every chain is still whole
    bad = run_cli("audit", "verify", "--checkpoint", str(held), "--public-key", str(pem), data_dir=data)
    out = bad.stdout + bad.stderr
    assert bad.returncode == 1, out
    assert f"checkpoint of {second['tree_size']} events" in out and "missing" in out, out
