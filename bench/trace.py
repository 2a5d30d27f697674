"""Recall and trace one lot in a big store: the time to quarantine every unit of a lot at
every location (storing a decision per stock point) and to trace its whole life.

The store (SQLite, as the embedded profile) is filled through the processor, so it holds
what production would: each lot received at the central store against a purchase order,
transferred to wards, used there (some uses by surgical cases), plus the decisions and alerts
the processor adds. Then one lot is recalled (``Processor.process`` of one ``recall_issued``:
quarantine decisions, recall tasks, the policy decided again where it is held) and traced
(``streams.traceability.trace``: the lot's index, then only its events are read).

    .venv/bin/python -m bench.trace                       # 1,000,000 stored events, 10,000 lots
    .venv/bin/python -m bench.trace --events 100000 --lots 1000   # a quick run
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from domain.intake import Principal
from streams import traceability
from streams.processor import Processor
from streams.store import EventStore, sqlite_env

ADMIN = Principal("bench-admin", "admin")
SCANNER = Principal("bench-scanner", "scanner")
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
STORE = "CS"


def build(path: Path, target_events: int, n_lots: int, n_skus: int, n_wards: int,
          seed: int = 7) -> tuple[Processor, float]:
    rnd = random.Random(seed)
    p = Processor(EventStore(env=sqlite_env(str(path))), b"b" * 32, clock=lambda: NOW)
    wards = [f"W{i}" for i in range(n_wards)]
    master: list[dict[str, Any]] = [
        {"event_id": "loc-CS", "type": "location_registered", "occurred_at": "2020-01-01T00:00:00+00:00",
         "location": STORE, "site": "H1", "kind": "central_store", "timezone": "Europe/Paris"}]
    master += [{"event_id": f"loc-{w}", "type": "location_registered", "occurred_at": "2020-01-01T00:00:00+00:00",
                "location": w, "site": "H1", "kind": "ward", "timezone": "Europe/Paris", "restocked_from": STORE}
               for w in wards]
    master += [{"event_id": f"item-{s}", "type": "item_registered", "occurred_at": "2020-01-01T00:00:00+00:00",
                "sku": f"SKU{s:04d}", "base_unit": "each", "unit_cost": 3.5, "lead_time_days": 5}
               for s in range(n_skus)]
    p.process([(e, ADMIN) for e in master])
    span = timedelta(days=200)
    start = NOW - span - timedelta(days=1)
    step = span / n_lots
    started = time.perf_counter()
    batch: list[tuple[Any, Principal]] = []
    n, used = 0, 0
    for i in range(n_lots):
        sku = f"SKU{i % n_skus:04d}"
        lot = f"LOT{i:06d}"
        t = start + step * i
        po = f"PO{i:06d}"
        batch.append(({"event_id": f"po-{i}", "type": "po_issued", "occurred_at": t.isoformat(),
                       "po_id": po, "supplier": "ACME", "location": STORE,
                       "lines": [{"sku": sku, "quantity": 400}]}, SCANNER))
        batch.append(({"event_id": f"r-{i}", "type": "receipt", "occurred_at": (t + timedelta(seconds=1)).isoformat(),
                       "location": STORE, "sku": sku, "lot": lot, "expiry": "2028-12-31", "quantity": 400,
                       "po_id": po, "supplier": "ACME"}, SCANNER))
        held = rnd.sample(wards, min(3, len(wards)))
        for k, w in enumerate(held):
            batch.append(({"event_id": f"t-{i}-{k}", "type": "transfer",
                           "occurred_at": (t + timedelta(seconds=2 + k)).isoformat(),
                           "from_location": STORE, "to_location": w, "sku": sku, "lot": lot,
                           "quantity": 100}, SCANNER))
        # Uses per lot such that the store ends near the target: each use stores a bit more
        # than one event (the fact, and the decisions and alerts it moves), measured as we go.
        stored_per_use = (n - 12 * i) / used if used > 1000 and n > 12 * i else 1.2
        want = (target_events - n) / max(n_lots - i, 1)
        uses = max(int((want - 12) / max(stored_per_use, 0.5)), 1)
        used += uses
        for u in range(uses):
            w = held[u % len(held)]
            use: dict[str, Any] = {"event_id": f"u-{i}-{u}", "type": "usage",
                                   "occurred_at": (t + timedelta(seconds=10 + u)).isoformat(),
                                   "location": w, "sku": sku, "lot": lot, "quantity": 1}
            if u % 10 == 0:
                use["case_id"] = f"case-{i}-{u}"
            batch.append((use, SCANNER))
        if len(batch) >= 5000:
            n += p.process(batch).stored
            batch = []
    if batch:
        p.process(batch)
    return p, time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--lots", type=int, default=10_000)
    ap.add_argument("--skus", type=int, default=100)
    ap.add_argument("--wards", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5, help="lots recalled and traced")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        p, took = build(Path(tmp) / "events.sqlite", args.events, args.lots, args.skus, args.wards)
        stored = p.store.recorder.max_notification_id() or 0
        lots = len(p.ledger.trace.lot_events)
        print(f"store: {stored:,} events over {lots:,} lots, built in {took:.0f} s; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        rnd = random.Random(1)
        quarantine, trace, total, events, quarantined = [], [], [], [], []
        gc_time = [0.0]
        gc_started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                gc_time[0] += time.perf_counter() - gc_started[0]

        gc.callbacks.append(on_gc)
        for r in range(args.repeat):
            i = rnd.randrange(args.lots // 2)  # a lot whose events are all in the store
            sku, lot = f"SKU{i % args.skus:04d}", f"LOT{i:06d}"
            t0 = time.perf_counter()
            result = p.process([({"event_id": f"recall-{r}", "type": "recall_issued",
                                  "occurred_at": NOW.isoformat(), "sku": sku, "lots": [lot],
                                  "reference": f"RC-{r}", "recall_class": "I"}, ADMIN)])
            t1 = time.perf_counter()
            found = traceability.trace(p, sku, lot)
            t2 = time.perf_counter()
            assert result.outcomes[0].status == "accepted" and found is not None
            quarantine.append(t1 - t0)
            trace.append(t2 - t1)
            total.append(t2 - t0)
            events.append(len(found["events"]))
            quarantined.append(len(found["summary"]["quarantined"]))
            print(f"  {sku}/{lot}: recall {quarantine[-1] * 1000:.1f} ms, trace {trace[-1] * 1000:.1f} ms"
                  f" (garbage collection so far {gc_time[0] * 1000:.0f} ms)")
        print(f"recall of one lot (quarantine at {statistics.median(quarantined):.0f} locations, stored "
              f"in one transaction): median {statistics.median(quarantine) * 1000:.1f} ms, "
              f"max {max(quarantine) * 1000:.1f} ms")
        print(f"trace of one lot ({statistics.median(events):.0f} events): "
              f"median {statistics.median(trace) * 1000:.1f} ms, max {max(trace) * 1000:.1f} ms")
        print(f"load average {os.getloadavg()[0]:.1f}")
        print(f"both together: median {statistics.median(total) * 1000:.1f} ms, "
              f"max {max(total) * 1000:.1f} ms (target < 1000 ms)")


if __name__ == "__main__":
    main()
