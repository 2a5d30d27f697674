"""Distributed-profile benchmark, in one run on the same Kafka broker and PostgreSQL server:

(a) events per second through three Faust agents reading the same topic (6 partitions, one
    worker process each, batches of up to 1,000 within 20 ms): a trivial agent that only
    counts; a store-only agent that appends each event with the batch's tracking records to
    PostgreSQL (``eventsourcing``'s recorder, no validation); and our worker (validate, store
    with tracking, learn, decide, publish outcomes; its relay publishing decisions and alerts),
    with the ratios;
(b) end-to-end latency at a fixed offered load (default 1,000 events/s, open loop): from a
    gateway's produce to the alert on ``replenish.alerts.v1`` (every 20th event scans an expired
    lot, which is refused and alerts), through a real ``replenish worker``; and from POST to
    answer through a real ``replenish serve`` on the distributed profile.

Run on one machine: ``eval "$(infra/up)"`` then ``.venv/bin/python -m bench.distributed``
(``--help`` for the sizes). Each run uses a database and topics of its own (dropped after).
A benchmark, not a test: it reports what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.ingest import ADMIN_KEY, CASE_ID_KEY, SCANNER_KEY, _open_loop, free_port
from bench.workload import Workload
from streams.topics import PRINCIPAL, Topics, ensure_topics, route

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 6
GATEWAY, ERP = "bench-gw", "bench-erp"
ROLES = {GATEWAY: "scanner", ERP: "admin"}


# -- servers, databases, topics ---------------------------------------------------------------

def servers() -> tuple[str, str]:
    """The broker and database: from the environment (``eval "$(infra/up)"``), else infra/up."""
    bootstrap, dsn = os.environ.get("REPLENISH_KAFKA_BOOTSTRAP"), os.environ.get("REPLENISH_POSTGRES_DSN")
    if bootstrap and dsn:
        return bootstrap, dsn
    out = subprocess.run(["bash", str(ROOT / "infra" / "up")], capture_output=True, text=True, check=True).stdout
    found = dict(line.split(" ", 1)[1].split("=", 1) for line in out.splitlines() if line.startswith("export "))
    return shlex.split(found["REPLENISH_KAFKA_BOOTSTRAP"])[0], shlex.split(found["REPLENISH_POSTGRES_DSN"])[0]


class Database:
    def __init__(self, dsn: str, name: str) -> None:
        self.admin_dsn, self.name = dsn, name
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.dsn = make_conninfo(dsn, dbname=name)

    def drop(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as db:
            db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))

    def max_id(self) -> int:
        """The last notification id stored (0 before the store's tables exist)."""
        with psycopg.connect(self.dsn) as db:
            if db.execute("SELECT to_regclass('replenish_events')").fetchone() == (None,):
                return 0
            row = db.execute("SELECT COALESCE(MAX(notification_id), 0) FROM replenish_events").fetchone()
            return int(row[0]) if row else 0


def producer(bootstrap: str) -> Any:
    from confluent_kafka import Producer
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                     "linger.ms": 2, "partitioner": "murmur2_random"})


def produce(p: Any, topics: Topics, event: dict[str, Any], principal: str) -> None:
    topic, key = route(event, topics, lambda _gtin: None)
    while True:
        try:
            p.produce(topic, orjson.dumps(event), key.encode() if key else None,
                      headers=[(PRINCIPAL, principal.encode())])
            return
        except BufferError:
            p.poll(0.05)


def delete_topics(bootstrap: str, topics: Topics) -> None:
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(topics.prefix)]
    for future in (admin.delete_topics(names, operation_timeout=30).values() if names else ()):
        future.result(timeout=30)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


# -- (a) the three agents, each in a process of its own ------------------------------------------

