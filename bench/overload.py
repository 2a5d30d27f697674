"""Overload on the embedded profile (issue 14, item 3): ``replenish serve`` offered, open loop,
``--times`` (10) times the load at which the scan-to-stored p99 stays under 50 ms here (1,000
events/s: README, "Ingest"), in batches of ``--batch`` events, for ``--seconds``. Figures: the
p50 and p99 latency of the requests admitted, the share answered 429 (with Retry-After), the
service's memory at the end, the time for what was admitted to drain after the load stops, and
the events acknowledged but lost (every acknowledged batch is sent again afterwards: each of
its events must answer ``duplicate``).

Run: ``.venv/bin/python -m bench.overload`` (the issue's full run: ``--seconds 600``).
A benchmark: it prints its figures and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.ingest import ADMIN_KEY, SCANNER_KEY, Service
from bench.workload import Workload

P99_RATE = 1000.0  # events/s at which scan-to-stored p99 < 50 ms on this machine (README)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def offer(base: str, batches: list[list[dict[str, Any]]], per_second: float
                ) -> tuple[list[tuple[int, float, list[dict[str, Any]] | None]], float]:
    """POST each batch at its scheduled instant (open loop: not waiting for answers); each
    answer's status, latency and results, and when the last answer came after the schedule."""
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits,
                                 headers={"Authorization": f"Bearer {SCANNER_KEY}"}) as client:
        async def one(batch: list[dict[str, Any]]) -> tuple[int, float, list[dict[str, Any]] | None]:
            started = time.perf_counter()
            try:
                r = await client.post("/v1/events", json=batch)
            except httpx.HTTPError:
                return 0, time.perf_counter() - started, None
            took = time.perf_counter() - started
            return r.status_code, took, (r.json()["results"] if r.status_code == 200 else None)

        start = time.perf_counter()
        tasks = []
        for i, batch in enumerate(batches):
            delay = start + i / per_second - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(batch)))
        offered_until = time.perf_counter()
        answers = await asyncio.gather(*tasks)
        return answers, time.perf_counter() - offered_until


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--times", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    rate = P99_RATE * args.times
    n_batches = int(rate * args.seconds / args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        svc = Service(data).start()
        try:
            wl = Workload("overload", items=3, locations=4)
            with httpx.Client(base_url=svc.base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
                admin.post("/v1/events", json=wl.master_data(datetime.now(UTC))).raise_for_status()
            batches = [[wl.next_event()[1] for _ in range(args.batch)] for _ in range(n_batches)]
            answers, drain_s = asyncio.run(offer(svc.base, batches, rate / args.batch))
            assert svc.proc is not None
            memory = rss_mb(svc.proc.pid)
            admitted = [t for status, t, _ in answers if status == 200]
            refused = sum(1 for status, _, _ in answers if status == 429)
            other = [status for status, _, _ in answers if status not in (200, 429)]
            acknowledged = [batches[i] for i, (status, _, _) in enumerate(answers) if status == 200]
            lost = 0
            with httpx.Client(base_url=svc.base, timeout=120,
                              headers={"Authorization": f"Bearer {SCANNER_KEY}"}) as client:
                for batch in acknowledged:
                    results = client.post("/v1/events", json=batch).json()["results"]
                    lost += sum(1 for r in results if r["status"] == "accepted")
            admitted.sort()
            print(f"offered {rate:,.0f} events/s ({args.times:g} x {P99_RATE:,.0f}) in batches of {args.batch} "
                  f"for {args.seconds:g} s: {n_batches:,} requests")
            print(f"admitted {len(admitted):,} ({len(admitted) * args.batch:,} events; "
                  f"{len(admitted) * args.batch / args.seconds:,.0f} events/s); "
                  f"p50 {statistics.median(admitted) * 1000:.0f} ms, "
                  f"p99 {admitted[int(0.99 * (len(admitted) - 1))] * 1000:.0f} ms")
            print(f"answered 429: {refused:,} ({refused / len(answers):.1%}); other answers: "
                  f"{sorted(set(other)) or 'none'}")
            print(f"memory at the end: {memory:.0f} MB; drained {drain_s:.1f} s after the load stopped")
            print(f"acknowledged and lost: {lost}")
        finally:
            svc.stop()


if __name__ == "__main__":
    main()
