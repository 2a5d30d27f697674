"""The read side of lots, recalls, expiry and audit: traces, recall progress, expiry per
location, any stream's history and state as of an instant, and the export of a period.

Each function reads a processor's in-memory model (its indexes say where to look) and the
store (the stored events themselves); run them on the processor's thread.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import orjson

from domain.aggregates import ChainedAggregate, PurchaseOrder, Recall, StockPoint, stock_point_id
from domain.events import iso_utc, parse_instant
from domain.inventory import balance_history
from domain.trace import TRACE_COLUMNS, csv_cell, trace_row
from streams.processor import Processor
from streams.store import EventStore


def _read(store: EventStore, refs: list[tuple[str, int]]) -> list[Any]:
    """The stored events at ``refs`` (stream, version), in the order given: one read per run
    of versions of a stream, not a scan of the store."""
    by_stream: dict[str, list[int]] = {}
    for stream, version in refs:
        by_stream.setdefault(stream, []).append(version)
    to_domain = store.mapper.to_domain_event
    found: dict[tuple[str, int], Any] = {}
    for stream, versions in by_stream.items():
        versions = sorted(set(versions))
        start = 0
        while start < len(versions):  # runs of consecutive versions
            end = start
            while end + 1 < len(versions) and versions[end + 1] == versions[end] + 1:
                end += 1
            for stored in store.recorder.select_events(stream, gt=versions[start] - 1, lte=versions[end]):
                event = to_domain(stored)
                found[(stream, event.originator_version)] = event
            start = end + 1
    return [found[r] for r in refs if r in found]


def trace(p: Processor, sku: str, lot: str | None = None, serial: str | None = None) -> dict[str, Any] | None:
    """The whole life of a lot (or serial) of ``sku``: every stored event about it, in
    recording order, with a summary (suppliers and purchase orders it came on, where it is,
    the cases that used it, the scans refused, recalls); None when nothing is known of it."""
    ledger = p.ledger
    refs = ledger.trace.refs(sku, lot, serial)
    if not refs:
        return None
    rows = [trace_row(e, sku, lot, serial) for e in _read(p.store, refs)]
    if serial:
        unit = ledger.trace.serials.get((sku, serial))
        lot = lot or (unit or {}).get("lot")
    received, refused, quarantined = [], [], []
    cases: dict[str, list[str]] = {}
    for r in rows:
        if r["what"] == "receipt":
            supplier = r.get("supplier")
            po = ledger.streams.get(f"po:{r['po_id']}") if r.get("po_id") else None
            if supplier is None and isinstance(po, PurchaseOrder):
                supplier = po.supplier
            received.append({"location": r.get("location"), "quantity": r.get("quantity"),
                             "supplier": supplier, "po_id": r.get("po_id"),
                             "occurred_at": r.get("occurred_at"), "event_id": r.get("event_id")})
        elif r["what"] == "usage" and r.get("case_id"):
            cases.setdefault(r["case_id"], []).append(str(r.get("event_id")))
        elif r["what"] == "refused":
            refused.append({"location": r.get("location"), "event_id": r.get("event_id"),
                            "occurred_at": r.get("occurred_at"), "codes": r.get("codes")})
        elif r["what"] == "quarantined":
            quarantined.append({"location": r.get("location"), "reference": r.get("reference"),
                                "quantity": r.get("quantity")})
    now = p.clock()
    on_hand = {}
    if lot:
        for sp_id in sorted(ledger.trace.points.get((sku, lot), ())):
            sp = ledger.streams.get(sp_id)
            if isinstance(sp, StockPoint) and sp.lots.get(lot, 0.0) != 0:
                loc = ledger.catalog.location(sp.location, now)
                on_hand[sp.location] = {"quantity": sp.lots[lot], "status": ledger.lot_status(
                    sku, lot, now, loc.timezone if loc else "UTC")}
    lot_agg = ledger.lot(sku, lot) if lot else None
    recalls = sorted({r["reference"] for r in rows if r["what"].startswith("recall_") and r.get("reference")})
    return {"sku": sku, "lot": lot, "serial": serial,
            "expiry": lot_agg.expiry if lot_agg else None,
            "on_hold": bool(lot_agg and lot_agg.on_hold),
            "relabelled_to": lot_agg.relabelled_to if lot_agg else None,
            "relabelled_from": ledger.trace.relabelled_from.get((sku, lot)) if lot else None,
            "unit": ledger.trace.serials.get((sku, serial)) if serial else None,
            "summary": {"received": received, "cases": sorted(cases), "case_usages": cases,
                        "refused_scans": refused, "quarantined": quarantined,
                        "recalls": recalls, "on_hand": on_hand},
            "events": rows}


def traced_units(p: Processor, sku: str) -> dict[str, Any] | None:
    """The lots and serials of ``sku`` that something is recorded of (what ``trace`` can be
    asked about); None when there are none."""
    index = p.ledger.trace
    lots = sorted({str(lot) for s, lot in index.lot_events if s == sku})
    serials = sorted({str(serial) for s, serial in index.serial_events if s == sku})
    if not lots and not serials:
        return None
    return {"sku": sku, "lots": lots, "serials": serials}


def trace_csv(result: dict[str, Any]) -> str:
    """A trace's events as CSV (``TRACE_COLUMNS``), one row per stored event."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TRACE_COLUMNS)
    for r in result["events"]:
        writer.writerow([csv_cell(r.get("lot", result["lot"]) if col == "lot" else r.get(col))
                         for col in TRACE_COLUMNS])
    return out.getvalue()


