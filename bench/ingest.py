"""Ingest benchmark on the embedded profile, all in one run:

(a) accepted events per second through ``POST /v1/events`` of a real ``replenish serve``
    subprocess, with batches of 1 (several concurrent clients), 100 and 1,000 events;
(b) the same through ``Processor.process`` called in-process, so the HTTP overhead shows;
(c) a raw ``eventsourcing`` SQLite append (no validation, no hash chain) of as many stored
    events as our path wrote for the same inputs, with stored states of the same mean size and
    the same number of transactions, and the ratio of HTTP (batch 1,000) to it;
(d) scan-to-stored latency of single-event POSTs at a fixed, open-loop offered load.

Run: ``.venv/bin/python -m bench.ingest`` (``--help`` for the event counts). A benchmark,
not a test: it reports what was accepted and asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import orjson

from bench.workload import Workload
from domain.intake import Principal
from streams.processor import tune_collector

if TYPE_CHECKING:
    from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SCANNER_KEY = "bench-scanner-key"
ADMIN_KEY = "bench-admin-key"
CASE_ID_KEY = "bench-case-id-key-not-a-secret"
API_KEYS = f"{SCANNER_KEY}:scanner:bench-scanner,{ADMIN_KEY}:admin:bench-admin"
SCANNER = Principal("bench-scanner", "scanner")
ADMIN = Principal("bench-admin", "admin")


# -- results --------------------------------------------------------------------------------

@dataclass
class Phase:
    """One measured run: ``events`` inputs in batches of ``batch``, ``stored`` events written."""

    path: str
    batch: int
    events: int
    seconds: float
    stored: int
    statuses: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    state_bytes: float = 0.0  # mean length of the stored states written
    note: str = ""

    @property
    def accepted(self) -> int:
        return self.statuses.get("accepted", 0) if self.statuses else self.events

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds

    @property
    def stored_rate(self) -> float:
        return self.stored / self.seconds


@dataclass
class Latency:
    offered_rate: float
    seconds: float
    sent: int
    from_schedule_ms: list[float]
    from_send_ms: list[float]
    statuses: Counter[str]
    flags: Counter[str]
    connections: int
    errors: int

    def pct(self, values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# -- the service ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """``replenish serve`` on a free loopback port over a fresh data directory."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Service:
        exe = Path(sys.executable).parent / "replenish"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "infra.cli"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPLENISH_")}
        env.update(REPLENISH_DATA_DIR=str(self.data_dir), REPLENISH_CASE_ID_KEY=CASE_ID_KEY,
                   REPLENISH_API_KEYS=API_KEYS, **self.extra_env)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*cmd, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir.parent)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replenish serve exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"replenish serve did not answer /healthz in {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def db(self) -> Path:
        return self.data_dir / "events.sqlite"


