"""The cost of the audit log's checkpoints (issue 16: at most 10 % of in-process ingest): the
``bench.models`` workload through ``Processor.process`` (the baseline, in the same run), then
one checkpoint (``streams.checkpoints.Checkpointer.take``) over everything it stored. The
service makes one every 10,000 events, each reading only the events since the last, so the
share below is what checkpoints add to ingest whatever their interval.

Run: ``.venv/bin/python -m bench.checkpoints`` (``--items``, ``--locations``, ``--days``).
Prints its figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.models import Hospital, run_processor
from streams.checkpoints import Checkpointer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument("--locations", type=int, default=4)
    ap.add_argument("--days", type=int, default=60)
    args = ap.parse_args()
    hospital = Hospital(args.items, args.locations, args.days)
    events = hospital.stock_events()
    p, took = run_processor(hospital, events, planned=True)
    checkpointer = Checkpointer(p.store, Ed25519PrivateKey.generate(), None)
    started = time.perf_counter()
    checkpoint = checkpointer.take()
    spent = time.perf_counter() - started
    print(f"ingest through Processor.process: {took / len(events) * 1e6:.1f} µs per input "
          f"({len(events):,} inputs, {checkpoint.tree_size:,} stored events)")
    print(f"checkpoint over all of it: {spent:.3f} s, {spent / checkpoint.tree_size * 1e6:.2f} µs per stored "
          f"event: {spent / took * 100:.1f} % of the ingest time (target: at most 10 %)")


if __name__ == "__main__":
    main()