def recall_view(p: Processor, recall: Recall) -> dict[str, Any]:
    """A recall and its progress: per location what was quarantined and what was confirmed
    (returned, destroyed, not found), and the cases that already used its lots."""
    ledger = p.ledger
    sku = recall.sku or ""
    tasks: dict[str, dict[str, Any]] = {}
    for lot in recall.lots:
        for sp_id in sorted(ledger.trace.points.get((sku, lot), ())):
            sp = ledger.streams.get(sp_id)
            if isinstance(sp, StockPoint) and recall.reference in sp.quarantines:
                tasks.setdefault(sp.location, {"location": sp.location, "site": sp.site,
                                               "quarantined": dict(sp.quarantines[recall.reference])})
    for (s, serial), unit in ledger.trace.serials.items():
        if s == sku and serial in recall.serials:
            sp = ledger.stock_point(sku, unit["location"])
            if sp is not None and recall.reference in sp.quarantines:
                tasks.setdefault(sp.location, {"location": sp.location, "site": sp.site,
                                               "quarantined": dict(sp.quarantines[recall.reference])})
    for location in recall.confirmed:
        tasks.setdefault(location, {"location": location, "quarantined": {}})
    for location, task in tasks.items():
        done = recall.confirmed.get(location, {})
        quarantined = sum(task["quarantined"].values())
        accounted = sum(done.values())
        task.update(quarantined_total=quarantined,
                    returned=done.get("returned", 0.0), destroyed=done.get("destroyed", 0.0),
                    not_found=done.get("not_found", 0.0),
                    status="confirmed" if location in recall.confirmed and accounted >= quarantined else "open")
    cases: dict[str, list[str]] = {}
    for lot in recall.lots:
        for case, uses in ledger.trace.cases.get((sku, lot), {}).items():
            cases.setdefault(case, []).extend(uses)
    for serial in recall.serials:
        used = ledger.trace.serials.get((sku, serial))
        if used and used.get("case_id"):
            cases.setdefault(used["case_id"], []).append(used["event_id"])
    done_n = sum(1 for t in tasks.values() if t["status"] == "confirmed")
    return {"reference": recall.reference, "sku": recall.sku, "lots": recall.lots,
            "serials": recall.serials, "recall_class": recall.recall_class,
            "status": "open" if recall.is_open else "closed", "issued_at": recall.issued_at,
            "closed_at": recall.closed_at,
            "progress": {"locations": len(tasks), "confirmed": done_n,
                         "quarantined": sum(t["quarantined_total"] for t in tasks.values()),
                         "accounted_for": sum(t["returned"] + t["destroyed"] + t["not_found"]
                                              for t in tasks.values())},
            "tasks": [tasks[k] for k in sorted(tasks)],
            "cases": sorted(cases), "case_usages": {k: cases[k] for k in sorted(cases)}}


def recalls(p: Processor, status: str | None = "open") -> list[dict[str, Any]]:
    out = []
    for agg in p.ledger.streams.values():
        if isinstance(agg, Recall) and agg.sku is not None and (
                status in (None, "all") or (status == "open") == agg.is_open):
            out.append(recall_view(p, agg))
    return sorted(out, key=lambda r: (r["issued_at"] or "", r["reference"]))


