"""Invariants 1 and 2 across a crash: SIGKILL during batch POSTs loses no acknowledged event
and counts none twice once everything is re-sent."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest

from .support import KEYS, SKU, Service, now, receipt, setup_master, stock_point, usage

pytestmark = pytest.mark.e2e

LOCATIONS = ("W1", "W2", "W3", "W4")
BATCHES = 40
PER_BATCH = 400
SEED = int(os.environ.get("REPLENISH_CRASH_SEED", "11"))  # bench/faults.py runs many


def make_batches(seed: int = SEED) -> tuple[list[list[dict[str, Any]]], Counter[str], Counter[str]]:
    """Receipts and usages over four stock points; the expected on-hand and event count of each."""
    rng = random.Random(seed)
    t = now()
    expiry = (t + timedelta(days=300)).date().isoformat()
    expected: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    batches = []
    for b in range(BATCHES):
        batch = []
        for j in range(PER_BATCH):
            loc = rng.choice(LOCATIONS)
            at = t - timedelta(seconds=rng.randint(60, 1800))
            eid = f"crash-{b}-{j}"
            if rng.random() < 0.3:
                q = rng.randint(1, 50)
                batch.append(receipt(eid, at, q, "L1", expiry, location=loc))
                expected[loc] += q
            else:
                q = rng.randint(1, 5)
                batch.append(usage(eid, at, q, "L1", location=loc))
                expected[loc] -= q
            counts[loc] += 1
        batches.append(batch)
    return batches, expected, counts


def test_sigkill_during_batch_posts_loses_no_acknowledged_event_and_counts_none_twice(service: Service):
    batches, expected, counts = make_batches()
    # Each location first receives the lot, so that no usage is of a lot it never received
    # (which would be recorded as an implied transfer in, leaving its stock unchanged).
    t = now()
    opening = [receipt(f"open-{loc}", t - timedelta(hours=1), 100, "L1", (t + timedelta(days=300)).date().isoformat(),
                       location=loc) for loc in LOCATIONS]
    with service.client("admin") as admin, service.client("scanner") as scanner:
        setup_master({"admin": admin}, t - timedelta(days=1), LOCATIONS)
        assert {r["status"] for r in scanner.post("/v1/events", json=opening).json()["results"]} == {"accepted"}
    for loc in LOCATIONS:
        expected[loc] += 100
        counts[loc] += 1

    acked: dict[int, list[dict[str, Any]]] = {}
    failed: dict[int, str] = {}
    lock = threading.Lock()

    def poster(indexes: list[int]) -> None:
        with httpx.Client(base_url=service.base, timeout=60,
                          headers={"Authorization": f"Bearer {KEYS['scanner']}"}) as client:
            for i in indexes:
                try:
                    r = client.post("/v1/events", json=batches[i])
                    r.raise_for_status()
                    results = r.json()["results"]
                except (httpx.HTTPError, ValueError) as exc:
                    with lock:
                        failed[i] = repr(exc)
                    return
                with lock:
                    acked[i] = results

    # Two clients at once, so the embedded runner also merges requests into one batch.
    threads = [threading.Thread(target=poster, args=(list(range(k, BATCHES, 2)),)) for k in (0, 1)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 60
    kill_after = random.Random(SEED).randint(BATCHES // 6, BATCHES // 2)  # batches acknowledged first
    while len(acked) < kill_after:
        assert time.monotonic() < deadline, "the service acknowledged too few batches"
        assert all(th.is_alive() for th in threads), f"a poster stopped early: {failed}"
        time.sleep(0.002)
    service.kill()  # SIGKILL, with both clients mid-request
    for th in threads:
        th.join(timeout=60)
    assert service.proc is not None and service.proc.returncode == -9

    assert acked and failed, (len(acked), failed)
    assert len(acked) < BATCHES
    for i, results in acked.items():
        assert [r["status"] for r in results] == ["accepted"] * PER_BATCH, i
        assert [r["event_id"] for r in results] == [e["event_id"] for e in batches[i]]

    service.start()  # the same data directory
    with service.client("scanner") as scanner, service.client("auditor") as auditor:
        # Before any re-send: what was acknowledged is there (and possibly what was in flight).
        survived = 0
        for loc in LOCATIONS:
            hist = auditor.get(f"/v1/audit/stock-points/{SKU}/{loc}/events").json()
            survived += sum(1 for e in hist["events"] if e["kind"] == "Recorded")
        acked_events = len(acked) * PER_BATCH
        assert acked_events <= survived <= acked_events + len(failed) * PER_BATCH + PER_BATCH * 2

        resent: dict[int, list[str]] = {}
        for i, batch in enumerate(batches):
            r = scanner.post("/v1/events", json=batch)
            assert r.status_code == 200, r.text
            resent[i] = [x["status"] for x in r.json()["results"]]
        for i in acked:
            assert resent[i] == ["duplicate"] * PER_BATCH, f"acknowledged batch {i}: {Counter(resent[i])}"
        for i in set(range(BATCHES)) - set(acked):
            # An unacknowledged batch was stored whole or not at all.
            assert set(resent[i]) in ({"accepted"}, {"duplicate"}), f"batch {i}: {Counter(resent[i])}"

        # A second re-send after recovery is all duplicates.
        again = scanner.post("/v1/events", json=batches[-1]).json()["results"]
        assert {x["status"] for x in again} == {"duplicate"}

        with service.client("buyer") as buyer:
            for loc in LOCATIONS:
                assert stock_point(buyer, SKU, loc)["on_hand"] == expected[loc], loc
        for loc in LOCATIONS:
            hist = auditor.get(f"/v1/audit/stock-points/{SKU}/{loc}/events").json()
            ids = [e["event"]["event_id"] for e in hist["events"] if e["kind"] == "Recorded"]
            assert len(ids) == len(set(ids)) == counts[loc], loc
            assert hist["state"]["on_hand"] == expected[loc]
        assert auditor.get("/v1/audit/verify").json()["ok"] is True
