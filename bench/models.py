"""Model and policy benchmark: microseconds of online-model and policy work per event, and
bytes of model state per stock point.

A simulated hospital (``--items`` SKUs at ``--locations`` wards, each stock point with its
own use rate, some used in boxes of several units, restocked by receipts) runs ``--days``
days of use through ``Processor.process``. Then, in this same process:

(a) its stored log is replayed over fresh write models: a baseline loop that only applies
    each stored event (``Ledger.replay``), and the same loop that also feeds each event to
    ``Planner.learn`` and recomputes the policy of every stock point it moved
    (``Planner.policy``: the numbers ``decide`` works from), or also writes it out as the
    record a decision carries (``Planner.evaluate``). The difference from the baseline, per
    stock fact, is the model + policy work (the best of ``--repeat`` runs of each loop, the
    quantile cache emptied before each, the garbage collector paused as ``timeit`` does,
    and once more with it running);
(b) the same inputs go through a second processor whose planner learns nothing (so it
    decides nothing): the difference per input event is what the dynamic policy costs the
    processor, deciding, recording and storing decisions and alerts included;
(c) the model state of each stock point is measured as ``len(pickle.dumps(model))``.

Run: ``.venv/bin/python -m bench.models`` (``--help`` for the sizes). A benchmark, not a
test: it checks that the inputs were accepted, never how fast they were.
"""

from __future__ import annotations

import argparse
import gc
import math
import pickle
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.aggregates import StockPoint
from domain.intake import Ledger, Principal
from streams.planning import Planner, cached_reorder_policy
from streams.processor import Processor
from streams.store import EventStore, memory_env

ADMIN = Principal("bench-admin", "admin")
SCANNER = Principal("bench-scanner", "scanner")
KEY = b"bench-case-id-key-not-a-secret!!"
START = datetime(2026, 1, 5, tzinfo=UTC)
TARGET_US_PER_EVENT = 20.0
TARGET_BYTES_PER_POINT = 2048


@dataclass(frozen=True)
class Hospital:
    items: int
    locations: int
    days: int
    seed: int = 5

    def master_data(self) -> list[dict[str, Any]]:
        at = (START - timedelta(days=1)).isoformat()
        events: list[dict[str, Any]] = [{"event_id": "sup", "type": "supplier_registered",
                                         "occurred_at": at, "supplier": "MEDSUP", "name": "MedSupply"}]
        for i in range(self.items):
            events.append({"event_id": f"item-{i}", "type": "item_registered", "occurred_at": at,
                           "sku": f"SKU-{i:04d}", "description": "bench item", "base_unit": "each",
                           "units": {"box": 10}, "pack_size": 10 if i % 3 else 1,
                           "criticality": ("critical", "high", "normal")[i % 3],
                           "lead_time_days": 2 + i % 6, "supplier": "MEDSUP"})
        for j in range(self.locations):
            events.append({"event_id": f"loc-{j}", "type": "location_registered", "occurred_at": at,
                           "location": f"W{j}", "site": "H1", "name": f"Ward {j}", "kind": "ward",
                           "timezone": "Europe/Paris"})
        return events

    def stock_events(self) -> list[dict[str, Any]]:
        """Uses (Poisson arrivals at each stock point's own rate; one in four stock points
        used in lumps of several units) and receipts, in time order."""
        rng = random.Random(self.seed)
        timed: list[tuple[datetime, dict[str, Any]]] = []
        for i in range(self.items):
            for j in range(self.locations):
                sku, loc = f"SKU-{i:04d}", f"W{j}"
                rate = math.exp(rng.uniform(math.log(0.3), math.log(30)))  # uses per day
                lumpy = rng.random() < 0.25
                on_hand, lot, t = 0.0, 0, 0.0
                while t < self.days:
                    if on_hand < 10 * rate + 20:
                        lot += 1
                        qty = math.ceil(20 * rate + 50)
                        timed.append((START + timedelta(days=t), {
                            "type": "receipt", "lot": f"L{lot}", "expiry": "2031-12-31",
                            "quantity": qty, "sku": sku, "location": loc, "site": "H1"}))
                        on_hand += qty
                    t += rng.expovariate(rate)
                    size = 1 + (int(rng.expovariate(0.5)) if lumpy else 0)
                    timed.append((START + timedelta(days=t), {
                        "type": "usage", "lot": f"L{lot}", "quantity": size, "sku": sku,
                        "location": loc, "site": "H1"}))
                    on_hand -= size
        timed.sort(key=lambda pair: pair[0])
        return [dict(event, event_id=f"ev-{n}", occurred_at=at.isoformat())
                for n, (at, event) in enumerate(timed, start=1)]


