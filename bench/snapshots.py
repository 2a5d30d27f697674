"""Start-up from a snapshot against a full replay (issue 15, first part): a store of
``--days`` days of a simulated hospital (``bench.models.Hospital``) in SQLite, then in this
process, the best of ``--repeat`` each: the write model rebuilt from the whole log
(``Processor`` without a snapshot), a snapshot written, and the model read from that snapshot
plus the log after it (the last ``--tail`` events stored after the snapshot).

Run: ``.venv/bin/python -m bench.snapshots`` (``--help`` for the sizes). Prints its figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench.models import ADMIN, KEY, SCANNER, Hospital, MovingClock
from streams import snapshots
from streams.processor import Processor
from streams.store import EventStore, sqlite_env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--locations", type=int, default=9)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--tail", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    hospital = Hospital(args.items, args.locations, args.days)
    events = hospital.stock_events()
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(env=sqlite_env(str(Path(tmp) / "events.sqlite")))
        clock = MovingClock()
        p = Processor(store, KEY, clock=clock)
        p.process([(e, ADMIN) for e in hospital.master_data()])
        head, tail = events[:-args.tail], events[-args.tail:]
        for part, snap_after in ((head, True), (tail, False)):
            for k in range(0, len(part), 1000):
                chunk = part[k:k + 1000]
                clock.now = datetime.fromisoformat(chunk[-1]["occurred_at"]) + timedelta(minutes=1)
                p.process([(e, SCANNER) for e in chunk])
            if snap_after:
                started = time.perf_counter()
                path = snapshots.write(Path(tmp) / "snap", KEY, p.position, p.position, p.snapshot_state())
                write_s = time.perf_counter() - started
        stored = p.position
        full, restored = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            Processor(store, KEY, clock=clock)
            full.append(time.perf_counter() - started)
            started = time.perf_counter()
            snap = snapshots.newest(Path(tmp) / "snap", KEY)
            q = Processor(store, KEY, clock=clock, snapshot=snap)
            restored.append(time.perf_counter() - started)
            assert q.restored_from is not None and q.state_digest() == p.state_digest()
        print(f"{stored:,} stored events ({len(events):,} inputs; {args.items} items x {args.locations} "
              f"locations x {args.days} days); snapshot {path.stat().st_size / 1e6:.1f} MB, written in {write_s:.2f} s")
        print(f"start, full replay:               {min(full):.2f} s")
        print(f"start, snapshot + {args.tail:,} inputs after: {min(restored):.2f} s  "
              f"({min(full) / min(restored):.1f}x faster)")


if __name__ == "__main__":
    main()
