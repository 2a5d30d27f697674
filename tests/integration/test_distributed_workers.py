"""The distributed profile against the real broker and database: Faust workers (``replenish
worker`` subprocesses) storing what a scanner gateway produces with ``confluent-kafka``,
exactly once through crashes and rebalances, with recalls reaching every partition."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from domain import codes as c
from streams.topics import PRINCIPAL, REASON, partition_of

from .distributed_world import (
    LOCATIONS,
    SKU,
    Deployment,
    master_data,
    on_hand,
    recorded_counts,
    stock,
    wait_for,
)


def _stored_ids(d: Deployment) -> set[str]:
    p = d.processor()
    try:
        return set(p.ledger.seen)
    finally:
        p.store.close()


def _wait_stored(d: Deployment, ids: set[str], timeout: float = 60) -> None:
    wait_for(lambda: ids <= _stored_ids(d), timeout, f"{len(ids)} events to be stored\n{d.logs()}", every=0.5)


def _stream(d: Deployment, events: list[dict], per_second: float) -> threading.Thread:
    """Produce ``events`` at a steady rate from a thread (as scanners would)."""
    def run() -> None:
        start = time.monotonic()
        for i, e in enumerate(events):
            d.produce([e], flush=False)
            ahead = start + i / per_second - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        assert d.producer.flush(30) == 0
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _mixed_stream(n: int) -> tuple[list[dict], dict[str, float]]:
    """Receipts and usages over six stock points; the stock each should end with."""
    at = datetime.now(UTC) - timedelta(minutes=2)
    events, expected = [], dict.fromkeys(LOCATIONS, 0.0)
    for i in range(n):
        loc = LOCATIONS[i % len(LOCATIONS)]
        kind, qty = ("receipt", 3.0) if (i // len(LOCATIONS)) % 3 == 0 else ("usage", 1.0)
        events.append(stock(f"s-{i}", kind, loc, qty, at=at + timedelta(milliseconds=i)))
        expected[loc] += qty if kind == "receipt" else -qty
    return events, expected


def _assert_counted_once(d: Deployment, events: list[dict], expected: dict[str, float]) -> None:
    counts = recorded_counts(d.store())
    ids = [e["event_id"] for e in events]
    assert [i for i in ids if counts.get(i) != 1] == [], "every event recorded exactly once"
    p = d.processor()
    assert {loc: on_hand(p, loc) for loc in LOCATIONS} == expected
    # Every consumed offset is in a tracking record: the last one of each partition.
    high = d.high_watermarks(d.topics.events)
    names = [f"{d.topics.events}-{part}" for part in high]
    assert d.positions(names) == {f"{d.topics.events}-{part}": h - 1 for part, h in high.items() if h}


@pytest.fixture
def one_worker(deployment: Deployment) -> Deployment:
    deployment.start_worker().wait_assigned()
    deployment.produce(master_data(), principal="gw-erp")
    _wait_stored(deployment, {e["event_id"] for e in master_data()})
    return deployment


def test_events_produced_by_a_gateway_come_out_as_stored_events_decisions_alerts_and_outcomes(
        one_worker: Deployment) -> None:
    d = one_worker
    now = datetime.now(UTC)
    events = [stock(f"r-{loc}", "receipt", loc, 10, expiry="2027-06-30", at=now - timedelta(minutes=2))
              for loc in LOCATIONS]
    events += [stock(f"u-{loc}-{i}", "usage", loc, 1, at=now - timedelta(minutes=1, seconds=-i))
               for loc in LOCATIONS for i in range(4)]
    events += [stock("u-W1-all", "usage", "W1", 6),  # W1 runs out: a stockout alert
               stock("r-old", "receipt", "W2", 5, lot="OLD", expiry="2026-01-31"),
               stock("u-old", "usage", "W2", 1, lot="OLD")]  # an expired lot at the bedside
    d.produce(events)
    _wait_stored(d, {e["event_id"] for e in events})

    p = d.processor()
    assert on_hand(p, "W1") == 0 and on_hand(p, "W3") == 6
    assert p.event_outcome("u-old")["status"] == "rejected"
    assert p.event_outcome("u-W3-0") == {"event_id": "u-W3-0", "status": "accepted", "errors": [],
                                         "flags": [], "recorded_by": "gw-ward"}

    outcomes = [orjson.loads(m.value()) for m in d.read_topic(d.topics.outcomes, len(events) + 7)]
    by_id = {o["event_id"]: o for o in outcomes}
    assert set(by_id) >= {e["event_id"] for e in events}
    assert by_id["u-old"]["status"] == "rejected" and by_id["u-old"]["errors"][0]["code"] == c.EXPIRED_LOT
    # The gateway's partitioner and the workers' idea of which stock point a partition holds agree.
    assert all(by_id[e["event_id"]]["partition"] == partition_of(f"{SKU}@{e['location']}", 6) for e in events)

    decisions = [orjson.loads(m.value()) for m in d.read_topic(d.topics.decisions, len(LOCATIONS))]
    assert {x["decision"]["location"] for x in decisions} == set(LOCATIONS)
    assert len({x["notification_id"] for x in decisions}) == len(decisions)
    for m in d.read_topic(d.topics.decisions, 1):
        sku, _, location = m.key().decode().partition("@")
        assert (sku, location) == (SKU, orjson.loads(m.value())["decision"]["location"])

    alerts = [orjson.loads(m.value()) for m in d.read_topic(d.topics.alerts, 2)]
    raised = {(a["alert"]["kind"], a["alert"]["location"]) for a in alerts if "alert" in a}
    assert {(c.ALERT_STOCKOUT, "W1"), (c.ALERT_EXPIRED_LOT_SCANNED, "W2")} <= raised


def test_a_message_that_is_not_an_event_lands_on_the_dead_letter_topic_with_its_reason(
        one_worker: Deployment) -> None:
    d = one_worker
    events = d.topics.events
    d.produce_raw(events, b"{not json", "W1", [(PRINCIPAL, b"gw-ward")])
    d.produce_raw(events, b"[1, 2]", "W1", [(PRINCIPAL, b"gw-ward")])
    d.produce_raw(events, orjson.dumps(stock("anon", "usage", "W1", 1)), f"{SKU}@W1", [])
    d.produce_raw(events, orjson.dumps(stock("stranger", "usage", "W1", 1)), f"{SKU}@W1",
                  [(PRINCIPAL, b"mallory")])
    d.produce([stock("after", "receipt", "W1", 4)])  # the worker goes on after them

    dead = d.read_topic(d.topics.dead_letter, 4)
    reasons = sorted(dict(m.headers())[REASON].decode() for m in dead)
    assert len(reasons) == 4
    assert reasons[0].startswith("no 'principal' header")
    assert reasons[1].startswith("not JSON")
    assert reasons[2].startswith("not an event: a JSON list")
    assert reasons[3].startswith("unknown principal 'mallory'")
    assert {m.value() for m in dead} >= {b"{not json", b"[1, 2]"}  # as received, to send again
    _wait_stored(d, {"after"})
    seen = _stored_ids(d)
    assert "anon" not in seen and "stranger" not in seen


def test_a_worker_killed_mid_stream_and_started_again_counts_every_event_once(one_worker: Deployment) -> None:
    d = one_worker
    first = d.processes[0]
    events, expected = _mixed_stream(3000)
    streaming = _stream(d, events, per_second=1500)
    base = d.stored_position()
    wait_for(lambda: d.stored_position() > base + 600, 30, "the worker to store part of the stream")
    first.kill()  # SIGKILL, mid-stream: batches in flight, offsets not committed to Kafka
    at_kill = len(set(recorded_counts(d.store())) & {e["event_id"] for e in events})
    assert 0 < at_kill < len(events)
    # Kafka's committed offsets lag behind what is stored: without the tracking records, the
    # next worker would be given those events again and count them twice.
    committed = d.committed(d.topics.events)
    tracked = d.positions([f"{d.topics.events}-{part}" for part in committed])
    assert any((committed[part] or 0) <= tracked.get(f"{d.topics.events}-{part}", -1) for part in committed)

    second = d.start_worker()
    second.wait_assigned()
    streaming.join(60)
    _wait_stored(d, {e["event_id"] for e in events}, timeout=90)
    _assert_counted_once(d, events, expected)
    assert "resuming from tracking records" in second.log()


def test_stopping_one_of_two_workers_moves_its_partitions_to_the_other_with_the_same_guarantee(
        one_worker: Deployment) -> None:
    d = one_worker
    first = d.processes[0]
    second = d.start_worker()
    second.wait_assigned()
    wait_for(lambda: first.events_partitions([ln for ln in first.log().splitlines() if "] assigned [" in ln][-1]) < 6,
             30, "the partitions to be shared")
    events, expected = _mixed_stream(3000)
    streaming = _stream(d, events, per_second=1500)
    base = d.stored_position()
    wait_for(lambda: d.stored_position() > base + 600, 30, "the workers to store part of the stream")
    first.stop()  # SIGTERM: it leaves the group, its partitions move to the other worker
    second.wait_assigned(partitions=6)
    streaming.join(60)
    _wait_stored(d, {e["event_id"] for e in events}, timeout=90)
    _assert_counted_once(d, events, expected)


def test_a_recall_posted_while_scans_stream_in_on_other_partitions_leaves_no_later_scan_silently_counted(
        one_worker: Deployment) -> None:
    d = one_worker
    d.start_worker().wait_assigned()
    # Receipts of the lot everywhere; the stock points spread over the partitions (and so over
    # the two workers), while the reference topic, with the recall, is one worker's.
    spread = {partition_of(f"{SKU}@{loc}", 6) for loc in LOCATIONS}
    assert len(spread) >= 3
    receipts = [stock(f"r-{loc}", "receipt", loc, 500, lot="L1") for loc in LOCATIONS]
    d.produce(receipts)
    _wait_stored(d, {e["event_id"] for e in receipts})

    recall_at = datetime.now(UTC) - timedelta(minutes=5)
    scans = []  # device time runs from 30 s before the recall to 60 s after it
    for i in range(900):
        at = recall_at + timedelta(milliseconds=100 * i - 30_000)
        scans.append(stock(f"scan-{i}", "usage", LOCATIONS[i % 6], 1, lot="L1", at=at))
    # Some scans after the recall's instant are stored before anyone knows of the recall...
    early = [s for s in scans[300:360]]
    d.produce(early)
    _wait_stored(d, {s["event_id"] for s in early})
    # ...then the recall is posted while the other scans stream in.
    rest = scans[:300] + scans[360:]
    streaming = _stream(d, rest[:150], per_second=1000)
    streaming.join(30)
    d.produce([{"event_id": "recall-1", "type": "recall_issued", "occurred_at": recall_at.isoformat(),
                "sku": SKU, "lots": ["L1"], "reference": "FSCA-1", "recall_class": "I"}],
              principal="gw-erp")
    _stream(d, rest[150:], per_second=1000).join(60)
    _wait_stored(d, {s["event_id"] for s in scans} | {"recall-1"})

    def later_scans_refused_or_flagged() -> list[str]:
        p = d.processor()
        silent = []
        for s in scans:
            if s["occurred_at"] < recall_at.isoformat():
                continue
            o = p.event_outcome(s["event_id"])
            refused = o["status"] == "rejected" and o["errors"][0]["code"] == c.RECALLED_LOT
            flagged = o["status"] == "accepted" and c.RECALLED_LOT_USED in o["flags"]
            if not (refused or flagged):
                silent.append(s["event_id"])
        return silent

    # Uses stored before a worker knew of the recall are flagged once it does (each worker
    # follows the store's log, and flags those of its own stock points).
    wait_for(lambda: not later_scans_refused_or_flagged(), 30,
             "every scan after the recall to be refused or flagged")
    p = d.processor()
    assert all(c.RECALLED_LOT_USED in p.event_outcome(s["event_id"])["flags"] for s in early)
    alerts = [orjson.loads(m.value()) for m in d.read_topic(d.topics.alerts, 60)]
    used = {a["alert"]["event_id"] for a in alerts if a.get("alert", {}).get("kind") == c.ALERT_RECALLED_LOT_USED}
    assert {s["event_id"] for s in early} <= used


def test_hostile_messages_produced_straight_to_kafka_end_as_refusals_and_never_stop_a_partition(
        one_worker: Deployment) -> None:
    d = one_worker
    d.produce([stock("r-W1", "receipt", "W1", 10)])
    _wait_stored(d, {"r-W1"})
    long_id = "X" * 200_000  # (a megabyte is past the broker's message size)
    bad = [stock(long_id, "usage", "W1", 1), stock("nul\u0000id", "usage", "W1", 1),
           stock("u-lot", "usage", "W1", 1, lot="L\u0007"),
           stock("u-old", "usage", "W1", 1, at=datetime(2001, 1, 1, tzinfo=UTC)),
           stock("u-half", "usage", "W1", 0.5)]
    d.produce(bad + [stock("after", "usage", "W1", 2)])
    _wait_stored(d, {"after"})
    outcomes = {o["event_id"]: o for o in (orjson.loads(m.value()) for m in d.read_topic(d.topics.outcomes, 7))}
    codes = {eid: (o["status"], o["errors"][0]["code"]) for eid, o in outcomes.items() if o["errors"]}
    assert sorted(codes.values()) == sorted([("rejected", c.MALFORMED)] * 3 + [
        ("rejected", c.STALE_TIMESTAMP), ("rejected", c.INVALID_QUANTITY)])
    assert all(len(eid) < 100 for eid in codes)
    p = d.processor()
    assert on_hand(p, "W1") == 8
