"""Overload (issue 14, item 3): ``replenish serve`` offered, open loop, ``--times`` (10) times the
load at which the scan-to-stored p99 stays under 50 ms here (1,000 events/s: README, "Ingest"),
in batches of ``--batch`` events, for ``--seconds``.

- ``--profile embedded`` (the default): figures are the p50 and p99 latency of the requests
  admitted, the share answered 429 (with Retry-After), the service's memory at the end, the
  time for what was admitted to drain after the load stops (the last answer: the embedded
  service answers once it stored), and the events acknowledged but lost (every acknowledged
  batch is made again and sent afterwards: none of its events may be taken as new; the
  remade events carry new instants, so they are answered ``event_id_reused``).
- ``--profile distributed``: the same load on ``serve`` of the distributed profile, with one
  ``replenish worker``, on the Kafka broker and PostgreSQL server of ``infra/up`` (a database
  and topics of the run's own, dropped after). The API answers once Kafka holds the events
  (``queued``), 503 when Kafka does not take them; the drain is the time, after the load,
  until the worker's tracking records reach the end of every partition of the events topic.
  Then, in the database: acknowledged events stored nowhere (lost) and stock facts recorded
  more than once (doubled); the memory of the API and of the worker.

The embedded queue's bound follows the drain rate (``REPLENISH_MAX_QUEUE_SECONDS``);
``--queue-seconds 0`` runs the baseline bounded by ``REPLENISH_MAX_QUEUED_EVENTS`` alone.

Run: ``.venv/bin/python -m bench.overload`` (the issue's full run: ``--seconds 600``; the
distributed one with ``--profile distributed``). A benchmark: it prints its figures and
asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from bench.distributed import PARTITIONS, Database, Replenish, delete_topics, servers
from bench.ingest import ADMIN_KEY, API_KEYS, CASE_ID_KEY, SCANNER_KEY, Connection, Service
from bench.workload import Workload
from streams.kafka_app import tracking_name
from streams.store import postgres_env
from streams.topics import Topics, ensure_topics
from streams.tracked_store import TrackedEventStore

P99_RATE = 1000.0  # events/s at which scan-to-stored p99 < 50 ms on this machine (README)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


Answer = tuple[int, float]  # (status, or 0 when the connection failed; seconds)


async def offer(port: int, make_batch: Callable[[int], list[dict[str, Any]]], n_batches: int,
                per_second: float, max_connections: int = 1000) -> tuple[list[Answer], float]:
    """POST batch ``i`` (``make_batch(i)``, made just before it is sent, in order: a 10-minute
    run's millions of events are never all held at once) at its scheduled instant, open loop
    (not waiting for answers), over up to ``max_connections`` keep-alive connections (raw
    HTTP/1.1, ``bench.ingest.Connection``: httpx's pool spends its time scanning thousands of
    waiting requests and falls behind the schedule); a request that finds none free waits for
    one. Each answer's status and its latency from the send; when the last answer came after
    the schedule. Prints its progress every 30 s."""
    answers: list[Answer | None] = [None] * n_batches
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    opened = 0

    async def one(i: int, body: bytes) -> None:
        nonlocal opened
        if idle.empty() and opened < max_connections:
            opened += 1
            try:
                conn = await Connection("127.0.0.1", port, SCANNER_KEY).open()
            except OSError:
                opened -= 1
                answers[i] = (0, 0.0)
                return
        else:
            conn = await idle.get()
        started = time.perf_counter()
        try:
            status, _ = await conn.post(body)
        except (OSError, asyncio.IncompleteReadError):
            conn.close()
            opened -= 1
            answers[i] = (0, time.perf_counter() - started)
            return
        answers[i] = (status, time.perf_counter() - started)
        idle.put_nowait(conn)

    start = time.perf_counter()
    shown = start
    tasks: set[asyncio.Task[None]] = set()
    behind = 0.0
    for i in range(n_batches):
        body = orjson.dumps(make_batch(i))
        delay = start + i / per_second - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            behind = max(behind, -delay)
        task = asyncio.create_task(one(i, body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if time.perf_counter() - shown >= 30:
            shown = time.perf_counter()
            done = [a for a in answers[:i] if a is not None]
            print(f"  {shown - start:4.0f} s: {i + 1:,} requests sent, {len(done):,} answered "
                  f"({sum(1 for a in done if a[0] == 200):,} admitted), {len(tasks):,} waiting, "
                  f"{opened} connections", flush=True)
    offered_until = time.perf_counter()
    print(f"  offered in {offered_until - start:.0f} s (at most {behind:.1f} s behind the schedule)", flush=True)
    while tasks:
        await asyncio.gather(*list(tasks))
    while not idle.empty():
        idle.get_nowait().close()
    return [a for a in answers if a is not None], time.perf_counter() - offered_until


async def resend(port: int, answers: list[Answer], batch: int) -> int:
    """Every acknowledged batch again (the same workload made afresh), one after the other:
    how many of their events are taken as new (acknowledged before and lost since)."""
    again, lost = Workload("overload", items=3, locations=4), 0
    conn = await Connection("127.0.0.1", port, SCANNER_KEY).open()
    try:
        for status, _ in answers:
            events = [again.next_event()[1] for _ in range(batch)]
            if status == 200:
                code, body = await conn.post(orjson.dumps(events))
                assert code == 200, (code, body[:300])
                lost += sum(1 for r in orjson.loads(body)["results"] if r["status"] == "accepted")
    finally:
        conn.close()
    return lost


def summary(args: argparse.Namespace, rate: float, answers: list[Answer]) -> None:
    admitted = sorted(t for status, t in answers if status == 200)
    refused = Counter(status for status, _ in answers if status in (429, 503))
    other = [status for status, _ in answers if status not in (200, 429, 503)]
    print(f"offered {rate:,.0f} events/s ({args.times:g} x {P99_RATE:,.0f}) in batches of {args.batch} "
          f"for {args.seconds:g} s: {len(answers):,} requests ({args.profile} profile)")
    if admitted:
        print(f"admitted {len(admitted):,} ({len(admitted) * args.batch:,} events; "
              f"{len(admitted) * args.batch / args.seconds:,.0f} events/s); "
              f"p50 {statistics.median(admitted) * 1000:.0f} ms, "
              f"p99 {admitted[int(0.99 * (len(admitted) - 1))] * 1000:.0f} ms")
    for code in (429, 503):
        print(f"answered {code}: {refused[code]:,} ({refused[code] / len(answers):.1%})")
    print(f"other answers: {sorted(Counter(other).items()) or 'none'} (0: no answer at the connection)")


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"overload-{uuid.uuid4().hex[:6]}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {q: consumer.get_watermark_offsets(TopicPartition(topic, q), timeout=10)[1] for q in parts}
    finally:
        consumer.close()


def stored_counts(dsn: str, ids: list[str]) -> tuple[int, int]:
    """Of ``ids``: how many are stored nowhere (neither recorded nor refused), and how many
    are recorded as a stock fact more than once."""
    with psycopg.connect(dsn) as db:
        db.execute("CREATE TEMP TABLE acked (id TEXT PRIMARY KEY)")
        with db.cursor().copy("COPY acked (id) FROM STDIN") as copy:
            for i in ids:
                copy.write_row((i,))
        db.execute("CREATE TEMP TABLE stored AS SELECT convert_from(state, 'UTF8')::jsonb #>> '{event,event_id}' AS id, "
                   "topic LIKE '%.Recorded' AS recorded FROM replenish_events "
                   "WHERE topic LIKE '%.Recorded' OR topic LIKE '%.Refused'")
        lost = db.execute("SELECT count(*) FROM acked a WHERE NOT EXISTS "
                          "(SELECT 1 FROM stored s WHERE s.id = a.id)").fetchone()
        doubled = db.execute("SELECT count(*) FROM (SELECT id FROM stored WHERE recorded GROUP BY id "
                             "HAVING count(*) > 1) d").fetchone()
    return int(lost[0]) if lost else -1, int(doubled[0]) if doubled else -1


def distributed(args: argparse.Namespace) -> None:
    """The same load on the distributed profile (the module's docstring)."""
    bootstrap, dsn = servers()
    rate = P99_RATE * args.times
    n_batches = int(rate * args.seconds / args.batch)
    run = uuid.uuid4().hex[:8]
    topics = Topics(f"benchover{run}.")
    ensure_topics(bootstrap, topics, PARTITIONS)
    db = Database(dsn, f"bench_{run}_overload")
    tmp = Path(tempfile.mkdtemp(prefix="bench-overload-"))
    (tmp / "data").mkdir()
    env = {"REPLENISH_PROFILE": "distributed", "REPLENISH_KAFKA_BOOTSTRAP": bootstrap,
           "REPLENISH_POSTGRES_DSN": db.dsn, "REPLENISH_KAFKA_TOPIC_PREFIX": topics.prefix,
           "REPLENISH_WORKER_GROUP": f"{topics.prefix}replenish-worker"}
    worker_env = {k: v for k, v in os.environ.items() if not k.startswith("REPLENISH_")}
    worker_env.update(env, REPLENISH_CASE_ID_KEY=CASE_ID_KEY, REPLENISH_DATA_DIR=str(tmp / "data"),
                      REPLENISH_API_KEYS=API_KEYS)  # (the API's principals' roles)
    worker = Replenish(["worker", "--loglevel", "WARNING"], worker_env, tmp / "worker.log")
    svc = Service(tmp / "data", env)
    store = TrackedEventStore(env=postgres_env(db.dsn))
    try:
        svc.start(timeout=120)
        wl = Workload(f"o{run}", items=3, locations=4)
        master = wl.master_data(datetime.now(UTC))
        with httpx.Client(base_url=svc.base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
            admin.post("/v1/events", json=master).raise_for_status()
        deadline = time.monotonic() + 120
        while db.max_id() < len(master):
            if time.monotonic() > deadline or worker.proc.poll() is not None:
                raise RuntimeError(f"the worker stored no master data:\n{worker.log.read_text()[-3000:]}")
            time.sleep(0.2)
        answers, _ = asyncio.run(offer(svc.port, lambda _i: [wl.next_event()[1] for _ in range(args.batch)],
                                       n_batches, rate / args.batch))
        loaded = time.perf_counter()
        assert svc.proc is not None
        memory = {"serve": rss_mb(svc.proc.pid), "worker": rss_mb(worker.proc.pid)}
        ends = end_offsets(bootstrap, topics.events)
        names = {q: tracking_name((topics.events, q)) for q in ends}
        shown = loaded
        while True:
            at = store.positions(names.values())
            behind = sum(max(0, end - 1 - at.get(names[q], -1)) for q, end in ends.items())
            if behind == 0:
                break
            if worker.proc.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{worker.log.read_text()[-3000:]}")
            if time.perf_counter() - shown >= 30:
                shown = time.perf_counter()
                print(f"  draining: {behind:,} events behind, {shown - loaded:.0f} s after the load", flush=True)
            time.sleep(0.5)
        drained = time.perf_counter() - loaded
        memory_drained = rss_mb(worker.proc.pid)
        ids = [f"o{run}-{i * args.batch + k + 1:08d}" for i, (status, _) in enumerate(answers) if status == 200
               for k in range(args.batch)]
        lost, doubled = stored_counts(db.dsn, ids)
        summary(args, rate, answers)
        print(f"memory at the end of the load: serve {memory['serve']:.0f} MB, worker {memory['worker']:.0f} MB "
              f"({memory_drained:.0f} MB drained)")
        print(f"drained (the worker's tracking records at the end of all {len(ends)} partitions) {drained:.1f} s "
              f"after the load stopped")
        print(f"acknowledged and lost: {lost} (of {len(ids):,}); recorded twice: {doubled}")
    finally:
        store.close()
        svc.stop()
        worker.stop()
        db.drop()
        delete_topics(bootstrap, topics)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=("embedded", "distributed"), default="embedded")
    ap.add_argument("--times", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--queue-seconds", type=float, default=None,
                    help="embedded: REPLENISH_MAX_QUEUE_SECONDS (default: the service's); 0 for no "
                         "drain-time bound (only REPLENISH_MAX_QUEUED_EVENTS, the baseline)")
    args = ap.parse_args()
    if args.profile == "distributed":
        distributed(args)
        return
    rate = P99_RATE * args.times
    n_batches = int(rate * args.seconds / args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        env = {} if args.queue_seconds is None else \
            {"REPLENISH_MAX_QUEUE_SECONDS": str(args.queue_seconds or 1e9)}
        svc = Service(data, env).start()
        try:
            wl = Workload("overload", items=3, locations=4)
            with httpx.Client(base_url=svc.base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
                admin.post("/v1/events", json=wl.master_data(datetime.now(UTC))).raise_for_status()
            answers, drain_s = asyncio.run(offer(svc.port, lambda _i: [wl.next_event()[1] for _ in range(args.batch)],
                                                 n_batches, rate / args.batch))
            assert svc.proc is not None
            memory = rss_mb(svc.proc.pid)
            # Every acknowledged batch again (the same workload made afresh): none of its
            # events may be taken as new.
            lost = asyncio.run(resend(svc.port, answers, args.batch))
            summary(args, rate, answers)
            bound = ("REPLENISH_MAX_QUEUED_EVENTS alone" if args.queue_seconds == 0 else
                     f"REPLENISH_MAX_QUEUE_SECONDS={args.queue_seconds or 'the default'}")
            print(f"queue bound: {bound}")
            print(f"memory at the end: {memory:.0f} MB; drained {drain_s:.1f} s after the load stopped")
            print(f"acknowledged and lost: {lost}")
        finally:
            svc.stop()


if __name__ == "__main__":
    main()
