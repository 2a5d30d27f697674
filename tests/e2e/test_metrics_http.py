"""What operators scrape and read (issue 16, section 3): exact counts on /metrics after a known
workload (read with prometheus_client's own parser), who may scrape from where, /readyz, and
logs as JSON lines that never hold a key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .support import (
    KEYS,
    Service,
    future_expiry,
    now,
    post_events,
    receipt,
    setup_master,
    statuses,
    usage,
)

pytestmark = pytest.mark.e2e


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    (tmp_path / "data").mkdir()
    service = Service(tmp_path / "data", {"REPLENISH_LOG_FORMAT": "json"}).start()
    try:
        yield service
    finally:
        service.stop()


def test_metrics_count_a_known_workload_exactly(svc: Service):
    clients = {role: svc.client(role) for role in KEYS}
    t = now()
    setup_master(clients, t)  # 3 master data events, accepted
    results = post_events(clients["scanner"], [
        receipt("m-r1", t, 10, "L1", future_expiry()), usage("m-u1", t, 1, "L1"), usage("m-u2", t, 2, "L1"),
        {"event_id": "m-bad1", "type": "usage"},                      # missing fields
        {**usage("m-bad2", t, 1, "L1"), "quantity": -3},               # invalid quantity
        usage("m-u1", t, 1, "L1")])                                    # sent again
    assert statuses(results) == ["accepted", "accepted", "accepted", "rejected", "rejected", "duplicate"]
    first_codes = [r["errors"][0]["code"] for r in results if r["status"] == "rejected"]
    got = samples(httpx.get(f"{svc.base}/metrics", timeout=30).text)
    events = {labels: v for (name, labels), v in got.items() if name == "replenish_events_total"}
    expected = {(("code", "none"), ("outcome", "accepted")): 6.0, (("code", "none"), ("outcome", "duplicate")): 1.0}
    for code in first_codes:
        key = (("code", code), ("outcome", "rejected"))
        expected[key] = expected.get(key, 0.0) + 1
    assert events == expected
    assert got[("replenish_batch_events_count", ())] == 2.0  # two requests, two batches
    assert got[("replenish_batch_events_sum", ())] == 9.0
    posts = (("method", "POST"), ("route", "/v1/events"), ("status", "2xx"))
    assert got[("replenish_http_request_seconds_count", posts)] == 2.0
    assert got[("replenish_ingest_queued_events", ())] == 0.0
    # The queue's bound follows the drain rate measured over the two batches, between one
    # largest request (REPLENISH_MAX_BATCH, 10,000) and REPLENISH_MAX_QUEUED_EVENTS (50,000).
    assert 10_000 <= got[("replenish_ingest_queue_limit_events", ())] <= 50_000
    open_alerts = {dict(labels)["kind"]: v for (name, labels), v in got.items() if name == "replenish_open_alerts"}
    with svc.client("auditor") as auditor:
        listed = [a for a in auditor.get("/v1/alerts", params={"status": "open"}).json()["alerts"]]
    assert open_alerts == {kind: float(sum(1 for a in listed if a["kind"] == kind)) for kind in {a["kind"] for a in listed}}
    for c in clients.values():
        c.close()


def test_ready_only_when_the_store_and_engine_answer(svc: Service):
    r = httpx.get(f"{svc.base}/readyz", timeout=30)
    assert r.status_code == 200 and r.json() == {"status": "ready", "checks": {"store": "ok", "engine": "ok"}}


def test_logs_are_json_lines_and_never_hold_a_key(svc: Service):
    with svc.client("scanner") as scanner:
        post_events(scanner, [{"event_id": "log-1", "type": "usage"}])
    httpx.get(f"{svc.base}/metrics", timeout=30)
    svc.stop()
    lines = [line for line in svc.log().splitlines() if line.startswith("{")]
    assert len(lines) >= 4
    for line in lines:
        record = json.loads(line)
        assert {"ts", "level", "logger", "message"} <= record.keys()
    log = svc.log()
    assert not any(key in log for key in KEYS.values())


def test_from_elsewhere_metrics_need_an_auditors_or_admins_key(tmp_path: Path):
    (tmp_path / "data").mkdir()
    svc = Service(tmp_path / "data", {"REPLENISH_METRICS_ALLOW": "10.99.0.0/16"}).start()  # not loopback
    try:
        assert httpx.get(f"{svc.base}/metrics", timeout=30).status_code == 401
        for role, want in (("scanner", 403), ("buyer", 403), ("auditor", 200), ("admin", 200)):
            r = httpx.get(f"{svc.base}/metrics", headers={"Authorization": f"Bearer {KEYS[role]}"}, timeout=30)
            assert r.status_code == want, (role, r.status_code)
    finally:
        svc.stop()
