"""What procurement costs the processor: the same workload through ``Processor.process`` with
procurement off and on, in this process, and the ratio.

The workload (``bench.workload``) is a few ward cabinets scanning usages and receiving lots from
one supplier; with procurement on, each replenishment need becomes a requisition (the item
master's price: it waits for a buyer), and each receipt re-scores the supplier. Both runs use
an in-memory event store so that the figure is the processor's work, not the disk's.

Run: ``.venv/bin/python -m bench.procurement`` (``--help`` for the sizes). A benchmark, not a
test: it checks that the inputs were accepted, never how fast they were.
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime

from bench.workload import Workload
from domain.intake import Principal
from streams.processor import Processor
from streams.procurement import ProcurementSettings
from streams.store import EventStore, memory_env

ADMIN = Principal("bench-admin", "admin")
SCANNER = Principal("bench-scanner", "scanner")
KEY = b"bench-case-id-key-not-a-secret!!"


def run(events: int, batch: int, items: int, locations: int, enabled: bool) -> tuple[float, int, int]:
    """Seconds spent in ``process``, events stored, requisitions raised."""
    work = Workload(run="bench", items=items, locations=locations)
    p = Processor(EventStore(env=memory_env()), KEY, procurement=ProcurementSettings(enabled=enabled))
    p.process([(e, ADMIN) for e in work.master_data(datetime.now(UTC))])
    inputs = [e for _, e in work.events(events)]
    spent, stored = 0.0, 0
    gc.collect()
    for i in range(0, len(inputs), batch):
        chunk = [(e, SCANNER) for e in inputs[i:i + batch]]
        t = time.perf_counter()
        result = p.process(chunk)
        spent += time.perf_counter() - t
        stored += result.stored
        bad = [o for o in result.outcomes if o.status != "accepted"]
        assert not bad, bad[:3]
    return spent, stored, len(p.purchasing.requisitions())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--items", type=int, default=3)
    ap.add_argument("--locations", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs of each")
    args = ap.parse_args()
    best: dict[bool, tuple[float, int, int]] = {}
    for _ in range(args.repeat):
        for enabled in (False, True):
            got = run(args.events, args.batch, args.items, args.locations, enabled)
            if enabled not in best or got[0] < best[enabled][0]:
                best[enabled] = got
    print(f"{args.events} events in batches of {args.batch}, {args.items} items x {args.locations} locations; "
          f"best of {args.repeat}")
    print(f"{'procurement':12} {'µs/event':>9} {'stored':>8} {'requisitions':>13}")
    for enabled in (False, True):
        spent, stored, reqs = best[enabled]
        print(f"{'on' if enabled else 'off':12} {spent / args.events * 1e6:9.1f} {stored:8d} {reqs:13d}")
    off, on = best[False][0], best[True][0]
    print(f"on / off: {on / off:.2f}")


if __name__ == "__main__":
    main()