def agent_main(argv: list[str]) -> None:
    """``python -m bench.distributed agent KIND ...``: run one agent until it has handled
    ``--expect`` messages, print what it measured as JSON, and exit."""
    import faust

    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["count", "store", "worker"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--dsn", default="")
    parser.add_argument("--expect", type=int, required=True)
    args = parser.parse_args(argv)
    topics = Topics(args.prefix)
    group = f"{args.prefix}bench-{args.kind}-{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-faust-"))
    seen = {"n": 0, "first": 0.0}

    def done(n: int) -> None:
        seen["n"] += n
        if seen["n"] >= args.expect:
            elapsed = time.perf_counter() - seen["first"]
            print(orjson.dumps({"kind": args.kind, "events": seen["n"], "seconds": elapsed,
                                "rate": seen["n"] / elapsed}).decode(), flush=True)
            os._exit(0)

    def started() -> None:
        if not seen["first"]:
            seen["first"] = time.perf_counter()

    if args.kind == "worker":
        from streams.kafka_app import WorkerConfig, create_worker_app
        from streams.processor import Processor
        from streams.relay import Relay
        from streams.store import postgres_env
        from streams.tracked_store import TrackedEventStore

        processor = Processor(TrackedEventStore(postgres_env(args.dsn)), CASE_ID_KEY.encode())
        config = WorkerConfig(args.bootstrap, topics, ROLES, PARTITIONS, group_id=group, datadir=tmp)
        app = create_worker_app(processor, config)
        Relay(TrackedEventStore(postgres_env(args.dsn)), args.dsn, args.bootstrap, topics).start()
        worker = app.partition_worker
        assert worker is not None
        handle = worker.handle

        async def timed(events: Any) -> None:
            started()
            await handle(events)
            done(len(events))

        worker.handle = timed  # type: ignore[method-assign]
        faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
        return

    plain = faust.App(group, broker=f"kafka://{args.bootstrap}", autodiscover=False, web_enabled=False,
                      topic_allow_declare=False, topic_disable_leader=True, datadir=str(tmp),
                      consumer_auto_offset_reset="earliest")
    topic = plain.topic(topics.events, key_serializer="raw", value_serializer="raw")
    if args.kind == "count":
        @plain.agent(topic)
        async def count(stream: Any) -> None:
            async for events in stream.take_events(1000, within=0.02):
                started()
                done(len(events))
    else:
        from concurrent.futures import ThreadPoolExecutor

        from eventsourcing.persistence import StoredEvent, Tracking

        from streams.store import postgres_env
        from streams.tracked_store import TrackedEventStore

        raw_store = TrackedEventStore(postgres_env(args.dsn))  # kept: its pool closes with it
        recorder = raw_store.recorder
        versions: dict[bytes, int] = {}
        executor = ThreadPoolExecutor(max_workers=1)

        def append(events: Any) -> None:
            stored, last = [], {}
            for e in events:
                m = e.message
                v = versions[m.key] = versions.get(m.key, 0) + 1
                stored.append(StoredEvent(originator_id=f"raw:{m.key.decode()}", originator_version=v,
                                          topic="bench:Raw", state=m.value))
                last[(m.topic, m.partition)] = m.offset
            recorder.insert_events(stored, trackings=[Tracking(f"{t}-{p}", o) for (t, p), o in last.items()])

        @plain.agent(topic)
        async def store(stream: Any) -> None:
            async for events in stream.take_events(1000, within=0.02):
                started()
                await asyncio.get_running_loop().run_in_executor(executor, append, events)
                done(len(events))

    faust.Worker(plain, loglevel="WARNING", quiet=True).execute_from_commandline()


def run_agent(kind: str, bootstrap: str, prefix: str, expect: int, dsn: str = "") -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.distributed", "agent", kind, "--bootstrap", bootstrap,
           "--prefix", prefix, "--expect", str(expect), "--dsn", dsn]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    # Faust's worker sends what is printed to its log (stderr), prefixed.
    lines = [ln[ln.index('{"kind"'):].strip() for ln in (proc.stdout + proc.stderr).splitlines() if '{"kind"' in ln]
    if not lines:
        raise RuntimeError(f"agent {kind} printed no result (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return dict(orjson.loads(lines[-1]))


def throughput(bootstrap: str, dsn: str, n: int, items: int, locations: int) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:8]
    topics = Topics(f"bench{run}.")
    ensure_topics(bootstrap, topics, PARTITIONS)
    wl = Workload(f"b{run}", items=items, locations=locations)
    master = wl.master_data(datetime.now(UTC) - timedelta(days=30))
    p = producer(bootstrap)
    for e in master:
        produce(p, topics, e, ERP)
    for _, e in wl.events(n):
        produce(p, topics, e, GATEWAY)
    assert p.flush(60) == 0
    print(f"  {n:,} events produced to {topics.events} ({PARTITIONS} partitions, "
          f"{len(wl.points)} stock points)", flush=True)
    results = []
    try:
        for kind in ("count", "store", "worker"):
            db = Database(dsn, f"bench_{run}_{kind}") if kind != "count" else None
            try:
                expect = n + (len(master) if kind == "worker" else 0)
                r = run_agent(kind, bootstrap, topics.prefix, expect, db.dsn if db else "")
                if db is not None:
                    r["stored"] = db.max_id()
                results.append(r)
                print(f"  {kind:>6}: {r['rate']:>9,.0f} events/s ({r['events']:,} in {r['seconds']:.2f} s)",
                      flush=True)
            finally:
                if db is not None:
                    db.drop()
    finally:
        delete_topics(bootstrap, topics)
    return results


