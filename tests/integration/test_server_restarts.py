"""A PostgreSQL restart and a Kafka broker restart under load (issue 14, item 2): a gateway keeps
producing receipts and uses while the server goes down and comes back (``infra/postgres`` and
``infra/kafka``'s own stop and start scripts, as an operator or a host reboot would); the
worker waits the outage out, and at the end every event is stored exactly once and each stock
point's on-hand is what was sent.

``bench/faults.py postgres kafka`` runs these many times.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from streams.store import EventStore

from .distributed_world import (
    LOCATIONS,
    ROOT,
    Deployment,
    master_data,
    on_hand,
    recorded_counts,
    wait_for,
)
from .test_rebalance_torture import SteadyStream

DOWN_SECONDS = 5.0
STORED_WITHIN_S = 120.0


def restart(server: str) -> None:
    """``infra/<server>/stop``, ``DOWN_SECONDS`` down, ``infra/<server>/start``."""
    for step in ("stop", "start"):
        done = subprocess.run(["bash", str(ROOT / "infra" / server / step)], capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"infra/{server}/{step} failed:\n{done.stderr[-3000:]}"
        if step == "stop":
            time.sleep(DOWN_SECONDS)


def master(d: Deployment) -> None:
    d.produce(master_data(), principal="gw-erp")
    wait_for(lambda: {e["event_id"] for e in master_data()} <= d.stored_ids(), 60,
             "the master data to be stored", every=0.5)


def through(d: Deployment, fault: Callable[[], None], what: str) -> tuple[SteadyStream, set[str], EventStore]:
    """A steady stream for 3 s, ``fault``, 3 s more; then wait until every event produced is
    stored: the stream, its event ids and the store."""
    stream = SteadyStream(d, per_second=200.0).start()
    try:
        time.sleep(3.0)
        fault()
        time.sleep(3.0)
    finally:
        stream.stop()
    ids = {e["event_id"] for e in stream.events}
    store = d.store()
    wait_for(lambda: ids <= set(recorded_counts(store)), STORED_WITHIN_S,
             f"every event produced to be stored after {what}\n{d.logs()}", every=1.0)
    return stream, ids, store


def under_load(d: Deployment, server: str) -> None:
    d.start_worker().wait_assigned()
    master(d)
    stream, ids, store = through(d, lambda: restart(server), f"the {server} restart")
    counts = recorded_counts(store)
    assert [i for i in ids if counts.get(i) != 1] == [], "every event stored exactly once"
    p = d.processor()
    assert {loc: on_hand(p, loc) for loc in LOCATIONS} == stream.expected
    assert len(ids) >= 1_000  # the stream kept producing through the outage


def test_a_postgresql_restart_under_load_loses_nothing_and_stores_nothing_twice(deployment: Deployment) -> None:
    under_load(deployment, "postgres")


def test_a_kafka_broker_restart_under_load_loses_nothing_and_stores_nothing_twice(deployment: Deployment) -> None:
    under_load(deployment, "kafka")


def test_the_relay_killed_mid_stream_is_taken_over_and_publishes_every_decision_and_alert_in_order(
        deployment: Deployment) -> None:
    """Two workers, each with a relay; the one publishing is killed (SIGKILL) while decisions
    and alerts are being made. The other takes over: every stored decision and alert reaches
    its topic (at least once: a message published again carries the same ``notification_id``),
    and per stock point, with repeats dropped, in the order stored."""
    import orjson

    from streams.relay import CHANGED, DECIDED, RAISED, REPEATED

    d = deployment
    first = d.start_worker()
    first.wait_assigned()
    wait_for(lambda: "relay: publishing" in first.log(), 30, "the first worker's relay to publish")
    second = d.start_worker()
    master(d)

    def kill_the_publisher() -> None:
        first.kill()
        wait_for(lambda: "relay: publishing" in second.log(), 60, f"the second worker's relay to publish\n{d.logs()}")

    _, _, store = through(d, kill_the_publisher, "the relay's worker was killed")
    relayed_kinds = {DECIDED, RAISED, CHANGED, REPEATED}
    stored = [(n.id, n.originator_id) for n in store.notifications() if n.topic in relayed_kinds]
    assert len(stored) > 100

    def published() -> list[tuple[str, dict]]:
        return [(topic, orjson.loads(m.value())) for topic in (d.topics.decisions, d.topics.alerts)
                for m in d.read_topic(topic, 1, timeout=5)]

    wait_for(lambda: {i for i, _ in stored} <= {m["notification_id"] for _, m in published()}, 90,
             f"every stored decision and alert to be published\n{d.logs()}", every=2.0)
    by_stream: dict[tuple[str, str], list[int]] = {}
    for topic, m in published():  # a stock point's messages share a partition: read in its order
        seen = by_stream.setdefault((topic, m["stream"]), [])
        if m["notification_id"] not in seen:
            seen.append(m["notification_id"])
    assert len(by_stream) >= len(LOCATIONS)
    for key, order in by_stream.items():
        assert order == sorted(order), key
