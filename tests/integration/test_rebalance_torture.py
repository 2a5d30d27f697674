"""Rebalances that always resume: under a steady stream of scans, workers are started,
stopped (SIGTERM) and killed (SIGKILL) at random; after every round each partition of the
events topic stores what was produced before the round within 45 s (the session timeout plus
the stall check), and at the end every event is counted once.

CI runs ``REPLENISH_TORTURE_ROUNDS`` rounds (default 5); ``bench/faults.py rebalance`` runs 20.
"""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta

from .distributed_world import (
    LOCATIONS,
    Deployment,
    Worker,
    master_data,
    on_hand,
    recorded_counts,
    stock,
    wait_for,
)

ROUNDS = int(os.environ.get("REPLENISH_TORTURE_ROUNDS", "5"))
SEED = int(os.environ.get("REPLENISH_TORTURE_SEED", "20261207"))
RESUME_WITHIN_S = 45.0


class SteadyStream:
    """A gateway producing receipts and uses over the six stock points at a steady rate, in a
    thread, until stopped; what each stock point should end with."""

    def __init__(self, d: Deployment, per_second: float) -> None:
        self.d, self.per_second = d, per_second
        self.events: list[dict] = []
        self.expected = dict.fromkeys(LOCATIONS, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._at = datetime.now(UTC) - timedelta(hours=1)

    def start(self) -> SteadyStream:
        self._thread.start()
        return self

    def _run(self) -> None:
        start, i = time.monotonic(), 0
        while not self._stop.is_set():
            loc = LOCATIONS[i % len(LOCATIONS)]
            kind, qty = ("receipt", 3.0) if (i // len(LOCATIONS)) % 3 == 0 else ("usage", 1.0)
            e = stock(f"t-{i}", kind, loc, qty, at=self._at + timedelta(milliseconds=i))
            self.d.produce([e], flush=False)
            self.events.append(e)
            self.expected[loc] += qty if kind == "receipt" else -qty
            i += 1
            ahead = start + i / self.per_second - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        assert self.d.producer.flush(30) == 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def caught_up(d: Deployment, target: dict[int, int]) -> list[int]:
    """The partitions whose tracking record is still short of ``target`` (high watermarks)."""
    names = {part: f"{d.topics.events}-{part}" for part in target}
    tracked = d.positions(list(names.values()))
    return [part for part, hw in target.items() if hw and tracked.get(names[part], -1) < hw - 1]


def torture(d: Deployment, rounds: int, seed: int, per_second: float = 300.0,
            resume_within_s: float = RESUME_WITHIN_S) -> list[dict]:
    """Run ``rounds`` random rounds against ``d`` (one worker assigned already); one report per
    round: the action and the seconds until every partition had stored what preceded it."""
    rng = random.Random(seed)
    stream = SteadyStream(d, per_second).start()
    reports = []
    try:
        for n in range(rounds):
            live = [p for p in d.processes if isinstance(p, Worker) and p.alive()]
            choices = ["start"] if len(live) < 2 else ["stop", "kill"] if len(live) >= 3 else \
                ["start", "stop", "kill"]
            action = rng.choice(choices)
            if action == "start":
                d.start_worker()
            else:
                victim = rng.choice(live)
                victim.stop() if action == "stop" else victim.kill()
            time.sleep(rng.uniform(0.5, 3.0))
            target = d.high_watermarks(d.topics.events)
            began = time.monotonic()
            deadline = began + resume_within_s
            while (behind := caught_up(d, target)) and time.monotonic() < deadline:
                time.sleep(0.25)
            took = time.monotonic() - began
            reports.append({"round": n + 1, "action": action, "seconds": round(took, 1),
                            "workers": len([p for p in d.processes if p.alive()])})
            assert not behind, (f"round {n + 1} ({action}, seed {seed}): partitions {behind} made no "
                                f"progress within {resume_within_s} s\n{d.logs()}")
    finally:
        stream.stop()
    ids = {e["event_id"] for e in stream.events}
    store, deadline = d.store(), time.monotonic() + 90
    while time.monotonic() < deadline:
        counts = recorded_counts(store)
        if ids <= set(counts):
            break
        time.sleep(1)
    counts = recorded_counts(store)
    assert [i for i in ids if counts.get(i) != 1] == [], f"every event recorded exactly once (seed {seed})"
    p = d.processor()
    assert {loc: on_hand(p, loc) for loc in LOCATIONS} == stream.expected
    return reports


def test_workers_started_stopped_and_killed_at_random_resume_every_partition_and_count_each_event_once(
        deployment: Deployment) -> None:
    d = deployment
    d.start_worker().wait_assigned()
    d.produce(master_data(), principal="gw-erp")
    wait_for(lambda: {e["event_id"] for e in master_data()} <= d.stored_ids(), 60,
             "the master data to be stored", every=0.5)
    reports = torture(d, ROUNDS, SEED)
    print("\n".join(f"round {r['round']}: {r['action']}, all partitions resumed in {r['seconds']} s"
                     for r in reports))
    assert len(reports) == ROUNDS
    assert all(r["seconds"] <= RESUME_WITHIN_S for r in reports)
