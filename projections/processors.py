"""Pure processors: one stored event in, the rows it adds to each ClickHouse table out.

The follower has the engine do this flattening (the views of migrations/0008_flatten.sql, far
faster on millions of events); these functions are the reference it is held to, in Python
(``tests/integration/test_projections_kpi_tables.py`` compares every table's rows), and the
place to read what a stored event becomes.

No I/O and no state: the rows depend only on the stored event (its notification id, stream,
kind and fields), so the same event always gives the same rows, a replay gives the rows the
live follower wrote, and re-inserting them is harmless (tables are keyed by notification id).
Every stored event gives one ``events_raw`` row; handlers registered with ``@on`` add the
rows of the tables that need its kind. A new kind of event needs one handler, or none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

Row = dict[str, Any]
Rows = dict[str, list[Row]]

# Column order of each table the processors fill (the DDL in migrations/ has the same).
COLUMNS: dict[str, tuple[str, ...]] = {
    "events_raw": (
        "notification_id", "stream_id", "stream_version", "kind", "type", "event_id",
        "occurred_at", "recorded_at", "site", "location", "sku", "lot", "side", "quantity",
        "unit", "supplier", "po_id", "case_id", "unit_price", "expiry", "refused",
        "error_codes", "flags", "recorded_by", "payload"),
    "stock_moves": (
        "notification_id", "effect_index", "event_id", "type", "side", "site", "location", "sku",
        "lot", "occurred_at", "delta"),
    "items": (
        "sku", "effective_from", "notification_id", "base_unit", "units", "pack_size",
        "criticality", "lead_time_days", "supplier", "unit_cost", "currency", "description"),
    "locations": (
        "location", "effective_from", "notification_id", "site", "name", "kind", "timezone",
        "restocked_from"),
    "lot_expiries": ("sku", "lot", "notification_id", "expiry", "source"),
    "decisions": (
        "notification_id", "decision_type", "site", "location", "sku", "decided_at",
        "cause_event_id", "demand_mean", "demand_spread", "lead_time_days", "lead_time_spread",
        "service_level", "safety_stock", "reorder_point", "order_up_to", "quantity", "old_value",
        "new_value", "formula", "decision"),
    "alerts": (
        "alert_id", "notification_id", "change", "kind", "severity", "site", "location", "sku",
        "lot", "at", "status", "event_id", "message", "supplier"),
    "po_lines": (
        "po_id", "line_index", "notification_id", "supplier", "site", "location", "sku",
        "quantity", "unit", "unit_price", "issued_at", "expected_at", "bill_only", "requisition_id"),
    "requisitions": (
        "requisition_id", "notification_id", "kind", "supplier", "site", "source", "opened_at"),
    "requisition_lines": (
        "requisition_id", "notification_id", "sku", "location", "supplier", "source", "reference",
        "need_quantity", "quantity", "unit_price", "value", "promised_lead_time_days", "criticality",
        "flags", "candidates", "eligible", "chosen_total", "decided_at", "cause_event_id"),
    "requisition_status": (
        "requisition_id", "notification_id", "change", "status", "principal", "role", "reason",
        "needs_buyer", "approvals_needed", "po_id", "at"),
    "supplier_scores": (
        "supplier", "notification_id", "scored_at", "score", "peak", "on_time_rate", "fill_rate",
        "batch_pass_rate", "accepted_share", "price_vs_contract", "recalls", "recall_response_days",
        "contract_breaches", "lead_time_mean_days", "lead_time_sd_days", "lead_time_receipts",
        "deliveries", "inspections", "review_open", "cause_event_id", "skus"),
}

_ENVELOPE = ("originator_id", "originator_version")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One entry of the event store's notification log, decoded: ``body`` holds the stored
    event's fields (``timestamp``, ``event``/``alert``/``decision``/``key``, ...).

    ``kind`` is ``Aggregate.Event`` from a topic such as ``domain.aggregates:StockPoint.Recorded``;
    ``fact`` is the record the event carries: the wire event, the alert, the decision or the key.
    """

    notification_id: int
    stream_id: str
    stream_version: int
    topic: str
    body: Mapping[str, Any]
    kind: str = field(init=False)
    fact: Mapping[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", self.topic.rpartition(":")[2])
        object.__setattr__(self, "fact", _fact_of(self.body))


def _fact_of(body: Mapping[str, Any]) -> Mapping[str, Any]:
    for name in ("event", "alert", "decision", "key"):
        value = body.get(name)
        if isinstance(value, dict):
            return value
    return {}


def stored_event(notification: Any, decoded: Any) -> StoredEvent:
    """A ``StoredEvent`` from a notification (``id``, ``originator_id``, ``originator_version``,
    ``topic``) and its decoded form: a domain event object or a plain dict of its fields."""
    body = decoded if isinstance(decoded, Mapping) else vars(decoded)
    if any(k in body for k in _ENVELOPE):
        body = {k: v for k, v in body.items() if k not in _ENVELOPE}
    return StoredEvent(int(notification.id), str(notification.originator_id),
                       int(notification.originator_version), str(notification.topic), body)


# -- value coercion: stored refusals keep what was sent, so nothing is assumed well-formed ----
def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if t.tzinfo is None:
        return None
    return t.astimezone(UTC)


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _recorded_at(event: StoredEvent) -> datetime:
    return _instant(event.body.get("timestamp")) or _EPOCH


def _snake(name: str) -> str:
    return "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name).lstrip("_")


def _sp_from_stream(stream_id: str) -> tuple[str, str]:
    """(sku, location) of a stock point stream id ``sp:<sku>@<location>``."""
    if stream_id.startswith("sp:") and "@" in stream_id:
        sku, _, location = stream_id[3:].rpartition("@")
        return sku, location
    return "", ""


def _scorecard_supplier(stream_id: str) -> str:
    """The supplier of a scorecard stream id ``scorecard:<supplier>``."""
    return stream_id[len("scorecard:"):] if stream_id.startswith("scorecard:") else ""


def _requisition_of(stream_id: str) -> str:
    """The requisition id of a requisition stream id ``req:<id>``."""
    return stream_id[len("req:"):] if stream_id.startswith("req:") else ""


def _truthy(value: Any) -> int:
    """1 for a JSON value Python holds true (``bool(value)``), else 0."""
    return 1 if value else 0


def _payload(body: Mapping[str, Any]) -> str:
    return orjson.dumps(body, default=str,
                        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def price_per_base_unit(record: Mapping[str, Any]) -> float | None:
    """``unit_price`` is per the unit the quantity was sent in; the stored quantity is in base
    units (``sent_quantity`` keeps what was sent), so the price per base unit is
    unit_price × sent_quantity / quantity."""
    price = _number(record.get("unit_price"))
    if price is None:
        return None
    sent, base = _number(record.get("sent_quantity")), _number(record.get("quantity"))
    if sent is not None and base:
        return price * sent / base
    return price


# -- the one row every event gives --------------------------------------------------------
def raw_row(event: StoredEvent) -> Row:
    body, fact = event.body, event.fact
    kind = event.kind
    etype = fact.get("type") if isinstance(fact.get("type"), str) else ""
    if not etype:
        etype = _snake(kind.rpartition(".")[2])
    occurred = (_instant(fact.get("occurred_at")) or _instant(fact.get("raised_at"))
                or _instant(fact.get("decided_at")) or _recorded_at(event))
    errors = body.get("errors")
    error_codes = [_text(e.get("code")) for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    flags = body.get("flags")
    sku, location = _text(fact.get("sku")), _text(fact.get("location"))
    if not (sku and location):
        sp_sku, sp_location = _sp_from_stream(event.stream_id)
        sku, location = sku or sp_sku, location or sp_location
    return {
        "notification_id": event.notification_id,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "kind": kind,
        "type": etype,
        "event_id": _text(fact.get("event_id")) or _text(body.get("event_id")),
        "occurred_at": occurred,
        "recorded_at": _recorded_at(event),
        "site": _text(fact.get("site")),
        "location": location,
        "sku": sku,
        "lot": _text(fact.get("lot")),
        "side": _text(fact.get("side")),
        "quantity": _number(fact.get("quantity")),
        "unit": _text(fact.get("unit")),
        "supplier": _text(fact.get("supplier")),
        "po_id": _text(fact.get("po_id")),
        "case_id": _text(fact.get("case_id")),
        "unit_price": price_per_base_unit(fact),
        "expiry": _date(fact.get("expiry")),
        "refused": 1 if kind.endswith(".Refused") else 0,
        "error_codes": error_codes,
        "flags": [_text(f) for f in flags] if isinstance(flags, list) else [],
        "recorded_by": _text(body.get("recorded_by")) or _text(body.get("by")),
        "payload": _payload(body),
    }


# -- handlers by kind -----------------------------------------------------------------------
Handler = Callable[[StoredEvent], Iterator[tuple[str, Row]]]
Matcher = Callable[[StoredEvent], bool]
_BY_KIND: dict[str, list[Handler]] = {}
_BY_MATCH: list[tuple[Matcher, Handler]] = []


def on(kind: str | None = None, *, match: Matcher | None = None) -> Callable[[Handler], Handler]:
    """Register a handler for stored events of ``kind`` (``StockPoint.Recorded``) or, for
    kinds not known by name, for those that ``match``."""
    if (kind is None) == (match is None):
        raise ValueError("give a kind or a matcher")

    def register(handler: Handler) -> Handler:
        if kind is not None:
            _BY_KIND.setdefault(kind, []).append(handler)
        else:
            assert match is not None
            _BY_MATCH.append((match, handler))
        return handler
    return register


@on("StockPoint.Recorded")
def _stock_moves(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    fact, effects = event.fact, event.body.get("effects") or []
    occurred = _instant(fact.get("occurred_at")) or _recorded_at(event)
    sku, location = _sp_from_stream(event.stream_id)
    for i, (lot, delta) in enumerate(effects):
        yield "stock_moves", {
            "notification_id": event.notification_id, "effect_index": i,
            "event_id": _text(fact.get("event_id")), "type": _text(fact.get("type")),
            "side": _text(fact.get("side")), "site": _text(fact.get("site")),
            "location": _text(fact.get("location")) or location, "sku": _text(fact.get("sku")) or sku,
            "lot": _text(lot), "occurred_at": occurred, "delta": float(delta),
        }


# A stock point's alerts, and the notices about a supplier on its scorecard (review needed,
# contract breach, purchase order issued: no sku, location or site, so those are '').
@on("StockPoint.AlertRaised")
@on("SupplierScorecard.AlertRaised")
def _alert_raised(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    a = event.fact
    yield "alerts", {
        "alert_id": _text(a.get("id")), "notification_id": event.notification_id,
        "change": "raised", "kind": _text(a.get("kind")), "severity": _text(a.get("severity")),
        "site": _text(a.get("site")), "location": _text(a.get("location")),
        "sku": _text(a.get("sku")), "lot": _text(a.get("lot")),
        "at": _instant(a.get("raised_at")) or _recorded_at(event),
        "status": _text(a.get("status")) or "open", "event_id": _text(a.get("event_id")),
        "message": _text(a.get("message")),
        "supplier": _text(a.get("supplier")) or _scorecard_supplier(event.stream_id),
    }


def _alert_change_row(event: StoredEvent, change: str, status: str, event_id: str, message: str) -> Row:
    """A row of ``alerts`` for a change of an alert raised before (its kind, lot and so on
    are on the raise's row)."""
    sku, location = _sp_from_stream(event.stream_id)
    return {"alert_id": _text(event.body.get("alert_id")), "notification_id": event.notification_id,
            "change": change, "kind": "", "severity": "", "site": "", "location": location, "sku": sku,
            "lot": "", "at": _recorded_at(event), "status": status, "event_id": event_id, "message": message,
            "supplier": _scorecard_supplier(event.stream_id)}


@on("StockPoint.AlertChanged")
@on("SupplierScorecard.AlertChanged")
def _alert_changed(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    status = _text(event.body.get("status"))
    yield "alerts", _alert_change_row(event, status or "changed", status, "", _text(event.body.get("reason")))


@on("StockPoint.AlertRepeated")
def _alert_repeated(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    yield "alerts", _alert_change_row(event, "repeated", "", _text(event.body.get("event_id")), "")


# Where a decision keeps each number, first match wins: the decision itself, its policy, the
# policy's inputs (``streams.planning``), or a flat ``inputs``.
_DECISION_NUMBERS = {
    "demand_mean": ("demand_mean_per_day", "demand_mean", "mean_daily_demand"),
    "demand_spread": ("demand_sd_per_day", "demand_spread", "demand_sd"),
    "lead_time_days": ("lead_time_days", "lead_time_mean"),
    "lead_time_spread": ("lead_time_sd_days", "lead_time_spread", "lead_time_sd"),
    "service_level": ("service_level",),
    "safety_stock": ("safety_stock",),
    "reorder_point": ("reorder_point",),
    "order_up_to": ("order_up_to",),
}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _decision_places(d: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    policy = _mapping(d.get("policy"))
    places = [d, policy]
    for holder in (policy, d):
        if isinstance(holder.get("inputs"), dict):
            places.append(holder["inputs"])
    return places


def _find(places: list[Mapping[str, Any]], names: tuple[str, ...]) -> Any:
    for place in places:
        for name in names:
            if place.get(name) is not None:
                return place[name]
    return None


@on(match=lambda e: "Decided" in e.kind)
def _decision(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    d = event.fact
    places = _decision_places(d)
    sku, location = _sp_from_stream(event.stream_id)
    row: Row = {
        "notification_id": event.notification_id,
        "decision_type": _text(d.get("type")),
        "site": _text(d.get("site")),
        "location": _text(d.get("location")) or location,
        "sku": _text(d.get("sku")) or sku,
        "decided_at": (_instant(d.get("as_of")) or _instant(d.get("decided_at"))
                       or _recorded_at(event)),
        "cause_event_id": _text(d.get("cause_event_id")),
        "quantity": _number(d.get("quantity")),
        "old_value": _number(d.get("old")),
        "new_value": _number(d.get("new")),
        "formula": _text(_find(places, ("formula",))),
        "decision": _payload(d),
    }
    for column, names in _DECISION_NUMBERS.items():
        row[column] = _number(_find(places, names))
    yield "decisions", row


@on("MasterRecord.Registered")
def _master(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    e = event.fact
    at = _instant(e.get("occurred_at")) or _recorded_at(event)
    if e.get("type") == "item_registered":
        units = _mapping(e.get("units"))
        yield "items", {
            "sku": _text(e.get("sku")), "effective_from": at,
            "notification_id": event.notification_id, "base_unit": _text(e.get("base_unit")),
            "units": {str(k): float(v) for k, v in units.items() if _number(v) is not None},
            "pack_size": _number(e.get("pack_size")) or 1.0,
            "criticality": _text(e.get("criticality")) or "normal",
            "lead_time_days": _number(e.get("lead_time_days")),
            "supplier": _text(e.get("supplier")), "unit_cost": _number(e.get("unit_cost")),
            "currency": _text(e.get("currency")), "description": _text(e.get("description")),
        }
    elif e.get("type") == "location_registered":
        yield "locations", {
            "location": _text(e.get("location")), "effective_from": at,
            "notification_id": event.notification_id, "site": _text(e.get("site")),
            "name": _text(e.get("name")) or _text(e.get("location")),
            "kind": _text(e.get("kind")) or "ward", "timezone": _text(e.get("timezone")) or "UTC",
            "restocked_from": _text(e.get("restocked_from")),
        }


def _lot_of(event: StoredEvent, record: Mapping[str, Any]) -> tuple[str, str]:
    sku, lot = _text(record.get("sku")), _text(record.get("lot"))
    if not (sku and lot) and event.stream_id.startswith("lot:"):
        sku, _, lot = event.stream_id[4:].partition("/")
    return sku, lot


@on("Lot.Opened")
@on("Lot.ExpiryLearned")
@on("Lot.Changed")
def _lot_expiry(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    body, fact = event.body, event.fact
    kind = event.kind
    if kind == "Lot.Opened":
        expiry, source = _date(fact.get("expiry")), "opened"
    elif kind == "Lot.ExpiryLearned":
        expiry, source = _date(body.get("expiry")), "learned"
    elif fact.get("change") == "expiry_corrected":
        expiry, source = _date(fact.get("new_expiry")), "corrected"
    else:
        return
    if expiry is None:
        return
    sku, lot = _lot_of(event, fact)
    yield "lot_expiries", {"sku": sku, "lot": lot, "notification_id": event.notification_id,
                           "expiry": expiry, "source": source}


@on(match=lambda e: e.fact.get("type") == "po_issued" and not e.kind.endswith("Refused"))
def _po_lines(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    e = event.fact
    issued = _instant(e.get("occurred_at")) or _recorded_at(event)
    lines: list[Any] = e["lines"] if isinstance(e.get("lines"), list) else []
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            continue
        yield "po_lines", {
            "po_id": _text(e.get("po_id")), "line_index": i,
            "notification_id": event.notification_id, "supplier": _text(e.get("supplier")),
            "site": _text(e.get("site")), "location": _text(line.get("location")) or _text(e.get("location")),
            "sku": _text(line.get("sku")), "quantity": _number(line.get("quantity")) or 0.0,
            "unit": _text(line.get("unit")), "unit_price": price_per_base_unit(line),
            "issued_at": issued, "expected_at": _instant(line.get("expected_at")) or _instant(e.get("expected_at")),
            "bill_only": _truthy(e.get("bill_only")), "requisition_id": _text(e.get("requisition_id")),
        }


# -- procurement: requisitions (streams req:<id>) and supplier scorecards -------------------
@on("Requisition.Opened")
def _requisition_opened(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    key, at = event.fact, _recorded_at(event)
    rid = _requisition_of(event.stream_id)
    yield "requisitions", {
        "requisition_id": rid, "notification_id": event.notification_id,
        "kind": _text(key.get("kind")), "supplier": _text(key.get("supplier")),
        "site": _text(key.get("site")), "source": _text(key.get("source")), "opened_at": at,
    }
    yield "requisition_status", _requisition_status(event, "opened", "collecting")


def _chosen(line: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The candidate the line was bought from: eligible, with the line's supplier, source and
    reference."""
    for c in candidates:
        if (c.get("excluded") is None and _text(c.get("supplier")) == _text(line.get("supplier"))
                and _text(c.get("source")) == _text(line.get("source"))
                and _text(c.get("reference")) == _text(line.get("reference"))):
            return c
    return None


@on("Requisition.LineAdded")
def _requisition_line(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    line = _mapping(event.body.get("line"))
    found = line.get("candidates")
    candidates = [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []
    chosen = _chosen(line, candidates)
    flags = line.get("flags")
    yield "requisition_lines", {
        "requisition_id": _requisition_of(event.stream_id), "notification_id": event.notification_id,
        "sku": _text(line.get("sku")), "location": _text(line.get("location")),
        "supplier": _text(line.get("supplier")), "source": _text(line.get("source")),
        "reference": _text(line.get("reference")), "need_quantity": _number(line.get("need_quantity")),
        "quantity": _number(line.get("quantity")) or 0.0, "unit_price": _number(line.get("unit_price")),
        "value": _number(line.get("value")) or 0.0,
        "promised_lead_time_days": _number(line.get("promised_lead_time_days")),
        "criticality": _text(line.get("criticality")),
        "flags": [_text(f) for f in flags] if isinstance(flags, list) else [],
        "candidates": len(candidates), "eligible": sum(c.get("excluded") is None for c in candidates),
        "chosen_total": _number(chosen.get("total")) if chosen is not None else None,
        "decided_at": _instant(line.get("decided_at")) or _recorded_at(event),
        "cause_event_id": _text(line.get("cause_event_id")),
    }


# The status a requisition has after each change (Submitted and Approved say theirs).
_REQUISITION_STATUS = {"Rejected": "rejected", "Ordered": "ordered", "Fulfilled": "fulfilled"}


def _requisition_status(event: StoredEvent, change: str, status: str) -> Row:
    body = event.body
    needs = body.get("needs_buyer")
    return {
        "requisition_id": _requisition_of(event.stream_id), "notification_id": event.notification_id,
        "change": change, "status": status, "principal": _text(body.get("by")),
        "role": _text(body.get("role")), "reason": _text(body.get("reason")),
        "needs_buyer": [_text(n) for n in needs] if isinstance(needs, list) else [],
        "approvals_needed": int(_number(body.get("approvals_needed")) or 0),
        "po_id": _text(body.get("po_id")), "at": _recorded_at(event),
    }


@on("Requisition.Submitted")
@on("Requisition.Approved")
@on("Requisition.Rejected")
@on("Requisition.Ordered")
@on("Requisition.Fulfilled")
def _requisition_changed(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    name = event.kind.rpartition(".")[2]
    status = _REQUISITION_STATUS.get(name) or _text(event.body.get("status"))
    yield "requisition_status", _requisition_status(event, _snake(name), status)


_CARD_NUMBERS = ("score", "peak", "on_time_rate", "fill_rate", "batch_pass_rate", "accepted_share",
                 "price_vs_contract", "recalls", "recall_response_days", "lead_time_mean_days",
                 "lead_time_sd_days", "deliveries", "inspections")


@on("SupplierScorecard.Scored")
def _supplier_score(event: StoredEvent) -> Iterator[tuple[str, Row]]:
    card = _mapping(event.body.get("card"))
    skus = card.get("skus") if isinstance(card.get("skus"), list) else []
    row: Row = {
        "supplier": _text(card.get("supplier")) or _scorecard_supplier(event.stream_id),
        "notification_id": event.notification_id,
        "scored_at": _instant(card.get("scored_at")) or _recorded_at(event),
        "contract_breaches": int(_number(card.get("contract_breaches")) or 0),
        "lead_time_receipts": int(_number(card.get("lead_time_receipts")) or 0),
        "review_open": _truthy(card.get("review_open")),
        "cause_event_id": _text(card.get("cause_event_id")),
        "skus": sorted(str(k) for k in skus),
    }
    for name in _CARD_NUMBERS:
        row[name] = _number(card.get(name))
    yield "supplier_scores", row


# -- entry points -----------------------------------------------------------------------------
def process(event: StoredEvent) -> Rows:
    """The rows one stored event adds, by table."""
    rows: Rows = {"events_raw": [raw_row(event)]}
    handlers = _BY_KIND.get(event.kind, [])
    handlers = handlers + [h for matches, h in _BY_MATCH if matches(event)] if _BY_MATCH else handlers
    for handler in handlers:
        for table, row in handler(event):
            rows.setdefault(table, []).append(row)
    return rows


def process_batch(events: Iterable[StoredEvent]) -> Rows:
    """The rows of several stored events, by table, in notification order."""
    out: Rows = {}
    for event in events:
        for table, rows in process(event).items():
            out.setdefault(table, []).extend(rows)
    return out