def expiry_report(p: Processor, location: str | None = None, sku: str | None = None) -> dict[str, Any]:
    """The last daily expiry check's findings, per location, with their value at cost."""
    locations: dict[str, dict[str, Any]] = {}
    for agg in p.ledger.streams.values():
        if not isinstance(agg, StockPoint) or not agg.expiry:
            continue
        if (location and agg.location != location) or (sku and agg.sku != sku):
            continue
        found: dict[str, Any] = agg.expiry or {}
        if not found.get("expired_on_shelf") and not found.get("expiry_risk"):
            continue
        loc = locations.setdefault(agg.location, {"location": agg.location, "site": agg.site,
                                                  "value_at_cost": {"expired_on_shelf": 0.0,
                                                                    "expiry_risk": 0.0},
                                                  "stock_points": []})
        for k in ("expired_on_shelf", "expiry_risk"):
            loc["value_at_cost"][k] += (found.get("value_at_cost") or {}).get(k) or 0.0
        loc["stock_points"].append({"sku": agg.sku, "checked_on": found.get("day"),
                                    "demand_per_day": found.get("demand_per_day"),
                                    "expired_on_shelf": found["expired_on_shelf"],
                                    "expiry_risk": found["expiry_risk"],
                                    "value_at_cost": found.get("value_at_cost")})
    for loc in locations.values():
        loc["stock_points"].sort(key=lambda r: r["sku"])
        loc["value_at_cost"] = {k: round(v, 2) for k, v in loc["value_at_cost"].items()}
    return {"locations": [locations[k] for k in sorted(locations)]}


# -- audit ------------------------------------------------------------------------------
_ENVELOPE = ("originator_id", "originator_version", "timestamp", "prev_hash", "hash")


def _occurred(e: Any) -> str | None:
    body = getattr(e, "event", None)
    if isinstance(body, dict):
        instant = parse_instant(body.get("occurred_at"))
        return iso_utc(instant if instant is not None else e.timestamp)
    decision = getattr(e, "decision", None)
    if isinstance(decision, dict) and decision.get("decided_at"):
        return str(decision["decided_at"])
    alert = getattr(e, "alert", None)
    if isinstance(alert, dict) and alert.get("raised_at"):
        return str(alert["raised_at"])
    return iso_utc(e.timestamp)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list | tuple) or type(value).__name__ == "deque":
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def audit_stream(p: Processor, stream_id: str, as_of: datetime | None = None,
                 known_at: datetime | None = None) -> dict[str, Any] | None:
    """Any stream's stored events with their hashes, and the aggregate's state folded from
    the events that had been recorded by ``known_at`` and had happened by ``as_of`` (an
    instant of ``occurred_at``; decisions and alerts at the instant they were made). A stock
    point's state is its balances by lot (``Processor.audit_stock_point``)."""
    events = p.store.stream(stream_id)
    if not events:
        return None
    if stream_id.startswith("sp:") and "@" in stream_id:
        sku, _, location = stream_id[3:].partition("@")
        result = p.audit_stock_point(sku, location, as_of, known_at)
        if result is not None:
            result["stream"] = stream_id
        return result
    as_of_s = iso_utc(as_of) if as_of else None
    history, agg = [], None
    for e in events:
        if known_at is not None and e.timestamp > known_at:
            break
        if agg is None:  # the stream's opening event: always part of the state
            agg = e.mutate(None)
        elif as_of_s is not None and (_occurred(e) or "") > as_of_s:
            continue
        else:
            e.apply(agg)
        row = {"version": e.originator_version, "kind": type(e).__name__,
               "recorded_at": e.timestamp.isoformat(), "hash": e.hash, "prev_hash": e.prev_hash}
        row.update({k: _plain(v) for k, v in vars(e).items() if k not in _ENVELOPE})
        history.append(row)
    state = None
    if isinstance(agg, ChainedAggregate):
        state = {k: _plain(v) for k, v in vars(agg).items()
                 if not k.startswith("_") and k not in ("pending_events", "last_hash")}
    return {"stream": stream_id, "as_of": as_of.isoformat() if as_of else None,
            "known_at": known_at.isoformat() if known_at else None,
            "state": state, "events": history}


def export_lines(store: EventStore, start: datetime | None = None,
                 end: datetime | None = None) -> Iterator[bytes]:
    """The stored events recorded in [start, end), in recording order, one JSON object a
    line: ``notification_id``, ``stream``, ``version``, ``topic`` and ``state`` (the stored
    JSON object, with its ``hash`` and ``prev_hash``). See README, "Hashing rule"."""
    for _, line in _export_rows(store, start, end):
        yield line


