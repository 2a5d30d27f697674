"""The data directory as an operator sees it, and the ``replenish`` CLI."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from .support import (
    BIN,
    GTIN_EACH,
    SITE,
    SKU,
    Service,
    free_port,
    iso,
    now,
    post_events,
    receipt,
    run_cli,
    service_env,
    setup_master,
    statuses,
    stock_point,
    usage,
)

pytestmark = pytest.mark.e2e


def test_editing_one_stored_event_makes_audit_verify_exit_1_naming_its_stream_and_version(service, clients):
    t = now()
    setup_master(clients, t - timedelta(days=1))
    exp = (t + timedelta(days=300)).date().isoformat()
    assert statuses(post_events(clients["scanner"], [
        receipt("t-r", t - timedelta(minutes=30), 40, "L1", exp),
        usage("t-u1", t - timedelta(minutes=20), 5, "L1"),
        usage("t-u2", t - timedelta(minutes=10), 3, "L1"),
    ])) == ["accepted"] * 3
    assert clients["auditor"].get("/v1/audit/verify").json()["ok"] is True
    service.stop()

    ok = run_cli("audit", "verify", data_dir=service.data_dir)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok" in ok.stdout

    # Find the stored event of usage t-u1 and change one byte of it: 5 used becomes 1 used.
    db = service.data_dir / "events.sqlite"
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT originator_id, originator_version, state FROM stored_events "
                           "WHERE originator_id LIKE 'sp:%'").fetchall()
        (stream, version, state), = [r for r in rows if b'"event_id":"t-u1"' in bytes(r[2])]
        assert b'"quantity":5.0' in bytes(state)
        forged = bytes(state).replace(b'"quantity":5.0', b'"quantity":1.0', 1)
        assert len(forged) == len(state) and forged != bytes(state)
        with con:
            con.execute("UPDATE stored_events SET state = ? WHERE originator_id = ? AND originator_version = ?",
                        (forged, stream, version))
    finally:
        con.close()

    bad = run_cli("audit", "verify", data_dir=service.data_dir)
    out = bad.stdout + bad.stderr
    assert bad.returncode == 1, out
    assert f"'{stream}'" in out and f"version {version}" in out, out
    assert "broken" in out

    # The service over the edited store reports the same first broken link.
    service.start()
    with service.client("auditor") as auditor:
        report = auditor.get("/v1/audit/verify").json()
    assert report["ok"] is False
    assert (report["broken"]["stream"], report["broken"]["version"]) == (stream, version)


def test_audit_verify_of_a_data_directory_without_a_store_is_an_error_not_ok(tmp_path):
    missing = tmp_path / "no-such-dir"
    done = run_cli("audit", "verify", data_dir=tmp_path, REPLENISH_DATA_DIR=str(missing))
    out = done.stdout + done.stderr
    assert done.returncode not in (0, 1), out
    assert "events.sqlite" in out and "ok" not in out.lower().split(), out
    assert not missing.exists()


def _all_bytes(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file()}


def _spellings(clear: str) -> list[bytes]:
    """The ways a text may sit in a file: UTF-8, JSON-escaped, UTF-16."""
    return [clear.encode(), json.dumps(clear).encode()[1:-1], clear.encode("utf-16-le"),
            clear.lower().encode(), clear.upper().encode()]


def test_no_case_id_appears_in_clear_anywhere_in_the_data_directory(service, clients):
    t = now()
    setup_master(clients, t - timedelta(days=1))
    exp = (t + timedelta(days=300)).date().isoformat()
    cases = ["OR-CASE-88213", "CASE/2026/ORTHO/0042", "Zimmer-Patient-Case-Ünïcode-77"]
    assert statuses(post_events(clients["scanner"], [receipt("c-r", t - timedelta(minutes=30), 50, "L1", exp)])) == [
        "accepted"]
    events = [
        usage("c-u1", t - timedelta(minutes=20), 1, "L1", case_id=cases[0]),
        usage("c-u2", t - timedelta(minutes=19), 1, "L1", case_id=cases[0]),  # the same case again
        usage("c-u3", t - timedelta(minutes=18), 1, "L1", case_id=cases[1], patient_id=cases[2]),
        # Refused events are stored too: an unknown location, a bad quantity, an unknown item.
        usage("c-bad-loc", t - timedelta(minutes=17), 1, "L1", location="NOWHERE", case_id=cases[1]),
        usage("c-bad-qty", t - timedelta(minutes=17), -1, "L1", case_id=cases[2]),
        {"event_id": "c-bad-item", "type": "usage", "occurred_at": iso(t), "site": SITE, "location": "W3",
         "sku": "NO-SUCH", "quantity": 1, "case_id": cases[2]},
        {"event_id": "c-no-type", "case_id": cases[0]},
    ]
    results = post_events(clients["scanner"], events)
    assert statuses(results) == ["accepted"] * 3 + ["rejected"] * 4, results
    # An event id re-used with other content (refused as event_id_reused), and a scan with a case.
    assert post_events(clients["scanner"], [{**events[0], "quantity": 2}])[0]["errors"][0]["code"] == "event_id_reused"
    r = clients["scanner"].post("/v1/scans", json={
        "barcode": "]d2" + "01" + GTIN_EACH + "10L1", "location": "W3", "site": SITE, "event_id": "c-scan",
        "case_id": cases[1], "occurred_at": iso(t - timedelta(minutes=5))})
    assert r.json()["results"][0]["status"] == "accepted"

    # The case id is pseudonymised, and the same case always maps to the same pseudonym.
    hist = clients["auditor"].get(f"/v1/audit/stock-points/{SKU}/W3/events").json()
    stored = {e["event"]["event_id"]: e["event"] for e in hist["events"] if "event" in e}
    pseudonyms = {eid: ev.get("case_id") for eid, ev in stored.items() if ev.get("case_id")}
    assert set(pseudonyms) >= {"c-u1", "c-u2", "c-u3", "c-scan"}
    assert all(p.startswith("ps_") and p not in cases for p in pseudonyms.values())
    assert pseudonyms["c-u1"] == pseudonyms["c-u2"] != pseudonyms["c-u3"]
    assert pseudonyms["c-u3"] == pseudonyms["c-scan"]
    assert stored["c-u3"]["patient_id"].startswith("ps_")

    def leaks() -> list[tuple[str, str]]:
        found = []
        for name, content in _all_bytes(service.data_dir).items():
            for case in cases:
                if any(s in content for s in _spellings(case)):
                    found.append((name, case))
        return found

    # While running (the write-ahead log holds the latest pages) and after a clean stop.
    files = _all_bytes(service.data_dir)
    assert any(name.endswith("-wal") for name in files) or "events.sqlite" in files
    assert leaks() == []
    service.stop()
    files = _all_bytes(service.data_dir)
    assert "events.sqlite" in files and sum(map(len, files.values())) > 0
    assert leaks() == []
    # The check would have seen them: the store does hold the pseudonyms.
    assert any(pseudonyms["c-u1"].encode() in content for content in files.values())


def _start_expecting_failure(tmp_path: Path, **env: str | None) -> tuple[int, str]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(free_port())], env={
        **service_env(data, **env), "COLUMNS": "200"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the service started (or hung) instead of refusing: {out}")
    return proc.returncode, out


@pytest.mark.parametrize(("env", "named"), [
    ({"REPLENISH_API_KEYS": None}, "REPLENISH_API_KEYS"),
    ({"REPLENISH_API_KEYS": ""}, "REPLENISH_API_KEYS"),
    ({"REPLENISH_API_KEYS": "k1:superuser"}, "REPLENISH_API_KEYS"),
    ({"REPLENISH_CASE_ID_KEY": None}, "REPLENISH_CASE_ID_KEY"),
    ({"REPLENISH_CASE_ID_KEY": ""}, "REPLENISH_CASE_ID_KEY"),
    ({"REPLENISH_API_KEYS": None, "REPLENISH_CASE_ID_KEY": None, "REPLENISH_DEV": "0"}, "REPLENISH_"),
], ids=["no-api-keys", "empty-api-keys", "unknown-role", "no-case-id-key", "empty-case-id-key", "neither"])
def test_the_service_refuses_to_start_without_keys_outside_dev_mode(tmp_path, env, named):
    code, out = _start_expecting_failure(tmp_path, **env)
    assert code != 0, out
    assert named in out, out
    assert "error" in out.lower(), out
    assert "Traceback" not in out, out
    assert "Uvicorn running" not in out


def test_dev_mode_invents_keys_and_starts(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    log = tmp_path / "dev.log"
    with log.open("w") as f:
        proc = subprocess.Popen([str(BIN), "serve", "--port", str(port)], stdout=f, stderr=subprocess.STDOUT,
                                env={**service_env(data, REPLENISH_API_KEYS=None, REPLENISH_CASE_ID_KEY=None,
                                                   REPLENISH_DEV="1"), "COLUMNS": "200"})
    svc = Service(data)
    svc.proc, svc.port, svc.base = proc, port, f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{svc.base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        printed = log.read_text()
        keys = dict((role, key) for key, role in re.findall(r"(dev-(\w+)-[0-9a-f]{16})", printed))
        assert set(keys) >= {"scanner", "buyer", "auditor", "admin"}, printed
        r = httpx.get(f"{svc.base}/v1/alerts", headers={"Authorization": f"Bearer {keys['buyer']}"})
        assert r.status_code == 200
        assert (data / "dev-case-id.key").exists()
    finally:
        svc.stop()


def test_demo_runs_end_to_end_and_exits_0(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    done = run_cli("demo", "--no-stay", "--port", str(port), "--scans", "60", data_dir=data, timeout=120,
                   REPLENISH_API_KEYS=None, REPLENISH_CASE_ID_KEY=None)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Traceback" not in out
    assert "hash chains: ok" in out, out
    counts = re.search(r"outcomes: (\{[^}]*\})", out)
    assert counts, out
    outcomes = eval(counts.group(1), {})  # a printed dict of str -> int
    assert outcomes.get("accepted", 0) >= 60 and outcomes.get("duplicate", 0) >= 1, outcomes
    assert (data / "events.sqlite").exists()

    # What the demo left behind verifies and replays to the same state.
    verify = run_cli("audit", "verify", data_dir=data)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    replay = run_cli("replay", data_dir=data, REPLENISH_API_KEYS=None, REPLENISH_CASE_ID_KEY=None,
                     REPLENISH_DEV="1")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "equal" in replay.stdout


def test_replay_of_a_served_store_equals_the_live_state(service, clients):
    t = now()
    setup_master(clients, t - timedelta(days=1))
    exp = (t + timedelta(days=300)).date().isoformat()
    post_events(clients["scanner"], [receipt("p-r", t - timedelta(minutes=30), 10, "L1", exp),
                                     usage("p-u", t - timedelta(minutes=20), 12, "L1"),
                                     usage("p-bad", t, 0, "L1")])
    assert stock_point(clients["buyer"], SKU, "W3")["on_hand"] == -2
    replay = run_cli("replay", "--url", service.base, data_dir=service.data_dir,
                     REPLENISH_AUDIT_KEY=clients["auditor"].headers["Authorization"].split()[1])
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "equal" in replay.stdout
