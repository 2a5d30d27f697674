"""Seeded fault runs (issue 14, item 2): each target is a test of the suite, run here many
times with different seeds; every run asserts that nothing acknowledged was lost, nothing was
stored twice, and the system resumed. CI runs each once (or a short version); this runs the
full count and prints the runs, the failures and the time of each.

Targets:
- ``serve``: SIGKILL of ``replenish serve`` during batched POSTs from two clients, restart,
  re-send everything (tests/e2e/test_crash.py; the seed sets the batches and the kill point);
- ``rebalance``: workers started, stopped (SIGTERM) and killed (SIGKILL) at random under a
  steady stream, 20 rounds a run (tests/integration/test_rebalance_torture.py);
- ``causal``: a new item's master data and 1,000 dependent events in one request on a
  backlog, two workers starting at once, 20 rounds a run (tests/integration/test_causal_order.py);
- ``stall``: a worker whose store writes wait on a lock: it rejoins, then exits with code 75
  for its supervisor, and a new worker stores everything once (tests/integration/test_worker_stall.py);
- ``postgres``, ``kafka``: the server stopped and started again (``infra/<server>/stop``,
  5 s down, ``start``) while a gateway produces 200 events a second: every event stored once,
  every stock point's on-hand what was sent (tests/integration/test_server_restarts.py);
- ``relay``: the worker whose relay publishes killed (SIGKILL) mid-stream: the other worker's
  relay takes over, every stored decision and alert is published, in order per stock point;
- ``disk``: the embedded store's disk full: 503 ``store_unavailable``, nothing half-stored, the
  same request taken once there is room (tests/e2e/test_disk_full.py; needs root to mount a tmpfs).

(Only ``serve`` and ``rebalance`` take a seed; the others' runs differ by the timing of real
processes.) The distributed targets need Kafka and PostgreSQL (``infra/up``).

Run: ``.venv/bin/python -m bench.faults serve rebalance causal stall postgres kafka relay disk --runs 20``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "serve": ("tests/e2e/test_crash.py", "REPLENISH_CRASH_SEED", {}),
    "rebalance": ("tests/integration/test_rebalance_torture.py", "REPLENISH_TORTURE_SEED",
                  {"REPLENISH_TORTURE_ROUNDS": "20"}),
    "causal": ("tests/integration/test_causal_order.py", "REPLENISH_CAUSAL_SEED",
               {"REPLENISH_CAUSAL_ROUNDS": "20"}),
    "stall": ("tests/integration/test_worker_stall.py", "REPLENISH_STALL_SEED", {}),
    "postgres": ("tests/integration/test_server_restarts.py::"
                 "test_a_postgresql_restart_under_load_loses_nothing_and_stores_nothing_twice", "REPLENISH_FAULT_SEED", {}),
    "kafka": ("tests/integration/test_server_restarts.py::"
              "test_a_kafka_broker_restart_under_load_loses_nothing_and_stores_nothing_twice", "REPLENISH_FAULT_SEED", {}),
    "relay": ("tests/integration/test_server_restarts.py::test_the_relay_killed_mid_stream_is_taken_over_"
              "and_publishes_every_decision_and_alert_in_order", "REPLENISH_FAULT_SEED", {}),
    "disk": ("tests/e2e/test_disk_full.py", "REPLENISH_FAULT_SEED", {}),
}


def run(target: str, seed: int) -> tuple[bool, float, str]:
    path, seed_var, extra = TARGETS[target]
    env = {**os.environ, seed_var: str(seed), **extra}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", path],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    return proc.returncode == 0, time.monotonic() - started, tail[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("targets", nargs="*", default=["serve"], choices=sorted(TARGETS))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1)
    args = ap.parse_args()
    print(f"{'target':10} {'runs':>5} {'passed':>7} {'failed':>7} {'seconds (min/median/max)':>26}")
    for target in args.targets:
        times, failures = [], []
        for seed in range(args.first_seed, args.first_seed + args.runs):
            ok, took, tail = run(target, seed)
            times.append(took)
            if not ok:
                failures.append((seed, tail))
            print(f"  {target} seed {seed}: {'ok' if ok else 'FAILED'} in {took:.0f} s ({tail})", flush=True)
        times.sort()
        print(f"{target:10} {len(times):>5} {len(times) - len(failures):>7} {len(failures):>7} "
              f"{times[0]:>8.0f} / {times[len(times) // 2]:.0f} / {times[-1]:.0f}")
        for seed, tail in failures:
            print(f"  failed: seed {seed}: {tail}")


if __name__ == "__main__":
    main()