def _export_rows(store: EventStore, start: datetime | None, end: datetime | None) -> Iterator[tuple[int, bytes]]:
    for n in store.notifications():
        state = orjson.loads(n.state)
        if start is not None or end is not None:
            at = datetime.fromisoformat(state["timestamp"])
            if (start is not None and at < start) or (end is not None and at >= end):
                continue
        yield n.id, orjson.dumps({"notification_id": n.id, "stream": n.originator_id,
                                  "version": n.originator_version, "topic": n.topic,
                                  "state": state}) + b"\n"


def export(store: EventStore, out: IO[bytes], start: datetime | None = None,
           end: datetime | None = None, ids: list[int] | None = None) -> int:
    """Write ``export_lines`` to ``out``; how many. ``ids`` (when given) gets each written
    line's notification id (for the sidecar's proofs)."""
    n = 0
    for nid, line in _export_rows(store, start, end):
        out.write(line)
        n += 1
        if ids is not None:
            ids.append(nid)
    return n


def stock_point_series(p: Processor, sku: str, location: str, since: datetime | None = None
                       ) -> dict[str, list[tuple[str, float | None]]] | None:
    """A stock point's history over time, for a chart: ``on_hand``, the balance of every lot
    (quarantined ones included) after each stock fact (by ``occurred_at``, folded as
    ``audit_stock_point`` folds them),
    and from each policy decision (at its ``decided_at``) the ``reorder_point``,
    ``safety_stock``, ``order_up_to`` and ``forecast`` (demand per day) it set, and
    ``on_order`` where the decision recorded it. Each series is (UTC ISO instant, value), in
    time order, from ``since`` on (the value in force at ``since`` first); None for a stock
    point with no stored events."""
    events = p.store.stream(stock_point_id(sku, location))
    if not events:
        return None
    facts: list[tuple[str, Any]] = []
    plan: dict[str, list[tuple[str, float | None]]] = {
        "reorder_point": [], "safety_stock": [], "order_up_to": [], "forecast": [], "on_order": []}
    for e in events:
        if isinstance(e, StockPoint.Recorded):
            facts.append((e.event["occurred_at"], e.moves))  # (as audit_stock_point folds them)
        elif isinstance(e, StockPoint.Decided):
            d = e.decision
            at = d.get("decided_at")
            policy = d.get("policy") or {}
            if not at or d["type"] in ("expiry_checked", "quarantined"):
                continue
            if policy:
                inputs = policy.get("inputs") or {}
                plan["reorder_point"].append((at, policy.get("reorder_point")))
                plan["safety_stock"].append((at, policy.get("safety_stock")))
                plan["order_up_to"].append((at, policy.get("order_up_to")))
                plan["forecast"].append((at, inputs.get("demand_mean_per_day")))
            if d.get("on_order") is not None:
                plan["on_order"].append((at, float(d["on_order"])))
    on_hand: list[tuple[str, float | None]] = list(balance_history(facts))
    # (stable by time: decisions of one batch share their instant and keep their recorded order)
    out = {"on_hand": on_hand} | {k: sorted(v, key=lambda pt: pt[0]) for k, v in plan.items()}
    if since is not None:
        cut = iso_utc(since)
        out = {k: _from(v, cut) for k, v in out.items()}
    return out


def _from(series: list[tuple[str, float | None]], cut: str) -> list[tuple[str, float | None]]:
    """The points at or after ``cut``, led by the value in force at ``cut`` (a step series)."""
    before = [pt for pt in series if pt[0] < cut]
    after = [pt for pt in series if pt[0] >= cut]
    return ([(cut, before[-1][1])] if before else []) + after


def stock_points(p: Processor, sku: str | None = None, location: str | None = None) -> list[dict[str, Any]]:
    """Every stock point (``sku``, ``location``: a part of either, any case), with its balance,
    reorder point, whether it waits for replenishment and its open alerts; those with open
    alerts first, then by SKU and location."""
    rows = []
    sku_q, loc_q = (sku or "").lower(), (location or "").lower()
    for agg in p.ledger.streams.values():
        if not isinstance(agg, StockPoint):
            continue
        if sku_q not in agg.sku.lower() or loc_q not in agg.location.lower():
            continue
        rows.append({"sku": agg.sku, "location": agg.location, "site": agg.site,
                     "balance": sum(agg.lots.values()), "reorder_point": agg.reorder_point,
                     "replenishment_needed": agg.need_open, "open_alerts": len(agg.open_alerts),
                     "last_event_at": agg.latest_occurred_at})
    return sorted(rows, key=lambda r: (-r["open_alerts"], r["sku"], r["location"]))