class MovingClock:
    """The processor's clock: just after the latest event of the batch being processed."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Unplanned(Planner):
    """A planner that learns nothing, so the processor decides nothing: the baseline of (b)."""

    def learn(self, event: Any) -> list[str]:
        return []


def run_processor(hospital: Hospital, events: list[dict[str, Any]], planned: bool,
                  batch: int = 100) -> tuple[Processor, float]:
    clock = MovingClock()
    p = Processor(EventStore(env=memory_env()), KEY, clock=clock)
    clock.now = START
    p.process([(e, ADMIN) for e in hospital.master_data()])
    if not planned:
        p.planner = Unplanned(p.ledger, p.planning)
    gc.collect()
    started = time.perf_counter()
    for k in range(0, len(events), batch):
        chunk = events[k:k + batch]
        clock.now = datetime.fromisoformat(chunk[-1]["occurred_at"]) + timedelta(minutes=1)
        result = p.process([(e, SCANNER) for e in chunk])
        bad = [o for o in result.outcomes if o.status != "accepted"]
        assert not bad, bad[:3]
    return p, time.perf_counter() - started


def best_of(repeat: int, fn: Callable[[], None], collect: bool) -> float:
    """The best time of ``repeat`` runs; the cyclic garbage collector paused while timing
    unless ``collect`` (as ``timeit`` does: its passes cost in proportion to the whole heap,
    here mostly the benchmark's own copy of the log, not to the work measured)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        if not collect:
            gc.disable()
        try:
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        finally:
            gc.enable()
    return min(times)


def replay_loops(p: Processor, repeat: int, collect: bool = False) -> tuple[float, float, float | None, int]:
    """(baseline, learn + policy, learn + evaluate seconds (not timed when ``collect``);
    stock facts) over the stored log."""
    to_domain = p.store.mapper.to_domain_event
    stored: list[Any] = [to_domain(n) for n in p.store.notifications()]
    facts = sum(isinstance(e, StockPoint.Recorded) for e in stored)

    def baseline() -> None:
        ledger = Ledger()
        for event in stored:
            ledger.replay(event)

    def planned(write_out: bool) -> Callable[[], None]:
        def loop() -> None:
            cached_reorder_policy.cache_clear()  # a cold start: no quantile remembered
            ledger = Ledger()
            planner = Planner(ledger, p.planning)
            decide_from = planner.evaluate if write_out else planner.policy
            streams = ledger.streams
            for event in stored:
                ledger.replay(event)
                for sp_id in planner.learn(event):
                    decide_from(streams[sp_id], event.timestamp)  # type: ignore[arg-type]
        return loop

    return (best_of(repeat, baseline, collect), best_of(repeat, planned(False), collect),
            None if collect else best_of(repeat, planned(True), collect), facts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=60, help="SKUs (default 60)")
    parser.add_argument("--locations", type=int, default=4, help="wards (default 4)")
    parser.add_argument("--days", type=int, default=60, help="days of use (default 60)")
    parser.add_argument("--repeat", type=int, default=2, help="replays per loop; the best counts")
    args = parser.parse_args()
    hospital = Hospital(args.items, args.locations, args.days)
    events = hospital.stock_events()
    points = args.items * args.locations
    print(f"{len(events):,} events at {points} stock points over {args.days} days")

    live, live_s = run_processor(hospital, events, planned=True)
    _, unplanned_s = run_processor(hospital, events, planned=False)
    base_s, policy_s, evaluate_s, facts = replay_loops(live, args.repeat)
    per_fact = (policy_s - base_s) / facts * 1e6
    assert evaluate_s is not None
    gc_base_s, gc_policy_s, _, _ = replay_loops(live, 1, collect=True)
    sizes = [len(pickle.dumps(m)) for m in live.planner.models.values()]
    decisions = sum(1 for n in live.store.notifications() if n.topic.endswith("Decided"))

    print(f"(a) model + policy work, replaying {facts:,} stock facts: baseline "
          f"{base_s / facts * 1e6:.1f} us/event; Planner.learn + Planner.policy "
          f"{per_fact:.1f} us/event more (target <= {TARGET_US_PER_EVENT:g}); "
          f"with Planner.evaluate's record {(evaluate_s - base_s) / facts * 1e6:.1f}; "
          f"learn + policy with the garbage collector running {(gc_policy_s - gc_base_s) / facts * 1e6:.1f}")
    print(f"(b) in Processor.process (batches of 100): {unplanned_s / len(events) * 1e6:.1f} us/event "
          f"without planning, {live_s / len(events) * 1e6:.1f} with it: "
          f"{(live_s - unplanned_s) / len(events) * 1e6:.1f} us/event for deciding, recording "
          f"and storing {decisions:,} decisions and their alerts")
    print(f"(c) model state per stock point: mean {statistics.mean(sizes):.0f} B, max {max(sizes)} B "
          f"over {len(sizes)} stock points (target <= {TARGET_BYTES_PER_POINT} B)")


if __name__ == "__main__":
    main()
