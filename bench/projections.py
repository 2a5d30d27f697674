"""Projection benchmark: rebuild and live-follow rates, and the latency of every KPI query.

Generates a year of stored events for a hospital directly as notification-log entries (the
JSON states the event store keeps: stock facts, decisions, alerts, refusals, purchase
orders), then:

1. rebuilds the projection from them as ``replay --projections`` does (the states staged in
   the engine and flattened there, materialized views, then the KPI summary tables): events/s
   and rows/s;
2. times the parts on a slice: staging the states, writing the tables from the stage, the
   summaries;
3. follows a slice of them live, in small batches as the service would;
4. runs each KPI query ``--repeat`` times over the year: p50 and p95 latency;
5. with ``--scale K``, copies the tables K-1 more times inside ClickHouse (new stock
   points, new ids), recomputes the summaries and times the KPIs again at K × the events.

    .venv/bin/python -m bench.projections --events 1000000 --scale 10
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from projections import queries, summaries
from projections.client import connect, drop_database, open_projections
from projections.follower import Follower, _columns, _raw_state, count_rows, json_state, rebuild
from projections.processors import COLUMNS
from projections.writer import Writer

START = datetime(2025, 1, 6, tzinfo=UTC)
SITES = {"H1": ["CS", "W1", "W2", "W3", "OR1"], "H2": ["N1", "N2", "N3"]}


@dataclass
class Notification:
    id: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Year:
    """A year of events for ``skus`` items at eight locations of two sites."""

    def __init__(self, events: int, skus: int = 40, seed: int = 3) -> None:
        self.n, self.rng = events, random.Random(seed)
        self.skus = [f"SKU-{i:03d}" for i in range(skus)]
        self.locations = [(site, loc) for site, locs in SITES.items() for loc in locs]
        self.versions: dict[str, int] = {}
        self.out: list[Notification] = []
        self.balance: dict[tuple[str, str, str], float] = {}

    def add(self, stream: str, kind: str, body: dict[str, Any]) -> None:
        v = self.versions[stream] = self.versions.get(stream, 0) + 1
        self.out.append(Notification(len(self.out) + 1, stream, v, f"domain.aggregates:{kind}",
                                     orjson.dumps(body)))

    def fact(self, kind: str, stream: str, at: datetime, event: dict[str, Any], **extra: Any) -> None:
        stamp = iso(at)
        event = dict(event, event_id=f"ev-{len(self.out)}", occurred_at=stamp)
        self.add(stream, kind, {"timestamp": stamp, "event": event, "fingerprint": "0" * 32,
                                "recorded_at": stamp, "recorded_by": "bench", "prev_hash": "0" * 64,
                                "hash": "1" * 64, **extra})

    def generate(self) -> list[Notification]:
        rng = self.rng
        for site, loc in self.locations:
            self.fact("MasterRecord.Registered", f"location:{loc}", START,
                      {"type": "location_registered", "location": loc, "site": site})
        for sku in self.skus:
            self.fact("MasterRecord.Registered", f"item:{sku}", START,
                      {"type": "item_registered", "sku": sku, "base_unit": "each",
                       "unit_cost": round(rng.uniform(0.05, 40), 2), "units": {"box": 10}})
        span = timedelta(days=365) / self.n
        i = 0
        while len(self.out) < self.n:
            i += 1
            at = START + span * len(self.out)
            site, loc = rng.choice(self.locations)
            sku = rng.choice(self.skus)
            sp = f"sp:{sku}@{loc}"
            lot = f"{sku}-L{at.month}"
            key = (sku, loc, lot)
            base = {"site": site, "location": loc, "sku": sku, "lot": lot, "unit": "each"}
            r = rng.random()
            if r < 0.08 or self.balance.get(key, 0) < 5:
                q = float(rng.choice((50, 100, 200)))
                po = f"PO-{i}"
                self.fact("PurchaseOrder.Issued", f"po:{po}", at - timedelta(days=rng.uniform(1, 6)),
                          {"type": "po_issued", "po_id": po, "supplier": "MEDSUP", "location": loc,
                           "site": site, "expected_at": iso(at - timedelta(hours=rng.uniform(-12, 36))),
                           "lines": [{"sku": sku, "quantity": q, "unit": "each"}]})
                self.fact("StockPoint.Recorded", sp, at,
                          dict(base, type="receipt", quantity=q, po_id=po, supplier="MEDSUP",
                               unit_price=round(rng.uniform(0.05, 40), 2),
                               expiry=(at + timedelta(days=rng.choice((20, 200, 400)))).date().isoformat()),
                          moves=[["add", lot, q]], effects=[[lot, q]], flags=[])
                self.balance[key] = self.balance.get(key, 0) + q
            elif r < 0.72:
                q = float(rng.randint(1, 4))
                event = dict(base, type="usage", quantity=q)
                if rng.random() < 0.2:
                    event["case_id"] = f"ps_{rng.getrandbits(64):016x}"
                self.fact("StockPoint.Recorded", sp, at, event, moves=[["add", lot, -q]],
                          effects=[[lot, -q]], flags=[])
                self.balance[key] = self.balance.get(key, 0) - q
            elif r < 0.74:
                q = 1.0
                self.fact("StockPoint.Recorded", sp, at, dict(base, type="waste", quantity=q, reason="expired"),
                          moves=[["add", lot, -q]], effects=[[lot, -q]], flags=[])
                self.balance[key] = self.balance.get(key, 0) - q
            elif r < 0.97:
                demand = rng.uniform(0.5, 12)
                stamp = iso(at)
                self.add(sp, "StockPoint.Decided", {
                    "timestamp": stamp, "prev_hash": "0" * 64, "hash": "1" * 64,
                    "decision": {"type": rng.choice(("safety_stock_changed", "reorder_point_changed")),
                                 "sku": sku, "location": loc, "decided_at": stamp,
                                 "cause_event_id": f"ev-{len(self.out) - 1}",
                                 "policy": {"safety_stock": demand * 1.5, "reorder_point": demand * 4,
                                            "order_up_to": demand * 11,
                                            "inputs": {"demand_mean_per_day": demand,
                                                       "demand_sd_per_day": demand / 3,
                                                       "lead_time_days": 3, "lead_time_sd_days": 0.6,
                                                       "service_level": 0.95,
                                                       "formula": "ltd_quantile_v1"}}}})
            elif r < 0.985:
                stamp = iso(at)
                self.add(sp, "StockPoint.AlertRaised", {
                    "timestamp": stamp, "prev_hash": "0" * 64, "hash": "1" * 64,
                    "alert": {"id": f"al_{i}", "kind": "stockout_risk", "severity": "warning",
                              "sku": sku, "location": loc, "site": site, "lot": None,
                              "raised_at": stamp, "status": "open", "event_id": None,
                              "message": f"{sku} at {loc} may run out"}})
            else:
                self.add(sp, "StockPoint.Refused", {
                    "timestamp": iso(at), "prev_hash": "0" * 64, "hash": "1" * 64,
                    "event": dict(base, event_id=f"bad-{i}", type="usage", quantity=1,
                                  occurred_at=iso(at)),
                    "errors": [{"field": "lot", "code": "expired_lot", "message": "expired"}],
                    "fingerprint": "0" * 32, "recorded_at": iso(at), "recorded_by": "bench"})
        return self.out[: self.n]


def copy_tables(client: Any, times: int, events: int) -> None:
    """Multiply the projection inside ClickHouse: copy k holds new stock points (location
    suffixed ``~k``), new orders and alerts, and notification ids shifted by k × events; the
    materialized views follow, and the summaries are recomputed afterwards."""
    renamed = {"location": "concat(location, '~{k}')", "notification_id": "notification_id + {s}",
               "alert_id": "concat(alert_id, '~{k}')", "po_id": "concat(po_id, '~{k}')",
               "stream_id": "concat(stream_id, '~{k}')"}
    for table in ("events_raw", "stock_moves", "decisions", "alerts", "po_lines", "locations"):
        columns = list(COLUMNS[table])
        for k in range(1, times):
            exprs = [renamed.get(c, c).format(k=k, s=k * events) for c in columns]
            client.command(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(exprs)} "
                           f"FROM {table} WHERE notification_id <= {events}")


def time_kpis(client: Any, repeat: int) -> dict[str, tuple[float, float]]:
    out = {}
    for name in sorted(queries.KPIS):
        queries.run(client, name, start="2025-01-06", end="2026-01-05")  # warm
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            queries.run(client, name, start="2025-01-06", end="2026-01-05")
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out[name] = (statistics.median(times), times[max(int(round(0.95 * len(times))) - 1, 0)])
    return out


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=200_000, help="rebuild batch size")
    ap.add_argument("--split", type=int, default=200_000, help="events timed stage by stage")
    ap.add_argument("--live-events", type=int, default=20_000)
    ap.add_argument("--live-batch", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--scale", type=int, default=1, help="also time the KPIs at this many times the events")
    ap.add_argument("--dsn", default=None, help="ClickHouse DSN (default: chDB in a temporary directory)")
    args = ap.parse_args()
    scratch = None if args.dsn else tempfile.mkdtemp(prefix="bench-projections-")
    dsn = args.dsn or f"chdb://{scratch}"
    print(load())

    t = time.perf_counter()
    log = Year(args.events).generate()
    print(f"generated {len(log):,} stored events in {time.perf_counter() - t:.1f} s")

    client = open_projections(dsn, "bench_projections")
    helper = connect(dsn, "bench_projections", create=False)
    report = rebuild(client, lambda start: log[start - 1:], json_state, batch_size=args.batch, helpers=[helper])
    print(f"rebuild: {report.events:,} events, {report.rows:,} rows in {report.seconds:.1f} s = "
          f"{report.events_per_second:,.0f} events/s, {report.rows_per_second:,.0f} rows/s "
          f"(batches of {args.batch:,}, KPI summaries included; {load()})")

    split = open_projections(dsn, "bench_split")
    part = log[: args.split]
    writer = Writer(split)
    t0 = time.perf_counter()
    tables = writer.stage(_columns(part, _raw_state))
    t1 = time.perf_counter()
    writer.write(tables)
    t2 = time.perf_counter()
    refreshed = summaries.refresh(split, part[-1].id, full=True)
    print(f"parts over {len(part):,} events, one connection: staging the states {len(part) / (t1 - t0):,.0f} "
          f"events/s, writing the tables from the stage {len(part) / (t2 - t1):,.0f} events/s, "
          f"the KPI summaries {refreshed:.2f} s")
    drop_database(split, "bench_split")

    live = open_projections(dsn, "bench_live")
    follower = Follower(live, batch_size=args.live_batch)
    chunk = log[: args.live_events]
    t = time.perf_counter()
    for i in range(0, len(chunk), args.live_batch):
        follower.follow(chunk[i:i + args.live_batch], json_state)
    seconds = time.perf_counter() - t
    rows = count_rows(live)
    print(f"live: {len(chunk):,} events followed {args.live_batch} at a time in {seconds:.1f} s = "
          f"{len(chunk) / seconds:,.0f} events/s, {rows / seconds:,.0f} rows/s "
          f"({seconds / (len(chunk) / args.live_batch) * 1000:.0f} ms a batch, summaries included)")
    drop_database(live, "bench_live")

    sizes = {t: client.query(f"SELECT count() FROM {t}").result_rows[0][0]
             for t in ("events_raw", "stock_moves", "decisions", "consumption_daily", "stock_daily",
                       "forecast_daily", "sp_days", "sp_weeks", "po_line_status", "receipts")}
    print("rows: " + ", ".join(f"{t} {n:,}" for t, n in sizes.items()))
    scales = [1] + ([args.scale] if args.scale > 1 else [])
    for scale in scales:
        if scale > 1:
            t = time.perf_counter()
            copy_tables(client, scale, args.events)
            copied = time.perf_counter() - t
            refreshed = summaries.refresh(client, scale * args.events, full=True)
            client.command("OPTIMIZE TABLE sp_weeks FINAL")
            print(f"\ncopied the tables to {scale} × {args.events:,} events in {copied:.1f} s; "
                  f"KPI summaries recomputed in {refreshed:.1f} s")
            sizes = {t: client.query(f"SELECT count() FROM {t}").result_rows[0][0] for t in sizes}
            print("rows: " + ", ".join(f"{t} {n:,}" for t, n in sizes.items()))
        print(f"KPI latency over {scale * args.events:,} events, {args.repeat} runs each (ms; {load()}):")
        print(f"  {'kpi':<20} {'p50':>8} {'p95':>8}")
        for name, (p50, p95) in time_kpis(client, args.repeat).items():
            print(f"  {name:<20} {p50:8.1f} {p95:8.1f}")
    drop_database(client, "bench_projections")
    helper.close()
    client.close()
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