# -- (b) latency at a fixed offered load -----------------------------------------------------------

class Replenish:
    """A ``replenish`` subprocess (worker or serve) with its log."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        exe = Path(sys.executable).parent / "replenish"
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen([str(exe), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=log.parent)

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.log.name}: no {text!r}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def latency(bootstrap: str, dsn: str, rate: float, seconds: float, warmup_s: float,
            items: int, locations: int) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    run = uuid.uuid4().hex[:8]
    topics = Topics(f"benchlat{run}.")
    ensure_topics(bootstrap, topics, PARTITIONS)
    db = Database(dsn, f"bench_{run}_latency")
    tmp = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLENISH_")}
    env.update({
        "REPLENISH_PROFILE": "distributed", "REPLENISH_KAFKA_BOOTSTRAP": bootstrap,
        "REPLENISH_POSTGRES_DSN": db.dsn, "REPLENISH_KAFKA_TOPIC_PREFIX": topics.prefix,
        "REPLENISH_WORKER_GROUP": f"{topics.prefix}replenish-worker",
        "REPLENISH_API_KEYS": f"{SCANNER_KEY}:scanner:bench-scanner,{ADMIN_KEY}:admin:bench-admin",
        "REPLENISH_GATEWAYS": ",".join(f"{k}:{v}" for k, v in ROLES.items()),
        "REPLENISH_CASE_ID_KEY": CASE_ID_KEY, "REPLENISH_DATA_DIR": str(tmp / "data")})
    worker = Replenish(["worker", "--loglevel", "WARNING"], env, tmp / "worker.log")
    api: Replenish | None = None
    try:
        wl = Workload(f"l{run}", items=items, locations=locations)
        p = producer(bootstrap)
        for e in wl.master_data(datetime.now(UTC) - timedelta(days=30)):
            produce(p, topics, e, ERP)
        assert p.flush(30) == 0
        deadline = time.monotonic() + 90
        while db.max_id() < len(wl.master_data(datetime.now(UTC))) * 2:  # each record opens a stream
            if time.monotonic() > deadline or worker.proc.poll() is not None:
                raise RuntimeError(f"the worker stored no master data:\n{worker.log.read_text()[-3000:]}")
            time.sleep(0.2)

        # Produce -> alert.
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{run}", "enable.auto.commit": False})
        parts = consumer.list_topics(topics.alerts, timeout=10).topics[topics.alerts].partitions
        consumer.assign([TopicPartition(topics.alerts, q, consumer.get_watermark_offsets(
            TopicPartition(topics.alerts, q), timeout=10)[1]) for q in parts])
        arrived: dict[str, float] = {}
        stop = threading.Event()

        def listen() -> None:
            while not stop.is_set():
                msg = consumer.poll(0.05)
                if msg is not None and msg.error() is None:
                    alert = orjson.loads(msg.value() or b"{}").get("alert") or {}
                    if alert.get("kind") == "expired_lot_scanned":
                        arrived.setdefault(str(alert.get("event_id")), time.perf_counter())

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        total = int(rate * (warmup_s + seconds))
        warm = int(rate * warmup_s)
        events = []
        expired = (date.today() - timedelta(days=3)).isoformat()
        for i, (_, e) in enumerate(wl.events(total)):
            if i % 20 == 10:  # an expired lot at the bedside: refused, and an alert
                e = dict(e, type="usage", event_id=f"{e['event_id']}-x", lot=f"EXP{i}", expiry=expired, quantity=1)
            events.append(e)
        sent: dict[str, float] = {}
        start = time.perf_counter() + 0.1
        for i, e in enumerate(events):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if i >= warm and e["event_id"].endswith("-x"):
                sent[e["event_id"]] = time.perf_counter()
            produce(p, topics, e, GATEWAY)
            p.poll(0)
        assert p.flush(30) == 0
        wait_until = time.monotonic() + 15
        while not set(sent) <= set(arrived) and time.monotonic() < wait_until:
            time.sleep(0.1)
        stop.set()
        listener.join(5)
        consumer.close()
        to_alert = [(arrived[k] - t) * 1000 for k, t in sent.items() if k in arrived]

        # POST -> answer: single events at the offered rate, then the same events/s in tens.
        port = free_port()
        api = Replenish(["serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp / "serve.log")
        api.wait_for("Application startup complete")
        posts = {}
        for per_post in (1, 10):
            n = int(rate * (warmup_s + seconds))
            singles = [e for _, e in wl.events(n)]
            bodies = [orjson.dumps(singles[i] if per_post == 1 else singles[i:i + per_post])
                      for i in range(0, n, per_post)]
            posts[per_post] = asyncio.run(_open_loop(port, bodies, rate / per_post,
                                                     int(rate * warmup_s / per_post), max_connections=256))
        return {"alerts_expected": len(sent), "alerts_seen": len(to_alert), "to_alert_ms": to_alert,
                "posts": posts}
    finally:
        if api is not None:
            api.stop()
        worker.stop()
        db.drop()
        delete_topics(bootstrap, topics)


# -- report ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agent"]:
        agent_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000, help="events for the throughput runs")
    parser.add_argument("--items", type=int, default=4, help="items (1-4)")
    parser.add_argument("--locations", type=int, default=15, help="locations (stock points = items × locations)")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered load for the latency runs, events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds of each latency run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent before measuring")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args(argv)
    # Stopped (by timeout(1), say), still stop the worker and API and drop the databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bootstrap, dsn = servers()
    before = os.getloadavg()
    print(f"broker {bootstrap}; PostgreSQL {make_conninfo(dsn, password='***')}; {os.cpu_count()} CPUs", flush=True)
    if not args.skip_throughput:
        print("\n(a) throughput, one Faust worker process per agent:", flush=True)
        results = {r["kind"]: r for r in throughput(bootstrap, dsn, args.events, args.items, args.locations)}
        count, store, ours = results["count"]["rate"], results["store"]["rate"], results["worker"]["rate"]
        print(f"  our worker / store-only agent = {ours / store:.2f}; our worker / counting agent = "
              f"{ours / count:.3f}; store-only / counting = {store / count:.2f}", flush=True)
    if not args.skip_latency:
        print(f"\n(b) latency at {args.rate:,.0f} events/s offered for {args.seconds:.0f} s "
              f"(after {args.warmup:.0f} s of warm-up):", flush=True)
        r = latency(bootstrap, dsn, args.rate, args.seconds, args.warmup, args.items, args.locations)
        to_alert = r["to_alert_ms"]
        print(f"  produce -> alert on {Topics().alerts}: p50 {pct(to_alert, 50):.1f} ms, "
              f"p99 {pct(to_alert, 99):.1f} ms, max {max(to_alert, default=float('nan')):.1f} ms "
              f"({r['alerts_seen']} of {r['alerts_expected']} alerts; mean {statistics.fmean(to_alert or [0]):.1f} ms)")
        for per_post, post in r["posts"].items():
            statuses: Counter[str] = post.statuses
            print(f"  POST /v1/events ({per_post} event{'s' if per_post > 1 else ''} each, "
                  f"{args.rate / per_post:,.0f}/s) -> answer: p50 {post.pct(post.from_schedule_ms, 50):.1f} ms, "
                  f"p99 {post.pct(post.from_schedule_ms, 99):.1f} ms from schedule "
                  f"(from send: p50 {post.pct(post.from_send_ms, 50):.1f}, p99 {post.pct(post.from_send_ms, 99):.1f}); "
                  f"{post.sent} requests in {post.seconds:.1f} s, {dict(statuses)}, {post.errors} errors, "
                  f"{post.connections} connections")
    print(f"\nload average before {before[0]:.2f}, now {os.getloadavg()[0]:.2f} (1 min; "
          f"other work on the machine lowers and scatters the figures)")


if __name__ == "__main__":
    main()