def store_mark(db: Path) -> int:
    """The last notification id of a store (read-only, beside the writer: SQLite WAL)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT COALESCE(MAX(rowid), 0) FROM stored_events").fetchone()[0])
    finally:
        con.close()


def mean_state_bytes(db: Path, after: int, upto: int) -> float:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT AVG(LENGTH(state)) FROM stored_events WHERE rowid > ? AND rowid <= ?",
                          (after, upto)).fetchone()
        return float(row[0] or 0.0)
    finally:
        con.close()


# -- a lean HTTP/1.1 client -------------------------------------------------------------------
# The load generator shares two cores with the service, so it must cost little per request:
# raw asyncio streams with keep-alive connections, not a full client library.

class Connection:
    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.head = (f"POST /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                     "Content-Length: ").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def post(self, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def tally(body: bytes, statuses: Counter[str], flags: Counter[str]) -> None:
    for r in orjson.loads(body)["results"]:
        statuses[r["status"]] += 1
        flags.update(r["flags"])


async def _post_closed_loop(port: int, bodies_per_client: list[list[bytes]],
                            ) -> tuple[float, Counter[str], Counter[str]]:
    """Each client posts its bodies one after the other; all clients at once."""
    statuses: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    conns = [await Connection("127.0.0.1", port, SCANNER_KEY).open() for _ in bodies_per_client]

    async def client(conn: Connection, bodies: list[bytes]) -> None:
        for body in bodies:
            status, answer = await conn.post(body)
            if status != 200:
                raise RuntimeError(f"POST /v1/events answered {status}: {answer[:300]!r}")
            tally(answer, statuses, flags)

    started = time.perf_counter()
    await asyncio.gather(*(client(c, b) for c, b in zip(conns, bodies_per_client, strict=True)))
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    return elapsed, statuses, flags


def http_phase(svc: Service, wl: Workload, n: int, batch: int, clients: int) -> Phase:
    items = wl.events(n)
    if batch == 1:
        # One client per group of stock points, so each stock point's events stay in order.
        per_client: list[list[bytes]] = [[] for _ in range(clients)]
        for sp, event in items:
            per_client[sp % clients].append(orjson.dumps(event))
        per_client = [b for b in per_client if b]
    else:
        per_client = [[orjson.dumps([e for _, e in items[i:i + batch]])
                       for i in range(0, n, batch)]]
    before = store_mark(svc.db)
    elapsed, statuses, flags = asyncio.run(_post_closed_loop(svc.port, per_client))
    after = store_mark(svc.db)
    note = (f"{len(per_client)} concurrent clients" if batch == 1 else "1 client")
    return Phase("HTTP POST /v1/events", batch, n, elapsed, after - before, statuses, flags,
                 transactions=(n + batch - 1) // batch if batch > 1 else 0,
                 state_bytes=mean_state_bytes(svc.db, before, after), note=note)


async def _open_loop(port: int, bodies: list[bytes], rate: float, warmup: int,
                     max_connections: int) -> Latency:
    """Send ``bodies`` on a fixed schedule whatever the answers do (open loop), over up to
    ``max_connections`` keep-alive connections (like that many scanners and cabinets); a
    request that finds none free waits for one. Latency is measured from each request's
    scheduled start (so waiting counts: no coordinated omission) and from its send."""
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    opened = 0
    from_schedule: list[float] = []
    from_send: list[float] = []
    statuses: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    errors = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, body: bytes, scheduled: float) -> None:
        nonlocal opened, errors
        if idle.empty() and opened < max_connections:
            opened += 1
            conn = await Connection("127.0.0.1", port, SCANNER_KEY).open()
        else:
            conn = await idle.get()
        sent = time.perf_counter()
        status, answer = await conn.post(body)
        done = time.perf_counter()
        idle.put_nowait(conn)
        if status != 200:
            errors += 1
            return
        if i >= warmup:
            from_schedule.append((done - scheduled) * 1000)
            from_send.append((done - sent) * 1000)
            tally(answer, statuses, flags)

    loop = asyncio.get_running_loop()
    start = time.perf_counter() + 0.05
    for i, body in enumerate(bodies):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(i, body, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - (start + warmup / rate)
    while not idle.empty():
        idle.get_nowait().close()
    return Latency(rate, elapsed, len(bodies) - warmup, from_schedule, from_send, statuses, flags,
                   opened, errors)


def latency_phase(svc: Service, wl: Workload, rate: float, seconds: float, warmup_s: float,
                  max_connections: int) -> Latency:
    warmup = int(rate * warmup_s)
    bodies = [orjson.dumps(e) for _, e in wl.events(warmup + int(rate * seconds))]
    return asyncio.run(_open_loop(svc.port, bodies, rate, warmup, max_connections))



# -- in-process -----------------------------------------------------------------------------

def serve_settings(data_dir: Path) -> Settings:
    """The settings ``Service`` runs ``replenish serve`` with, over ``data_dir``: a processor
    built from them (procurement included) does the work the service does."""
    from infra.settings import Settings

    return Settings(data_dir=data_dir, case_id_key=CASE_ID_KEY,  # type: ignore[arg-type]
                    api_keys=API_KEYS,  # type: ignore[arg-type]
                    ).prepared()


def inprocess_phases(tmp: Path, run: str, counts: dict[int, int], items: int, locations: int,
                     ) -> list[Phase]:
    from infra.wiring import build_processor, sqlite_path

    settings = serve_settings(tmp / "inprocess")
    processor = build_processor(settings)
    db = sqlite_path(settings)
    tune_collector()  # as the service does once started (and so for the raw append after it)
    wl = Workload(run, items=items, locations=locations)
    processor.process([(e, ADMIN) for e in wl.master_data(datetime.now(UTC))])
    phases = []
    for batch, n in counts.items():
        events = [e for _, e in wl.events(n)]
        batches = [[(e, SCANNER) for e in events[i:i + batch]] for i in range(0, n, batch)]
        statuses: Counter[str] = Counter()
        flags: Counter[str] = Counter()
        stored = 0
        before = store_mark(db)
        started = time.perf_counter()
        for b in batches:
            result = processor.process(b)
            stored += result.stored
        elapsed = time.perf_counter() - started
        # Outcomes, outside the timed section: each event's first outcome, from the ledger.
        for e in events:
            prior = processor.ledger.seen.get(e["event_id"])
            statuses[prior.status if prior else "missing"] += 1
            if prior:
                flags.update(prior.flags)
        phases.append(Phase("in-process Processor.process", batch, n, elapsed, stored, statuses,
                            flags, transactions=len(batches),
                            state_bytes=mean_state_bytes(db, before, store_mark(db)),
                            note="1 caller"))
    processor.store.close()
    return phases


# -- raw eventsourcing append ------------------------------------------------------------------

def raw_phases(tmp: Path, reference: list[Phase], points: int) -> list[Phase]:
    """For each reference phase: as many stored events, in as many transactions, with stored
    states of the same mean size, appended by a plain eventsourcing application (the same
    SQLite settings and orjson transcoder as ours; no validation, no hash chain)."""
    from bench.raw import RawAggregate, RawStore
    from streams.store import sqlite_env

    app = RawStore(env=sqlite_env(str(tmp / "raw.sqlite")))
    aggregates = [RawAggregate.open(f"sp{i}", datetime.now(UTC)) for i in range(points)]
    app.save(*aggregates)
    wl = Workload("raw", items=3, locations=2)
    phases = []
    for ref in reference:
        transactions = ref.transactions or ref.events  # batch 1: one transaction per event
        events = [e for _, e in wl.events(ref.stored)]
        # Pad each state to the mean stored size of the reference phase.
        probe = RawAggregate.open("probe", datetime.now(UTC))  # never saved
        sample = []
        for e in events[:200]:
            probe.append(e, "", datetime.now(UTC))
            sample.append(len(app.mapper.to_stored_event(probe.pending_events[-1]).state))
        unpadded = round(statistics.fmean(sample))
        pad = "x" * max(0, int(round(ref.state_bytes)) - unpadded)
        # The stored events split over the transactions as evenly as they were in ours.
        sizes = [ref.stored // transactions + (1 if i < ref.stored % transactions else 0)
                 for i in range(transactions)]
        before = store_mark(tmp / "raw.sqlite")
        started = time.perf_counter()
        k = 0
        for size in sizes:
            touched = {}
            now = datetime.now(UTC)
            for e in events[k:k + size]:
                agg = aggregates[k % points]
                agg.append(e, pad, now)
                touched[agg.id] = agg
                k += 1
            app.save(*touched.values())
        elapsed = time.perf_counter() - started
        after = store_mark(tmp / "raw.sqlite")
        phases.append(Phase("raw eventsourcing append", ref.batch, ref.events, elapsed, after - before,
                            transactions=transactions,
                            state_bytes=mean_state_bytes(tmp / "raw.sqlite", before, after),
                            note=f"{ref.stored} stored in {transactions} txns"))
    app.close()
    return phases


# -- the report -----------------------------------------------------------------------------

def print_report(args: argparse.Namespace, http: list[Phase], inproc: list[Phase], raw: list[Phase],
                 latency: Latency | None, total: float) -> None:
    print()
    print(f"ingest benchmark, embedded profile (SQLite), {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    load = os.getloadavg()
    print(f"load average before the run {args.load_before[0]:.2f}, now {load[0]:.2f} (1 min)"
          + ("  WARNING: other work shares the CPUs; figures are low and noisy"
             if args.load_before[0] > 0.5 else ""))
    print(f"workload: {args.items} items x {args.locations} locations = "
          f"{args.items * args.locations} stock points; usages of 1-3 from the oldest lot, and a "
          "receipt of a new lot of 200 when stock runs low; each with lot and expiry")
    print()
    header = (f"{'path':<30} {'batch':>5} {'events':>7} {'accepted/s':>11} {'stored':>7} "
              f"{'stored/s':>9} {'B/state':>7}  note")
    print(header)
    print("-" * len(header))
    for p in [*http, *inproc, *raw]:
        acc = f"{p.rate:>11,.0f}" if p.path != "raw eventsourcing append" else (
            f"{p.events / p.seconds:>10,.0f}*")
        print(f"{p.path:<30} {p.batch:>5} {p.events:>7} {acc} {p.stored:>7} "
              f"{p.stored_rate:>9,.0f} {p.state_bytes:>7.0f}  {p.note}")
    print("* raw: input events per second equivalent (the inputs that stored as many events)")
    bad = [(p.path, p.batch, dict(p.statuses)) for p in [*http, *inproc]
           if p.statuses and p.accepted != p.events]
    for path, batch, st in bad:
        print(f"WARNING: {path} batch {batch}: not all events accepted: {st}")
    flagged = [(p.path, p.batch, dict(p.flags)) for p in [*http, *inproc] if p.flags]
    for path, batch, fl in flagged:
        print(f"note: {path} batch {batch}: flags {fl}")

    print()
    by_batch = {p.batch: p for p in http}
    ip = {p.batch: p for p in inproc}
    rw = {p.batch: p for p in raw}
    if http and inproc:
        print("HTTP overhead (HTTP rate / in-process rate): " + ", ".join(
            f"batch {b}: {by_batch[b].rate / ip[b].rate:.2f}" for b in by_batch if b in ip))
    if 1000 in by_batch and 1000 in rw:
        h, r = by_batch[1000], rw[1000]
        ratio = r.seconds / h.seconds  # same inputs, same stored events: a ratio of times
        print(f"HTTP (batch 1000) / raw append of the same {r.stored} stored events: "
              f"{h.rate:,.0f} / {r.events / r.seconds:,.0f} = {ratio:.2f}  (target >= 0.5: "
              f"{'met' if ratio >= 0.5 else 'NOT met'})")
        if 1000 in ip:
            print(f"in-process (batch 1000) / raw append: {r.seconds / ip[1000].seconds:.2f}")
    if latency is not None:
        L = latency
        if L.from_schedule_ms:
            p50, p99 = L.pct(L.from_schedule_ms, 50), L.pct(L.from_schedule_ms, 99)
            print()
            print(f"scan-to-stored latency, single-event POST /v1/events, open loop at "
                  f"{L.offered_rate:,.0f} events/s offered for {L.seconds:.1f} s "
                  f"({L.sent} events measured after {args.latency_warmup:g} s warm-up; "
                  f"{L.connections} keep-alive connections; achieved "
                  f"{len(L.from_schedule_ms) / L.seconds:,.0f}/s answered):")
            print(f"  from scheduled start: p50 {p50:.1f} ms  p90 {L.pct(L.from_schedule_ms, 90):.1f} ms  "
                  f"p99 {p99:.1f} ms  max {max(L.from_schedule_ms):.1f} ms  (target p99 < 50 ms: "
                  f"{'met' if p99 < 50 else 'NOT met'})")
            print(f"  from send:            p50 {L.pct(L.from_send_ms, 50):.1f} ms  "
                  f"p90 {L.pct(L.from_send_ms, 90):.1f} ms  p99 {L.pct(L.from_send_ms, 99):.1f} ms  "
                  f"max {max(L.from_send_ms):.1f} ms")
            print(f"  outcomes: {dict(L.statuses)}" + (f"; flags {dict(L.flags)}" if L.flags else "")
                  + (f"; HTTP errors {L.errors}" if L.errors else ""))
        else:
            print("latency: no answers measured")
    print(f"\ntotal run time {total:.0f} s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--events-1", type=int, default=3_000, help="events posted one per request")
    ap.add_argument("--events-100", type=int, default=20_000, help="events posted 100 per request")
    ap.add_argument("--events-1000", type=int, default=50_000, help="events posted 1,000 per request")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients for batches of 1")
    ap.add_argument("--items", type=int, default=3, help="items (1-4)")
    ap.add_argument("--locations", type=int, default=4, help="ward locations")
    ap.add_argument("--latency-rate", type=float, default=1000.0, help="offered events per second")
    ap.add_argument("--latency-seconds", type=float, default=10.0, help="measured duration")
    ap.add_argument("--latency-warmup", type=float, default=1.0, help="unmeasured lead-in, seconds")
    ap.add_argument("--latency-connections", type=int, default=64,
                    help="most keep-alive connections the open-loop sender uses")
    ap.add_argument("--skip-http", action="store_true", help="in-process and raw only")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = ap.parse_args(argv)
    args.load_before = os.getloadavg()

    counts = {1: args.events_1, 100: args.events_100, 1000: args.events_1000}
    counts = {b: n for b, n in counts.items() if n > 0}
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="replenish-bench-"))
    run = datetime.now(UTC).strftime("b%H%M%S")
    http: list[Phase] = []
    latency: Latency | None = None
    try:
        if not args.skip_http:
            data = tmp / "data"
            data.mkdir()
            svc = Service(data).start()
            print(f"replenish serve on port {svc.port}, data in {data}", flush=True)
            try:
                wl = Workload(f"{run}-http", items=args.items, locations=args.locations)
                r = httpx.post(f"{svc.base}/v1/events", json=wl.master_data(datetime.now(UTC)),
                               headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)
                r.raise_for_status()
                # A short unmeasured warm-up (imports, caches, first stock points and lots).
                http_phase(svc, wl, 200, 100, 1)
                for batch, n in counts.items():
                    p = http_phase(svc, wl, n, batch, args.clients)
                    http.append(p)
                    print(f"  HTTP batch {batch}: {p.rate:,.0f} accepted/s", flush=True)
                if not args.skip_latency:
                    latency = latency_phase(svc, wl, args.latency_rate, args.latency_seconds,
                                            args.latency_warmup, args.latency_connections)
                    print("  latency phase done", flush=True)
            finally:
                svc.stop()
        inproc = inprocess_phases(tmp, f"{run}-proc", counts, args.items, args.locations)
        print("  in-process phases done", flush=True)
        reference = http or inproc
        raw = raw_phases(tmp, reference, args.items * args.locations)
        print("  raw append phases done", flush=True)
        print_report(args, http, inproc, raw, latency, time.perf_counter() - started)
    finally:
        if args.keep:
            print(f"data kept in {tmp}")
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
