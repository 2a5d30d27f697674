"""What happens to one event: refused with reasons, accepted (perhaps flagged), or a
duplicate; and the stored events that say so.

``Ledger`` is the in-memory write model: the aggregates and the indexes over them (catalog,
open recalls, the event ids seen, alerts). It changes only by applying stored events, live or
replayed, so rebuilding it from the store gives the same state. ``Intake`` decides, in
recording order, one event at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain import codes as c
from domain.aggregates import (
    ChainedAggregate,
    Lot,
    MasterRecord,
    PurchaseOrder,
    Recall,
    ReferenceWait,
    RefusalLog,
    Requisition,
    StockPoint,
    SupplierScorecard,
    SupplyTerms,
    SurgicalCase,
    lot_id,
    stock_point_id,
)
from domain.catalog import Catalog, Item, Location, Supplier, divisible_by_default
from domain.epc import place_key
from domain.events import (
    EVENT_TYPES,
    LOT,
    MASTER,
    MAX_EVENT_AGE,
    MAX_QUANTITY,
    PLAN,
    PURCHASE,
    RECALL,
    SCHEDULE,
    STOCK,
    SUPPLY,
    FieldError,
    check_envelope,
    check_identifiers,
    fingerprint,
    is_blank,
    is_whole,
    iso_utc,
    parse_date,
    pseudonymise_event,
    redact_identifiers,
)
from domain.expiry import is_expired
from domain.inventory import Moves, fold_balances
from domain.trace import TraceIndex

REFUSALS_STREAM = "refusals"
SYSTEM_EVENT_ID_PREFIX = "sys:"  # the event ids of the system's own events (procurement's orders)
SYSTEM_PO_FIELDS = ("bill_only", "requisition_id", "usage_event_id")
REQUISITION_EVENTS = (Requisition.LineAdded, Requisition.Submitted, Requisition.Approved,
                      Requisition.Rejected, Requisition.Ordered, Requisition.Fulfilled)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


@dataclass
class Outcome:
    event_id: str | None
    status: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "status": self.status, "errors": self.errors,
                "flags": self.flags}


@dataclass(frozen=True)
class Prior:
    """The first outcome of an event id, kept so that a re-send gets it again."""

    fingerprint: str
    status: str
    errors: list[dict[str, Any]]
    flags: list[str]

    def replayed(self, event_id: str) -> Outcome:
        status = c.DUPLICATE if self.status == c.ACCEPTED else self.status
        return Outcome(event_id, status, list(self.errors), list(self.flags))


@dataclass
class Screened:
    """An event through the checks that need no stock point (``Intake.screen``): what a
    refusal of it stores (``payload``: the event as received, or pseudonymised and with bad
    identifiers redacted) and its fingerprint; then either the normalised ``event``, or the
    ``errors`` that refuse it, or the ``prior`` outcome of the same event sent before."""

    payload: Any
    fp: str
    event: dict[str, Any] | None = None
    errors: list[FieldError] = field(default_factory=list)
    prior: Prior | None = None


@dataclass
class TransactionCheck:
    """What ``Intake.precheck`` has seen of one all-or-nothing submission so far: event ids
    with their fingerprints, and the cases it schedules (a case scheduled and cancelled in one
    transaction is one the cancel may name)."""

    ids: dict[str, str] = field(default_factory=dict)
    cases: set[str] = field(default_factory=set)


@dataclass
class StockCheck:
    """The read-only part of judging a stock fact: the item, the locations, the unit's factor,
    and the errors that refuse it."""

    item: Item | None
    level: str | None
    here: Location | None
    src: Location | None
    dst: Location | None
    factor: float | None
    errors: list[FieldError]


def item_from_event(e: dict[str, Any]) -> Item:
    known = {"sku", "gtin", "gtins", "description", "base_unit", "units", "pack_size",
             "criticality", "lead_time_days", "supplier", "unit_cost", "currency", "divisible"}
    return Item(
        sku=e["sku"], gtin=e.get("gtin"), gtins=dict(e.get("gtins") or {}),
        description=e.get("description") or "", base_unit=e["base_unit"],
        units={k: float(v) for k, v in (e.get("units") or {}).items()},
        pack_size=float(e.get("pack_size") or 1), criticality=e.get("criticality") or "normal",
        lead_time_days=e.get("lead_time_days"), supplier=e.get("supplier"),
        unit_cost=e.get("unit_cost"), currency=e.get("currency"),
        extra={k: v for k, v in e.items() if k not in known},
        divisible=bool(e["divisible"]) if e.get("divisible") is not None
        else divisible_by_default(e["base_unit"]),
    )


def location_from_event(e: dict[str, Any]) -> Location:
    return Location(location=e["location"], site=e["site"], name=e.get("name") or e["location"],
                    kind=e.get("kind") or "ward", timezone=e.get("timezone") or "UTC",
                    restocked_from=e.get("restocked_from"),
                    gln=place_key(e["gln"]) if e.get("gln") is not None else None)


def supplier_from_event(e: dict[str, Any]) -> Supplier:
    envelope = {"event_id", "type", "occurred_at", "supplier", "name"}
    return Supplier(supplier=e["supplier"], name=e.get("name") or e["supplier"],
                    extra={k: v for k, v in e.items() if k not in envelope})


class Ledger:
    """The write model: aggregates by id, and indexes kept by ``index`` from their events."""

    def __init__(self) -> None:
        self.streams: dict[str, ChainedAggregate] = {}
        self.catalog = Catalog()
        self.seen: dict[str, Prior] = {}
        self.recalled_lots: dict[tuple[str, str], set[str]] = {}
        self.recalled_serials: dict[tuple[str, str], set[str]] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.open_alert_keys: dict[tuple[str, str, str], str] = {}
        self.alert_feed: list[dict[str, Any]] = []
        # (sku, location) -> quantity on order: on open purchase orders, and on requisitions and
        # transfer requests not yet ordered or delivered; po_id -> (sku, location) -> still to receive
        self.on_order: dict[tuple[str, str], float] = {}
        self.po_open: dict[str, dict[tuple[str, str], float]] = {}
        self.po_at: dict[tuple[str, str], set[str]] = {}  # (sku, location) -> ids of POs with lines open there
        self.po_received: dict[str, dict[tuple[str, str], float]] = {}  # po_id -> (sku, location) -> received
        # requisition id -> (sku, location) -> quantity counted on order until it is ordered
        self.req_open: dict[str, dict[tuple[str, str], float]] = {}
        # (sku, location) -> [[transfer request id, quantity still to arrive], ...], oldest first
        self.transfers_due: dict[tuple[str, str], list[list[Any]]] = {}
        # (supplier, site, kind) -> the requisition collecting lines now (its ordering window open)
        self.collecting: dict[tuple[str, str, str], str] = {}
        # sku -> supplier -> the supplier's terms for it (contracts, quotes)
        self.terms: dict[str, dict[str, SupplyTerms]] = {}
        # location -> case id -> (procedure, scheduled_for) of cases still to happen
        self.scheduled: dict[str, dict[str, tuple[str, str]]] = {}
        # lot and serial -> their stored events, holders, cases (``domain.trace``)
        self.trace = TraceIndex()

    # -- rebuilding -------------------------------------------------------------------
    def replay(self, event: Any) -> None:
        """Apply one stored event, as when rebuilding from the store."""
        agg = event.mutate(self.streams.get(event.originator_id))
        self.streams[event.originator_id] = agg
        self.index(event)

    def index(self, event: Any) -> None:
        """Keep the indexes in step with one event (the same code live and on replay)."""
        self.trace.note(event, self.streams.get(event.originator_id))
        if isinstance(event, StockPoint.Recorded):
            # An implied transfer is a side effect at another stock point: its flags are not in
            # the event's outcome, so they are not in what a re-send gets either.
            if event.event.get("type") != "implied_transfer":
                self._seen(event.event["event_id"], event.fingerprint, c.ACCEPTED, [], event.flags)
            e = event.event
            for flag in event.flags:  # a flag whose data_quality alert is open: counted on it
                open_id = self.open_alert_keys.get((event.originator_id, c.ALERT_DATA_QUALITY, flag))
                if open_id is not None:
                    self._repeated(open_id, event.timestamp, e.get("event_id"))
            if e["type"] == "receipt" and e.get("po_id") in self.po_open:
                remaining = self.po_open[e["po_id"]]
                key = (e["sku"], e["location"])
                got = min(e["quantity"], remaining.get(key, 0.0))
                if got > 0:
                    remaining[key] -= got
                    received = self.po_received.setdefault(e["po_id"], {})
                    received[key] = received.get(key, 0.0) + got
                    self.on_order[key] = self.on_order.get(key, 0.0) - got
                    if remaining[key] <= 1e-9:
                        self.po_at.get(key, set()).discard(e["po_id"])
            elif e["type"] == "receipt" and e.get("po_id") and e["po_id"] not in self.po_open:
                # Received before its order is known (another topic, another partition): kept,
                # so that the order, once issued, counts only what is still to come.
                received = self.po_received.setdefault(e["po_id"], {})
                key = (e["sku"], e["location"])
                received[key] = received.get(key, 0.0) + e["quantity"]
            elif e["type"] == "transfer" and e.get("side") == "in":
                self._transfer_arrived((e["sku"], e["location"]), e["quantity"])
        elif isinstance(event, PurchaseOrder.Issued):
            self._seen(event.event["event_id"], event.fingerprint, c.ACCEPTED, [], [])
            e = event.event
            if not e.get("bill_only"):  # a bill-only line pays for consigned stock already used
                # A re-issued order replaces the lines; what was received of them stays received.
                open_lines = self.po_open.setdefault(e["po_id"], {})
                received = self.po_received.get(e["po_id"], {})
                before = dict(open_lines)
                open_lines.clear()
                for line in e["lines"]:
                    key = (line["sku"], line.get("location") or e["location"])
                    open_lines[key] = open_lines.get(key, 0.0) + line["quantity"]
                for key in open_lines:
                    open_lines[key] = max(open_lines[key] - received.get(key, 0.0), 0.0)
                for key in before.keys() | open_lines.keys():
                    change = open_lines.get(key, 0.0) - before.get(key, 0.0)
                    if change:
                        self.on_order[key] = self.on_order.get(key, 0.0) + change
                    if open_lines.get(key, 0.0) > 1e-9:
                        self.po_at.setdefault(key, set()).add(e["po_id"])
                    else:
                        self.po_at.get(key, set()).discard(e["po_id"])
        elif isinstance(event, PurchaseOrder.Acknowledged | PurchaseOrder.Shipped | PurchaseOrder.Inspected
                        | SupplyTerms.Contracted | SupplyTerms.Quoted | SupplyTerms.Inspected):
            self._seen(event.event["event_id"], event.fingerprint, c.ACCEPTED, [], [])
        elif isinstance(event, REQUISITION_EVENTS):
            self._requisition(event)
        elif isinstance(event, ChainedAggregate.Opened) and event.originator_id.startswith("terms:"):
            terms = self.streams[event.originator_id]
            assert isinstance(terms, SupplyTerms)
            self.terms.setdefault(terms.sku, {})[terms.supplier] = terms
        elif isinstance(event, SurgicalCase.Changed):
            self._seen(event.event["event_id"], event.fingerprint, c.ACCEPTED, [], [])
            e = event.event
            case = self.streams[event.originator_id]
            assert isinstance(case, SurgicalCase)
            for cases in self.scheduled.values():
                cases.pop(case.case_id, None)
            if case.status == "scheduled" and case.location and case.procedure and case.scheduled_for:
                self.scheduled.setdefault(case.location, {})[case.case_id] = (case.procedure, case.scheduled_for)
        elif isinstance(event, StockPoint.OverrideSet):
            self._seen(event.event["event_id"], event.fingerprint, c.ACCEPTED, [], [])
        elif isinstance(event, StockPoint.AlertChanged | SupplierScorecard.AlertChanged
                           | ReferenceWait.AlertChanged):
            alert = self.alerts.get(event.alert_id)
            if alert is not None:
                alert["status"] = event.status
                alert[f"{event.status}_at"] = iso_utc(event.timestamp)
                alert[f"{event.status}_by"] = event.by
                if event.status == "resolved" and alert.get("dedupe_key"):
                    self.open_alert_keys.pop(tuple(alert["dedupe_key"]), None)
                self._feed(event.status, alert, event.reason)
        elif isinstance(event, StockPoint.AlertRepeated):
            self._repeated(event.alert_id, event.timestamp, event.event_id)
        elif isinstance(event, StockPoint.Refused | RefusalLog.Refused):
            eid = event.event.get("event_id") if isinstance(event.event, dict) else None
            if isinstance(eid, str) and not any(e["code"] == c.EVENT_ID_REUSED for e in event.errors):
                self._seen(eid, event.fingerprint, c.REJECTED, event.errors, [])
        elif isinstance(event, StockPoint.AlertRaised | SupplierScorecard.AlertRaised
                           | ReferenceWait.AlertRaised):
            alert = event.alert
            self.alerts[alert["id"]] = dict(alert)
            if alert.get("dedupe_key"):
                self.open_alert_keys[tuple(alert["dedupe_key"])] = alert["id"]
            self._feed("raised", self.alerts[alert["id"]])
        elif isinstance(event, MasterRecord.Registered):
            self._seen(event.event["event_id"], event.fingerprint, c.ACCEPTED, [], [])
            e = event.event
            at = datetime.fromisoformat(e["occurred_at"])
            if e["type"] == "item_registered":
                self.catalog.register_item(item_from_event(e), at)
            elif e["type"] == "location_registered":
                self.catalog.register_location(location_from_event(e), at)
            elif e["type"] == "supplier_registered":
                self.catalog.register_supplier(supplier_from_event(e), at)
        elif isinstance(event, Recall.Issued):
            self._seen(event.event["event_id"], event.fingerprint, c.ACCEPTED, [], [])
            e = event.event
            for lot in e.get("lots") or []:
                self.recalled_lots.setdefault((e["sku"], lot), set()).add(e["reference"])
            for serial in e.get("serials") or []:
                self.recalled_serials.setdefault((e["sku"], serial), set()).add(e["reference"])
        elif isinstance(event, Recall.Closed):
            self._seen(event.event["event_id"], event.fingerprint, c.ACCEPTED, [], [])
            recall = self.streams[event.originator_id]
            assert isinstance(recall, Recall) and recall.sku is not None
            for lot in recall.lots:
                self.recalled_lots.get((recall.sku, lot), set()).discard(recall.reference)
            for serial in recall.serials:
                self.recalled_serials.get((recall.sku, serial), set()).discard(recall.reference)
        elif isinstance(event, Lot.Changed | Recall.Confirmed):
            self._seen(event.event["event_id"], event.fingerprint, c.ACCEPTED, [], [])
        elif isinstance(event, StockPoint.UseFlagged):
            prior = self.seen.get(event.event_id)
            if prior is not None:  # a re-send of the use now answers with its flags
                self.seen[event.event_id] = Prior(prior.fingerprint, prior.status, prior.errors,
                                                  sorted(set(prior.flags) | set(event.flags)))

    def _requisition(self, event: Any) -> None:
        """Requisitions and transfer requests count as on order from their first line until
        they are ordered (the purchase order counts then), rejected, or delivered."""
        req = self.streams[event.originator_id]
        assert isinstance(req, Requisition)
        rid = req.requisition_id
        if isinstance(event, Requisition.LineAdded):
            line = event.line
            key = (line["sku"], line["location"])
            self.on_order[key] = self.on_order.get(key, 0.0) + line["quantity"]
            if req.kind == "transfer":
                self.transfers_due.setdefault(key, []).append([rid, line["quantity"]])
            else:
                lines = self.req_open.setdefault(rid, {})
                lines[key] = lines.get(key, 0.0) + line["quantity"]
                self.collecting[(req.supplier or "", req.site, req.kind)] = rid
        elif isinstance(event, Requisition.Submitted):
            if self.collecting.get((req.supplier or "", req.site, req.kind)) == rid:
                del self.collecting[(req.supplier or "", req.site, req.kind)]
        elif isinstance(event, Requisition.Rejected | Requisition.Ordered):
            for key, q in self.req_open.pop(rid, {}).items():
                self.on_order[key] = self.on_order.get(key, 0.0) - q
            if self.collecting.get((req.supplier or "", req.site, req.kind)) == rid:
                del self.collecting[(req.supplier or "", req.site, req.kind)]
            if req.kind == "transfer":
                for line in req.lines:
                    key = (line["sku"], line["location"])
                    due = self.transfers_due.get(key, [])
                    for row in [r for r in due if r[0] == rid]:
                        self.on_order[key] = self.on_order.get(key, 0.0) - row[1]
                        due.remove(row)

    def _transfer_arrived(self, key: tuple[str, str], quantity: float) -> None:
        """Units transferred in settle the oldest open transfer requests for them first."""
        due = self.transfers_due.get(key)
        while due and quantity > 0:
            take = min(quantity, due[0][1])
            due[0][1] -= take
            quantity -= take
            self.on_order[key] = self.on_order.get(key, 0.0) - take
            if due[0][1] <= 1e-9:
                due.pop(0)

    def open_transfer_requests(self, key: tuple[str, str]) -> list[str]:
        return [rid for rid, _ in self.transfers_due.get(key, ())]

    def _repeated(self, alert_id: str, at: datetime, event_id: str | None) -> None:
        """The condition of an open alert happened again: counted on it, and on the feed."""
        alert = self.alerts.get(alert_id)
        if alert is not None:
            alert["count"] = int(alert.get("count") or 1) + 1
            alert["last_seen"] = iso_utc(at)
            alert["last_event_id"] = event_id
            self._feed("repeated", alert)

    def _feed(self, change: str, alert: dict[str, Any], reason: str | None = None) -> None:
        """The alert feed: every raise, acknowledgement and resolution, numbered in log order
        (the numbers SSE clients resume from with Last-Event-ID)."""
        entry = {k: v for k, v in alert.items() if k != "dedupe_key"}
        entry.update(seq=len(self.alert_feed) + 1, change=change)
        if reason is not None:
            entry["reason"] = reason
        self.alert_feed.append(entry)

    def _seen(self, event_id: str, fp: str, status: str, errors: list[dict[str, Any]],
              flags: list[str]) -> None:
        prior = self.seen.get(event_id)
        if prior is None:
            self.seen[event_id] = Prior(fp, status, errors, flags)
        elif (status == prior.status == c.ACCEPTED and prior.fingerprint == fp
              and not set(flags) <= set(prior.flags)):
            # One event recorded on two stock points (a transfer's sides): its outcome carries
            # the flags of both, as ``Intake._stock`` answered it.
            self.seen[event_id] = Prior(fp, status, errors, sorted(set(prior.flags) | set(flags)))

    # -- reading ----------------------------------------------------------------------
    def stock_point(self, sku: str, location: str) -> StockPoint | None:
        sp = self.streams.get(stock_point_id(sku, location))
        return sp if isinstance(sp, StockPoint) else None

    def lot(self, sku: str, lot: str) -> Lot | None:
        agg = self.streams.get(lot_id(sku, lot))
        return agg if isinstance(agg, Lot) else None

    def recall_refs(self, sku: str, lot: str | None) -> set[str]:
        """The open recalls covering a lot: its own, and those of the lots it was relabelled from."""
        refs = set(self.recalled_lots.get((sku, lot or ""), ()))
        origin, seen = self.trace.relabelled_from.get((sku, lot or "")), {lot}
        while origin is not None and origin not in seen:
            seen.add(origin)
            refs |= self.recalled_lots.get((sku, origin), set())
            origin = self.trace.relabelled_from.get((sku, origin))
        return refs

    def is_recalled(self, sku: str, lot: str | None, serial: str | None = None) -> bool:
        return bool((lot and self.recalled_lots.get((sku, lot)))
                    or (serial and self.recalled_serials.get((sku, serial)))
                    or (lot and (sku, lot) in self.trace.relabelled_from and self.recall_refs(sku, lot)))

    def recall_started(self, sku: str, lot: str | None, serial: str | None) -> str | None:
        """The earliest ``occurred_at`` of the open recalls covering this lot or serial."""
        key = (sku, lot or "")
        if (key not in self.recalled_lots and key not in self.trace.relabelled_from
                and (sku, serial or "") not in self.recalled_serials):
            return None  # (the usual case: nothing about this lot or serial is recalled)
        refs = self.recall_refs(sku, lot) | set(self.recalled_serials.get((sku, serial or ""), ()))
        starts = [r.issued_at for ref in refs
                  if isinstance(r := self.streams.get(f"recall:{ref}"), Recall) and r.issued_at]
        return min(starts) if starts else None

    def lot_status(self, sku: str, lot: str, at: datetime, timezone: str) -> str:
        """``recalled``, ``on_hold``, ``expired`` or ``ok``: anything but ``ok`` is quarantined."""
        if lot and self.is_recalled(sku, lot):
            return "recalled"
        agg = self.lot(sku, lot) if lot else None
        if agg is not None and agg.on_hold:
            return "on_hold"
        origin, seen = (self.trace.relabelled_from.get((sku, lot)) if lot else None), {lot}
        while origin is not None and origin not in seen:  # a relabelled lot keeps its origin's hold
            seen.add(origin)
            before = self.lot(sku, origin)
            if before is not None and before.on_hold:
                return "on_hold"
            origin = self.trace.relabelled_from.get((sku, origin))
        if agg is not None and agg.expiry and is_expired(parse_date(agg.expiry), at, timezone):  # type: ignore[arg-type]
            return "expired"
        return "ok"


HistoryReader = Callable[[StockPoint], list[tuple[str, Moves]]]


class Intake:
    """Decides the outcome of each event against the ledger and records it there.

    ``history`` reads a stock point's stored facts (occurred_at, moves) in recording order; it
    is needed only for a count recorded after later movements of the same lot.
    """

    def __init__(self, ledger: Ledger, case_id_key: bytes, late_after: timedelta,
                 history: HistoryReader, max_event_age: timedelta = MAX_EVENT_AGE) -> None:
        self.ledger = ledger
        self.case_id_key = case_id_key
        self.late_after = late_after
        self.history = history
        self.max_event_age = max_event_age
        self.touched: dict[str, ChainedAggregate] = {}
        self.recorded: list[Any] = []
        self.raised: list[dict[str, Any]] = []

    def take_changes(self) -> tuple[list[Any], list[ChainedAggregate], list[dict[str, Any]]]:
        """Since the last call: the new events in the order they were decided (the order to
        store them in, so that replay sees them in that order), the aggregates they belong
        to, and the alerts raised."""
        recorded, touched, raised = self.recorded, list(self.touched.values()), self.raised
        self.recorded, self.touched, self.raised = [], {}, []
        return recorded, touched, raised

    # -- the entry point --------------------------------------------------------------
    def screen(self, raw: Any, principal: Principal, now: datetime, trusted: bool = False) -> Screened:
        """The checks of one event that need no stock point, recording nothing: its shape and
        identifiers, its id (the same event sent before: ``prior``; an id reused for other
        content: refused), the type's role and the envelope (``check_envelope``)."""
        if not isinstance(raw, dict):
            return Screened(raw, fingerprint(raw), errors=[FieldError(None, c.MALFORMED, "an event must be a JSON object")])
        bad_ids = check_identifiers(raw)
        if bad_ids:  # stored redacted, before anything uses them as keys
            safe = pseudonymise_event(redact_identifiers(raw, bad_ids), self.case_id_key)
            fp = fingerprint(safe)
            prior = self.ledger.seen.get(str(safe.get("event_id")))
            if prior is not None and prior.fingerprint == fp:  # sent again: the same refusal, once
                return Screened(safe, fp, prior=prior)
            return Screened(safe, fp, errors=bad_ids)
        safe = pseudonymise_event(raw, self.case_id_key)
        fp = fingerprint(safe)
        eid = safe.get("event_id")
        if not trusted and isinstance(eid, str) and eid.startswith(SYSTEM_EVENT_ID_PREFIX):
            err = FieldError("event_id", c.MALFORMED,
                             f"event ids starting with {SYSTEM_EVENT_ID_PREFIX!r} are reserved for the system's own events")
            return Screened(safe, fp, errors=[err])
        if isinstance(eid, str | int) and not isinstance(eid, bool) and eid != "":
            prior = self.ledger.seen.get(str(eid))
            if prior is not None:
                if prior.fingerprint == fp:
                    return Screened(safe, fp, prior=prior)
                err = FieldError("event_id", c.EVENT_ID_REUSED,
                                 f"event_id {eid!r} was already used for an event with different content")
                return Screened(safe, fp, errors=[err])
        event, errors = check_envelope(safe, principal.role, now, self.max_event_age)
        return Screened(safe, fp, event=event) if event is not None else Screened(safe, fp, errors=errors)

    def precheck(self, raw: Any, principal: Principal, now: datetime, seen: TransactionCheck) -> list[FieldError]:
        """The refusal ``handle`` would give ``raw`` now, recording nothing (an all-or-nothing
        submission is checked whole before any of it is stored): everything ``screen``
        checks, an id used twice in the submission for different content, and, for stock
        facts, the item, the locations, the unit and quantity and the point-of-care refusals
        (a recalled or expired lot scanned for use); for the OR schedule, the location and the
        case. Other types are judged by ``screen`` alone here (their deeper checks run when
        they are handled). An event sent before with the same content is no refusal."""
        s = self.screen(raw, principal, now)
        if s.prior is not None:
            return []
        if s.event is None:
            return s.errors
        event = s.event
        eid = str(event["event_id"])
        earlier = seen.ids.setdefault(eid, s.fp)
        if earlier != s.fp:
            return [FieldError("event_id", c.EVENT_ID_REUSED,
                               f"event_id {eid!r} is used twice in this submission for different content")]
        category = EVENT_TYPES[event["type"]].category
        at = datetime.fromisoformat(event["occurred_at"])
        if category == SCHEDULE:
            if event["type"] == "surgery_scheduled":
                errors: list[FieldError] = []
                self._resolve_location(event["location"], "location", event.get("site"), at, errors)
                if not errors:
                    seen.cases.add(event["case_id"])
                return errors
            if (event["type"] == "surgery_cancelled" and event["case_id"] not in seen.cases
                    and not isinstance(self.ledger.streams.get(f"case:{event['case_id']}"), SurgicalCase)):
                return [FieldError("case_id", c.MALFORMED, "no scheduled case has this case_id")]
            return []
        if category != STOCK:
            return []
        check = self._stock_check(event, at)
        if check.errors or check.item is None or check.here is None or event["type"] != "usage":
            return check.errors
        lot = event.get("lot") or ""
        scanned = event.get("expiry")
        known = self.ledger.lot(check.item.sku, lot) if lot else None
        expiry = known.expiry if known is not None and known.expiry is not None else scanned
        return self._care_refusals(check.item, check.here, lot, expiry, event, at)[2]

    def refuse(self, raw: Any, principal: Principal, now: datetime, errors: list[FieldError]) -> Outcome:
        """Record ``raw``'s refusal for ``errors`` found outside ``handle`` (by ``precheck``,
        against the rest of its submission: an id used twice in it), as ``handle`` records
        one (pseudonymised, on the stock point it names when there is one)."""
        s = self.screen(raw, principal, now)
        return self._refuse(s.payload, s.fp, None, errors, principal, now)

    def handle(self, raw: Any, principal: Principal, now: datetime, trusted: bool = False) -> Outcome:
        """``trusted``: the event comes from the system itself (procurement's orders), which
        alone may use the reserved ``sys:`` event ids and the fields only it sets."""
        s = self.screen(raw, principal, now, trusted)
        if s.prior is not None:
            return s.prior.replayed(str(s.payload.get("event_id")))
        if s.event is None:
            return self._refuse(s.payload, s.fp, None, s.errors, principal, now)
        event, safe, fp = s.event, s.payload, s.fp
        category = EVENT_TYPES[event["type"]].category
        if category == MASTER:
            return self._master(event, fp, principal, now)
        if category == LOT:
            return self._lot_changed(event, fp, principal, now)
        if category == RECALL:
            return self._recall(event, fp, principal, now)
        if category == SCHEDULE:
            return self._surgery(event, fp, principal, now)
        if category == PURCHASE:
            if event["type"] == "po_issued":
                return self._po_issued(event, fp, principal, now, trusted)
            if event["type"] == "inspection_result":
                return self._inspection(event, fp, principal, now)
            return self._po_update(event, fp, principal, now)
        if category == SUPPLY:
            return self._terms(event, fp, principal, now)
        if category == PLAN:
            return self._override(event, fp, principal, now)
        return self._stock(event, safe, fp, principal, now)

    # -- recording helpers ------------------------------------------------------------
    def _touch(self, agg: ChainedAggregate) -> None:
        event = agg.pending_events[-1]
        self.touched[agg.id] = agg
        self.recorded.append(event)
        self.ledger.index(event)

    def _open(self, cls: type[ChainedAggregate], aggregate_id: str, key: dict[str, Any],
              now: datetime) -> Any:
        agg = self.ledger.streams.get(aggregate_id)
        if agg is None:
            agg = cls.open(aggregate_id, key, now)
            self.ledger.streams[aggregate_id] = agg
            self._touch(agg)
        return agg

    def _refuse(self, payload: Any, fp: str, sp: StockPoint | None, errors: list[FieldError],
                principal: Principal, now: datetime) -> Outcome:
        errs = [e.as_dict() for e in errors]
        fields = {"event": payload, "fingerprint": fp, "errors": errs,
                  "recorded_at": iso_utc(now), "recorded_by": principal.name}
        if sp is None:
            sp = self._stock_point_of(payload, now)
        if sp is not None:
            sp.refuse(now, **fields)
            self._touch(sp)
        else:
            log = self._open(RefusalLog, REFUSALS_STREAM, {"stream": REFUSALS_STREAM}, now)
            log.refuse(now, **fields)
            self._touch(log)
        eid = payload.get("event_id") if isinstance(payload, dict) else None
        return Outcome(str(eid) if eid is not None else None, c.REJECTED, errs, [])

    def _stock_point_of(self, payload: Any, now: datetime) -> StockPoint | None:
        """The stock point a refused event names, when its item and location are registered,
        so that the stock point's audit history shows the refusal."""
        if not isinstance(payload, dict):
            return None
        sku, location = payload.get("sku"), payload.get("location") or payload.get("to_location")
        if not isinstance(sku, str) and isinstance(payload.get("gtin"), str):
            found = self.ledger.catalog.resolve_gtin(payload["gtin"])
            sku = found[0] if found else None
        if not isinstance(sku, str) or not isinstance(location, str):
            return None
        item, loc = self.ledger.catalog.item(sku, now), self.ledger.catalog.location(location, now)
        if item is None or loc is None:
            return None
        return self._open_stock_point(item, loc, now)

    def _accepted(self, event: dict[str, Any], flags: list[str]) -> Outcome:
        return Outcome(event["event_id"], c.ACCEPTED, [], flags)

    def _alert(self, sp: StockPoint | SupplierScorecard | ReferenceWait, kind: str, event: dict[str, Any], now: datetime,
               message: str, lot: str | None, flag: str | None = None,
               dedupe: bool = False, extra: dict[str, Any] | None = None, subject: str = "",
               group: bool = False) -> str | None:
        """Raise an alert; a bookkeeping ``flag`` alert is raised once per stock point and
        flag while it is open (and one event with two flags raises two alerts), and so is a
        ``dedupe`` alert once per stock point and kind (and ``subject``: an order, say). A
        ``group`` alert is one per stock point, kind and ``lot`` (or ``subject``) while open:
        each repeat of its condition is counted on it (a stored ``AlertRepeated``: ``count``,
        ``first_seen``, ``last_seen``; ``change: "repeated"`` on the alert feed) instead of a
        new alert. A flag alert counts its repeats too, from the flagged facts themselves
        (``Ledger.index``: a backfill of late events stores no extra event per fact). (A
        ``dedupe`` alert is a condition the planner keeps checking, such as a stockout risk:
        its re-checks are not repeats.)"""
        counted = group or flag is not None
        dedupe = dedupe or counted
        key = (sp.id, kind, flag if flag is not None else (lot or subject))
        if dedupe and key in self.ledger.open_alert_keys:
            if group and isinstance(sp, StockPoint):
                sp.repeat_alert(now, self.ledger.open_alert_keys[key], event.get("event_id"))
                self._touch(sp)
            return None
        # (an alert about a subject, raised again after it was resolved, is a new alert)
        alert_id = "al_" + fingerprint([sp.id, event.get("event_id"), kind, *([flag] if dedupe else []),
                                        *([subject, iso_utc(now)] if subject else [])])[:20]
        alert = {"id": alert_id, "kind": kind, "severity": c.ALERT_SEVERITY[kind],
                 "sku": getattr(sp, "sku", None), "location": getattr(sp, "location", None),
                 "site": getattr(sp, "site", None), "lot": lot,
                 "flag": flag, "raised_at": iso_utc(now), "status": "open",
                 "event_id": event.get("event_id"), "message": message,
                 "dedupe_key": list(key) if dedupe else None}
        if counted:
            alert.update(count=1, first_seen=alert["raised_at"], last_seen=alert["raised_at"])
        if isinstance(sp, SupplierScorecard):  # a notice about a supplier, on its scorecard
            alert["stream"], alert["supplier"] = sp.id, sp.supplier
        if isinstance(sp, ReferenceWait):  # events of a key waiting for their reference data
            alert["stream"], alert["key"] = sp.id, sp.wait_key
        if extra:
            alert.update(extra)
        sp.raise_alert(now, alert)
        self._touch(sp)
        self.raised.append(alert)
        return alert_id

    # -- master data ------------------------------------------------------------------
    def _master(self, event: dict[str, Any], fp: str, principal: Principal, now: datetime) -> Outcome:
        kind = event["type"].removesuffix("_registered")
        record_key = event["sku" if kind == "item" else kind]
        if kind == "location" and event.get("gln") is not None:
            # A GLN names one place: EPCIS events are placed by it (``Catalog.resolve_gln``).
            owner = self.ledger.catalog.resolve_gln(place_key(event["gln"]) or "")
            if owner is not None and owner != record_key:
                return self._refuse(event, fp, None, [FieldError(
                    "gln", c.MALFORMED, f"GLN {event['gln']} is already location {owner!r}'s; a GLN names one "
                    "place (register that location again without it first)")], principal, now)
        rec = self._open(MasterRecord, f"{kind}:{record_key}", {"kind": kind, kind: record_key}, now)
        rec.register(now, event=event, fingerprint=fp, recorded_at=iso_utc(now),
                     recorded_by=principal.name)
        self._touch(rec)
        return self._accepted(event, [])

    # -- item, location, unit resolution ----------------------------------------------
    def _resolve_item(self, event: dict[str, Any], at: datetime,
                      errors: list[FieldError]) -> tuple[Item | None, str | None]:
        """The item and the packaging unit implied by its GTIN (None for the base unit)."""
        sku, gtin, level = event.get("sku"), event.get("gtin"), None
        if gtin is not None:
            found = self.ledger.catalog.resolve_gtin(gtin)
            if found is None and sku is None:
                errors.append(FieldError("gtin", c.UNKNOWN_ITEM, f"no item is registered with GTIN {gtin}"))
                return None, None
            if found is not None:
                if sku is not None and found[0] != sku:
                    errors.append(FieldError("gtin", c.UNKNOWN_ITEM,
                                             f"GTIN {gtin} belongs to item {found[0]}, not {sku}"))
                    return None, None
                sku, level = found
        item = self.ledger.catalog.item(sku, at) if sku is not None else None
        if item is None:
            errors.append(FieldError("sku", c.UNKNOWN_ITEM, f"no item is registered with SKU {sku}"))
            return None, None
        return item, (None if level == item.base_unit else level)

    def _resolve_location(self, name: str, field_name: str, site: str | None, at: datetime,
                          errors: list[FieldError]) -> Location | None:
        loc = self.ledger.catalog.location(name, at)
        if loc is None:
            errors.append(FieldError(field_name, c.UNKNOWN_LOCATION, f"no location is registered as {name!r}"))
        elif site is not None and loc.site != site:
            errors.append(FieldError("site", c.UNKNOWN_LOCATION,
                                     f"location {name!r} is at site {loc.site!r}, not {site!r}"))
            return None
        return loc

    # -- stock facts ------------------------------------------------------------------
    def _stock(self, event: dict[str, Any], safe: dict[str, Any], fp: str, principal: Principal,
               now: datetime) -> Outcome:
        at = datetime.fromisoformat(event["occurred_at"])
        check = self._stock_check(event, at)
        item, level, here, src, dst, factor, errors = (check.item, check.level, check.here, check.src, check.dst,
                                                      check.factor, check.errors)
        is_transfer = event["type"] == "transfer"
        sp = (self._open_stock_point(item, here, now)
              if item is not None and here is not None else None)
        if errors or item is None or here is None or factor is None or sp is None:
            return self._refuse(safe, fp, sp, errors, principal, now)

        event["sku"] = item.sku
        if factor != 1.0 or (event.get("unit") not in (None, item.base_unit)):
            event["sent_quantity"], event["sent_unit"] = event["quantity"], event.get("unit") or level
        event["quantity"] = float(event["quantity"]) * factor
        if not item.divisible:  # whole pieces: 0.1 box of 10 is 1, not 1.0000000000000002
            event["quantity"] = float(round(event["quantity"]))
        event["unit"] = item.base_unit
        lot = event.get("lot") or ""
        flags: list[str] = []

        # The lot's recorded expiry wins over a scanned one (demand not met used no lot).
        expiry = None if event["type"] == "demand_unmet" else self._expiry(item.sku, lot, event, flags, now)

        if event["type"] == "usage":
            refusal = self._point_of_care(sp, here, item, lot, expiry, event, at, flags, now)
            if refusal:
                return self._refuse(safe, fp, sp, refusal, principal, now)

        q = event["quantity"]
        if is_transfer:
            assert src is not None and dst is not None
            out_sp = self._open_stock_point(item, src, now)
            out_flags = self._timing_flags(out_sp, event, at, now)
            if lot and lot not in out_sp.lots:
                out_flags.append(c.LOT_NOT_RECEIVED)
            self._record(out_sp, dict(event, side="out", location=src.location),
                         [["add", lot, -q]], out_flags, fp, principal, now)
            flags += self._timing_flags(sp, event, at, now)
            self._record(sp, dict(event, side="in", location=dst.location),
                         [["add", lot, q]], flags, fp, principal, now)
            return self._accepted(event, sorted(set(flags) | set(out_flags)))

        flags += self._timing_flags(sp, event, at, now)
        etype = event["type"]
        if etype in ("receipt", "return"):
            moves = [["add", lot, q]]
        elif etype == "stock_count":
            moves = [["set", lot, q]]
        elif etype == "demand_unmet":
            moves = []
        else:  # usage, waste
            moves = [["add", lot, -q]]
            if lot and lot not in sp.lots:
                flags.append(c.LOT_NOT_RECEIVED)
                moves = [["add", lot, q], ["add", lot, -q]]
                self._implied_transfer(sp, here, item, event, q, fp, principal, now)
        self._record(sp, event, moves, flags, fp, principal, now)
        return self._accepted(event, flags)

    def _stock_check(self, event: dict[str, Any], at: datetime) -> StockCheck:
        """The item, locations and unit of a stock fact, and what refuses it (reads only)."""
        errors: list[FieldError] = []
        item, level = self._resolve_item(event, at, errors)
        site = event.get("site")
        if event["type"] == "transfer":
            src = self._resolve_location(event["from_location"], "from_location", site, at, errors)
            dst = self._resolve_location(event["to_location"], "to_location", site, at, errors)
            here = dst
        else:
            here = self._resolve_location(event["location"], "location", site, at, errors)
            src = dst = None
        factor = None
        if item is not None:
            unit = event.get("unit") or level or item.base_unit
            factor = item.factor(unit)
            if factor is None:
                known = ", ".join([item.base_unit, *item.units])
                errors.append(FieldError("unit", c.UNKNOWN_UNIT,
                                         f"item {item.sku} has no unit {unit!r} (known: {known})"))
            elif float(event["quantity"]) * factor > MAX_QUANTITY:
                errors.append(FieldError("quantity", c.INVALID_QUANTITY,
                                         f"{event['quantity']} {unit} is more than {MAX_QUANTITY:,.0f} {item.base_unit}"))
            elif not item.divisible and not is_whole(float(event["quantity"]) * factor):
                errors.append(FieldError("quantity", c.INVALID_QUANTITY,
                                         f"{event['quantity']} {unit} is {float(event['quantity']) * factor:g} "
                                         f"{item.base_unit}: item {item.sku} counts whole {item.base_unit}"))
        return StockCheck(item, level, here, src, dst, factor, errors)

    def _open_stock_point(self, item: Item, loc: Location, now: datetime) -> StockPoint:
        key = {"sku": item.sku, "location": loc.location, "site": loc.site}
        return self._open(StockPoint, stock_point_id(item.sku, loc.location), key, now)

    def _expiry(self, sku: str, lot: str, event: dict[str, Any], flags: list[str],
                now: datetime) -> str | None:
        scanned = event.get("expiry")
        if not lot:
            return scanned
        agg = self.ledger.lot(sku, lot)
        if agg is None:
            agg = self._open(Lot, lot_id(sku, lot), {"sku": sku, "lot": lot, "expiry": scanned}, now)
            return scanned
        if agg.expiry is None and scanned is not None:
            agg.learn_expiry(now, scanned, event["event_id"])
            self._touch(agg)
        elif scanned is not None and agg.expiry != scanned:
            flags.append(c.EXPIRY_MISMATCH)
        return agg.expiry

    def _point_of_care(self, sp: StockPoint, loc: Location, item: Item, lot: str,
                       expiry: str | None, event: dict[str, Any], at: datetime,
                       flags: list[str], now: datetime) -> list[FieldError]:
        """A scan of a recalled or expired lot is refused; a case's usage of one is kept."""
        serial = event.get("serial")
        recalled, expired, errors = self._care_refusals(item, loc, lot, expiry, event, at)
        if not (recalled or expired):
            held = self.ledger.lot(item.sku, lot) if lot else None
            if held is not None and held.on_hold:
                # Accepted (the refusal codes are the contract's: none means "held"), with a
                # critical alert so that the quality team follows the unit up.
                self._alert(sp, c.ALERT_HELD_LOT_USED, event, now,
                            f"lot {lot} of {item.sku} is on hold and was used", lot)
            return []
        what = f"lot {lot}" if lot else f"serial {serial}"
        if not errors:  # used in a patient's case: kept, with a flag and an alert
            if recalled:
                flags.append(c.RECALLED_LOT_USED)
                self._alert(sp, c.ALERT_RECALLED_LOT_USED, event, now,
                            f"recalled {what} of {item.sku} was used", lot)
            if expired:
                flags.append(c.EXPIRED_LOT_USED)
                self._alert(sp, c.ALERT_EXPIRED_LOT_USED, event, now,
                            f"{what} of {item.sku} expired on {expiry} and was used", lot)
            return []
        if recalled:
            self._alert(sp, c.ALERT_RECALLED_LOT_SCANNED, event, now,
                        f"recalled {what} of {item.sku} was scanned for use and refused", lot,
                        group=True, subject=f"serial:{serial}" if not lot else "")
        if expired:
            self._alert(sp, c.ALERT_EXPIRED_LOT_SCANNED, event, now,
                        f"expired {what} of {item.sku} was scanned for use and refused", lot,
                        group=True, subject=f"serial:{serial}" if not lot else "")
        return errors

    def _care_refusals(self, item: Item, loc: Location, lot: str, expiry: str | None, event: dict[str, Any],
                       at: datetime) -> tuple[bool, bool, list[FieldError]]:
        """Whether the unit used is of a recalled lot (or serial) and whether it expired, and
        the refusals that follow (reads only): none when it was used in a patient's case (or
        before its recall began), else ``recalled_lot`` and ``expired_lot``."""
        serial = event.get("serial")
        recall_from = self.ledger.recall_started(item.sku, lot, serial)
        recalled = recall_from is not None
        exp_date = parse_date(expiry) if expiry else None
        expired = exp_date is not None and is_expired(exp_date, at, loc.timezone)
        # A blank case id (a form field left empty) is no case: the scan is refused.
        in_patient = not is_blank(event.get("case_id")) or (recalled and event["occurred_at"] < recall_from)
        if not (recalled or expired) or in_patient:
            return recalled, expired, []
        what = f"lot {lot}" if lot else f"serial {serial}"
        errors = []
        if recalled:
            errors.append(FieldError("lot", c.RECALLED_LOT, f"{what} of {item.sku} is recalled: do not use"))
        if expired:
            errors.append(FieldError("lot", c.EXPIRED_LOT, f"{what} of {item.sku} expired on {expiry}: do not use"))
        return recalled, expired, errors

    def _timing_flags(self, sp: StockPoint, event: dict[str, Any], at: datetime,
                      now: datetime) -> list[str]:
        flags = []
        if now - at > self.late_after:
            flags.append(c.LATE)
        if sp.latest_occurred_at is not None and event["occurred_at"] < sp.latest_occurred_at:
            flags.append(c.OUT_OF_ORDER)
        return flags

    def _implied_transfer(self, sp: StockPoint, here: Location, item: Item, event: dict[str, Any],
                          q: float, fp: str, principal: Principal, now: datetime) -> None:
        """A lot used where it was never received came from somewhere: from the location that
        restocks this one when there is one (its stock goes down), else from unrecorded stock."""
        if not here.restocked_from:
            return
        source = self.ledger.catalog.location(here.restocked_from, datetime.fromisoformat(event["occurred_at"]))
        if source is None:
            return
        src_sp = self._open_stock_point(item, source, now)
        implied = dict(event, type="implied_transfer", side="out", location=source.location,
                       to_location=here.location)
        self._record(src_sp, implied, [["add", event.get("lot") or "", -q]],
                     [c.LOT_NOT_RECEIVED], fp, principal, now)

    def _record(self, sp: StockPoint, event: dict[str, Any], moves: Moves, flags: list[str],
                fp: str, principal: Principal, now: datetime) -> None:
        effects = self._effects(sp, event["occurred_at"], moves)
        lots = sp.lots
        if c.NEGATIVE_STOCK not in flags and any(lots.get(lot, 0.0) + d < 0 for lot, d in effects):
            flags.append(c.NEGATIVE_STOCK)
        sp.record(now, event=event, moves=moves, effects=effects, flags=flags, fingerprint=fp,
                  recorded_at=iso_utc(now), recorded_by=principal.name)
        self._touch(sp)
        bookkeeping = [f for f in flags if f in c.BOOKKEEPING_FLAGS]
        for flag in bookkeeping:
            self._alert(sp, c.ALERT_DATA_QUALITY, event, now,
                        f"{flag.replace('_', ' ')} on {sp.sku} at {sp.location} "
                        f"(event {event['event_id']})", event.get("lot") or None, flag=flag)

    def _effects(self, sp: StockPoint, occurred_at: str, moves: Moves) -> list[list[Any]]:
        """What ``moves`` at ``occurred_at`` change in each lot's current balance."""
        effects: dict[str, float] = {}
        for op, lot, q in moves:
            last_count = sp.last_count_at.get(lot)
            if last_count is not None and occurred_at < last_count:
                continue  # a later count already stands for this lot
            if op == "add":
                effects[lot] = effects.get(lot, 0.0) + q
            elif sp.lot_latest.get(lot, "") <= occurred_at:
                effects[lot] = q - sp.lots.get(lot, 0.0) - effects.get(lot, 0.0)
            else:  # a count recorded after later movements of its lot
                facts = [*self.history(sp), (occurred_at, moves)]
                effects[lot] = fold_balances(facts).get(lot, 0.0) - sp.lots.get(lot, 0.0)
        return [[lot, d] for lot, d in effects.items()]

    def flag_recalled_use(self, sp: StockPoint, usage: dict[str, Any], reference: str,
                          now: datetime) -> None:
        """A stored use of a lot whose recall, from an earlier instant, became known only after
        the use was recorded: flag it and alert (the unit may be in a patient)."""
        what = f"lot {usage.get('lot')}" if usage.get("lot") else f"serial {usage.get('serial')}"
        sp.flag_use(now, usage["event_id"], [c.RECALLED_LOT_USED], f"recall {reference}")
        self._touch(sp)
        self._alert(sp, c.ALERT_RECALLED_LOT_USED, usage, now,
                    f"recalled {what} of {sp.sku} was used (recall {reference} became known "
                    f"after the use was recorded)", usage.get("lot") or None)

    # -- lots and recalls -------------------------------------------------------------
    def _lot_changed(self, event: dict[str, Any], fp: str, principal: Principal,
                     now: datetime) -> Outcome:
        errors: list[FieldError] = []
        item, _ = self._resolve_item(event, datetime.fromisoformat(event["occurred_at"]), errors)
        if item is None:
            return self._refuse(event, fp, None, errors, principal, now)
        event["sku"] = item.sku
        if event["change"] == "relabelled" and event["new_lot"] == event["lot"]:
            err = FieldError("new_lot", c.MALFORMED, "a relabelled lot needs a different 'new_lot'")
            return self._refuse(event, fp, None, [err], principal, now)
        lot = self._open(Lot, lot_id(item.sku, event["lot"]),
                         {"sku": item.sku, "lot": event["lot"], "expiry": None}, now)
        lot.change(now, event=event, fingerprint=fp, recorded_at=iso_utc(now),
                   recorded_by=principal.name)
        self._touch(lot)
        if event["change"] == "relabelled":
            self._relabel(lot, event, fp, principal, now)
        return self._accepted(event, [])

    def _relabel(self, old: Lot, event: dict[str, Any], fp: str, principal: Principal,
                 now: datetime) -> None:
        """Move the old lot's balance to the new lot at every stock point that holds it; the new
        lot starts with the old one's expiry (and keeps its recall or hold, ``lot_status``)."""
        new = event["new_lot"]
        if self.ledger.lot(old.sku, new) is None:
            self._open(Lot, lot_id(old.sku, new), {"sku": old.sku, "lot": new, "expiry": old.expiry}, now)
        for sp_id in sorted(self.ledger.trace.points.get((old.sku, old.lot), ())):
            sp = self.ledger.streams.get(sp_id)
            if not isinstance(sp, StockPoint) or sp.lots.get(old.lot, 0.0) == 0:
                continue
            q = sp.lots[old.lot]
            self._record(sp, dict(event, location=sp.location),
                         [["add", old.lot, -q], ["add", new, q]], [], fp, principal, now)

    def _recall(self, event: dict[str, Any], fp: str, principal: Principal,
                now: datetime) -> Outcome:
        recall_id = f"recall:{event['reference']}"
        fields = {"event": event, "fingerprint": fp, "recorded_at": iso_utc(now),
                  "recorded_by": principal.name}
        if event["type"] in ("recall_closed", "recall_confirmed"):
            recall = self.ledger.streams.get(recall_id)
            if not isinstance(recall, Recall) or not recall.is_open:
                err = FieldError("reference", c.MALFORMED,
                                 f"there is no open recall with reference {event['reference']!r}")
                return self._refuse(event, fp, None, [err], principal, now)
            if event["type"] == "recall_confirmed":
                return self._recall_confirmed(recall, event, fp, principal, now)
            recall.close(now, **fields)
            self._touch(recall)
            self._end_recall_tasks(recall, None, "recall closed", principal, now)
            return self._accepted(event, [])
        errors: list[FieldError] = []
        item, _ = self._resolve_item(event, datetime.fromisoformat(event["occurred_at"]), errors)
        if item is None:
            return self._refuse(event, fp, None, errors, principal, now)
        event["sku"] = item.sku
        recall = self._open(Recall, recall_id, {"reference": event["reference"]}, now)
        recall.issue(now, **fields)
        self._touch(recall)
        return self._accepted(event, [])

    def _recall_confirmed(self, recall: Recall, event: dict[str, Any], fp: str,
                          principal: Principal, now: datetime) -> Outcome:
        """A location reports what it did with the recalled units it held: those returned,
        destroyed or not found leave its books (a stock fact on its stock point), its progress
        is on the recall, and its recall task ends once the quarantined units are accounted for."""
        errors: list[FieldError] = []
        loc = self._resolve_location(event["location"], "location", event.get("site"),
                                     datetime.fromisoformat(event["occurred_at"]), errors)
        if loc is None:
            return self._refuse(event, fp, None, errors, principal, now)
        assert recall.sku is not None
        event["sku"] = recall.sku
        recall.confirm(now, **self._fields(event, fp, principal, now))
        self._touch(recall)
        sp = self.ledger.stock_point(recall.sku, loc.location)
        if sp is not None:
            remaining = sum(float(event.get(f) or 0) for f in ("returned", "destroyed", "not_found"))
            lots = [event["lot"]] if event.get("lot") else sorted(
                set(recall.lots) | set(sp.quarantines.get(recall.reference, {})))
            moves = []
            for lot in lots:
                take = min(remaining, max(sp.lots.get(lot, 0.0), 0.0))
                if take > 0:
                    moves.append(["add", lot, -take])
                    remaining -= take
            if moves:
                self._record(sp, dict(event, location=loc.location), moves, [], fp, principal, now)
            done = recall.confirmed.get(loc.location, {})
            if sum(done.values()) >= sum(sp.quarantines.get(recall.reference, {}).values()):
                self._end_recall_tasks(recall, sp, "recall confirmed", principal, now)
        return self._accepted(event, [])

    def _end_recall_tasks(self, recall: Recall, sp: StockPoint | None, reason: str,
                          principal: Principal, now: datetime) -> None:
        """Resolve the open recall task alerts of ``recall`` (at one stock point, or all)."""
        ids = [sp.id] if sp is not None else sorted(
            {sid for lot in recall.lots for sid in self.ledger.trace.points.get((recall.sku or "", lot), ())})
        for sid in ids:
            point = self.ledger.streams[sid]
            alert_id = self.ledger.open_alert_keys.get((point.id, c.ALERT_RECALL_TASK, recall.reference))
            if alert_id is not None:
                self.change_alert(alert_id, "resolved", reason, principal, now)

    def quarantine(self, sp: StockPoint, recall: Recall, lots: dict[str, float],
                   serials: list[str], cause: str | None, now: datetime) -> None:
        """Quarantine the units of ``recall`` that ``sp`` holds (a decision event), and raise the
        location's recall task (one open per stock point and recall)."""
        first = recall.reference not in sp.quarantines
        decision: dict[str, Any] = {"type": "quarantined", "sku": sp.sku, "location": sp.location,
                    "reference": recall.reference, "recall_class": recall.recall_class,
                    "lots": lots, "quantity": sum(lots.values()), "cause_event_id": cause,
                    "decided_at": iso_utc(now)}
        if serials:
            decision["serials"] = serials
        self.record_decision(sp, decision, now)
        if first:
            what = ", ".join(f"{q:g} of lot {lot}" for lot, q in sorted(lots.items()))
            self._alert(sp, c.ALERT_RECALL_TASK, {"event_id": cause}, now,
                        f"recall {recall.reference}: find, quarantine and confirm {what} of "
                        f"{sp.sku} at {sp.location}", None, flag=recall.reference,
                        extra={"reference": recall.reference})

    # -- schedule, purchase orders, overrides -----------------------------------------
    def _fields(self, event: dict[str, Any], fp: str, principal: Principal, now: datetime) -> dict[str, Any]:
        return {"event": event, "fingerprint": fp, "recorded_at": iso_utc(now),
                "recorded_by": principal.name}

    def _surgery(self, event: dict[str, Any], fp: str, principal: Principal, now: datetime) -> Outcome:
        case_key = f"case:{event['case_id']}"
        case = self.ledger.streams.get(case_key)
        if event["type"] == "surgery_scheduled":
            errors: list[FieldError] = []
            self._resolve_location(event["location"], "location", event.get("site"),
                                   datetime.fromisoformat(event["occurred_at"]), errors)
            if errors:
                return self._refuse(event, fp, None, errors, principal, now)
        elif not isinstance(case, SurgicalCase) and event["type"] == "surgery_cancelled":
            err = FieldError("case_id", c.MALFORMED, "no scheduled case has this case_id")
            return self._refuse(event, fp, None, [err], principal, now)
        case = self._open(SurgicalCase, case_key, {"case_id": event["case_id"]}, now)
        case.change(now, **self._fields(event, fp, principal, now))
        self._touch(case)
        return self._accepted(event, [])

    def _po_issued(self, event: dict[str, Any], fp: str, principal: Principal, now: datetime,
                   trusted: bool = False) -> Outcome:
        at = datetime.fromisoformat(event["occurred_at"])
        errors: list[FieldError] = []
        if not trusted:
            errors += [FieldError(f, c.MALFORMED, f"'{f}' is set by the system's procurement only")
                       for f in SYSTEM_PO_FIELDS if event.get(f) is not None]
            before = self.ledger.streams.get(f"po:{event['po_id']}")
            if isinstance(before, PurchaseOrder) and (before.requisition_id or before.bill_only):
                errors.append(FieldError("po_id", c.MALFORMED,
                                         f"purchase order {event['po_id']} was issued by procurement: change it "
                                         "through its requisition"))
        self._resolve_location(event["location"], "location", event.get("site"), at, errors)
        lines = []
        for i, line in enumerate(event["lines"]):
            item = self.ledger.catalog.item(line["sku"], at)
            if item is None:
                errors.append(FieldError(f"lines[{i}].sku", c.UNKNOWN_ITEM,
                                         f"no item is registered with SKU {line['sku']}"))
                continue
            factor = item.factor(line.get("unit"))
            if factor is None:
                errors.append(FieldError(f"lines[{i}].unit", c.UNKNOWN_UNIT,
                                         f"item {item.sku} has no unit {line.get('unit')!r}"))
                continue
            if line.get("location") is not None:
                self._resolve_location(line["location"], f"lines[{i}].location", event.get("site"), at, errors)
            lines.append(dict(line, quantity=float(line["quantity"]) * factor, unit=item.base_unit,
                              sent_quantity=line["quantity"], sent_unit=line.get("unit") or item.base_unit))
        if errors:
            return self._refuse(event, fp, None, errors, principal, now)
        event["lines"] = lines
        po = self._open(PurchaseOrder, f"po:{event['po_id']}", {"po_id": event["po_id"]}, now)
        po.issue(now, **self._fields(event, fp, principal, now))
        self._touch(po)
        return self._accepted(event, [])

    def _po_update(self, event: dict[str, Any], fp: str, principal: Principal, now: datetime) -> Outcome:
        """A supplier's acknowledgement (lines confirmed or backordered) or shipping notice."""
        po = self.ledger.streams.get(f"po:{event['po_id']}")
        if not isinstance(po, PurchaseOrder) or po.issued_at is None:
            err = FieldError("po_id", c.MALFORMED, f"no purchase order {event['po_id']!r} was issued")
            return self._refuse(event, fp, None, [err], principal, now)
        unknown = [FieldError(f"lines[{i}].sku", c.UNKNOWN_ITEM, f"purchase order {po.po_id} has no line for {line['sku']}")
                   for i, line in enumerate(event.get("lines") or []) if line["sku"] not in po.lines]
        if unknown:
            return self._refuse(event, fp, None, unknown, principal, now)
        event["supplier"] = po.supplier
        fields = self._fields(event, fp, principal, now)
        if event["type"] == "po_acknowledged":
            po.acknowledge(now, **fields)
        else:
            po.ship(now, **fields)
        self._touch(po)
        return self._accepted(event, [])

    def _inspection(self, event: dict[str, Any], fp: str, principal: Principal, now: datetime) -> Outcome:
        """An inspection of a delivered batch: recorded on its purchase order (or, with no
        order named, under its supplier); rejected units leave the location's stock (they go
        back to the supplier)."""
        at = datetime.fromisoformat(event["occurred_at"])
        errors: list[FieldError] = []
        item, _ = self._resolve_item(event, at, errors)
        loc = self._resolve_location(event["location"], "location", event.get("site"), at, errors)
        po = self.ledger.streams.get(f"po:{event['po_id']}") if event.get("po_id") else None
        if event.get("po_id") and not isinstance(po, PurchaseOrder):
            errors.append(FieldError("po_id", c.MALFORMED, f"no purchase order {event['po_id']!r} was issued"))
        if item is None or loc is None or errors:
            return self._refuse(event, fp, None, errors, principal, now)
        event["sku"] = item.sku
        if isinstance(po, PurchaseOrder):
            event["supplier"] = po.supplier
            po.inspect(now, **self._fields(event, fp, principal, now))
            self._touch(po)
        else:
            terms = self._open(SupplyTerms, f"terms:{event['supplier']}/{item.sku}",
                               {"supplier": event["supplier"], "sku": item.sku}, now)
            terms.inspect(now, **self._fields(event, fp, principal, now))
            self._touch(terms)
        rejected = float(event["rejected"])
        if rejected > 0:
            sp = self._open_stock_point(item, loc, now)
            lot = event.get("lot") or ""
            take = min(rejected, max(sp.lots.get(lot, 0.0), 0.0))
            if take > 0:
                self._record(sp, dict(event, quantity=take), [["add", lot, -take]], [], fp, principal, now)
        return self._accepted(event, [])

    def _terms(self, event: dict[str, Any], fp: str, principal: Principal, now: datetime) -> Outcome:
        """A supplier's contract or quote for an item (prices per base unit)."""
        at = datetime.fromisoformat(event["occurred_at"])
        errors: list[FieldError] = []
        item, _ = self._resolve_item(event, at, errors)
        if event["supplier"] not in self.ledger.catalog.suppliers:
            errors.append(FieldError("supplier", c.MALFORMED, f"no supplier is registered as {event['supplier']!r}"))
        if item is None or errors:
            return self._refuse(event, fp, None, errors, principal, now)
        event["sku"] = item.sku
        terms = self._open(SupplyTerms, f"terms:{event['supplier']}/{item.sku}",
                           {"supplier": event["supplier"], "sku": item.sku}, now)
        fields = self._fields(event, fp, principal, now)
        if event["type"] == "supplier_contract":
            terms.contract(now, **fields)
        else:
            terms.quote(now, **fields)
        self._touch(terms)
        return self._accepted(event, [])

    def _override(self, event: dict[str, Any], fp: str, principal: Principal, now: datetime) -> Outcome:
        at = datetime.fromisoformat(event["occurred_at"])
        errors: list[FieldError] = []
        item, _ = self._resolve_item(event, at, errors)
        loc = self._resolve_location(event["location"], "location", event.get("site"), at, errors)
        if item is None or loc is None:
            return self._refuse(event, fp, None, errors, principal, now)
        sp = self._open_stock_point(item, loc, now)
        sp.set_override(now, **self._fields(event, fp, principal, now))
        self._touch(sp)
        return self._accepted(event, [])

    # -- decisions (called by the planner, after the facts they follow) ----------------
    def record_decision(self, sp: StockPoint, decision: dict[str, Any], now: datetime) -> None:
        sp.decide(now, decision)
        self._touch(sp)

    def raise_alert(self, sp: StockPoint, kind: str, cause_event_id: str | None, message: str,
                    now: datetime, extra: dict[str, Any] | None = None, subject: str = "") -> None:
        """Raise an alert of ``kind`` (about ``subject``) on the stock point unless one is
        already open."""
        self._alert(sp, kind, {"event_id": cause_event_id}, now, message, None, dedupe=True, extra=extra,
                    subject=subject)

    def open_alert(self, sp: StockPoint, kind: str, subject: str = "") -> str | None:
        return self.ledger.open_alert_keys.get((sp.id, kind, subject))

    # -- causal order across Kafka topics ------------------------------------------------
    def reference_wait(self, key: str, parked: int, needed_offset: int, stored_offset: int,
                       now: datetime) -> str | None:
        """Raise ``reference_wait`` for Kafka key ``key`` (a stock point's ``sku@location``):
        ``parked`` of its events wait for the reference topic up to ``needed_offset``, stored
        up to ``stored_offset``. Once while they wait; returns the alert's id when raised."""
        wait = self._open(ReferenceWait, f"wait:{key}", {"key": key}, now)
        sku, _, location = key.partition("@") if "@" in key and ":" not in key else ("", "", "")
        return self._alert(
            wait, c.ALERT_REFERENCE_WAIT, {"event_id": None}, now,
            f"{parked} event(s) of {key} wait for reference data (item, location, supplier) sent before "
            f"them: the reference topic is stored up to offset {stored_offset}, they need {needed_offset}; "
            "they resume, in order, when it arrives", None, dedupe=True,
            extra={"sku": sku or None, "location": location or None, "parked": parked,
                   "reference_offset": needed_offset}, subject=key)

    def reference_arrived(self, key: str, resumed: int, now: datetime) -> None:
        """Resolve ``key``'s open ``reference_wait``: its ``resumed`` events were decided."""
        alert_id = self.ledger.open_alert_keys.get((f"wait:{key}", c.ALERT_REFERENCE_WAIT, key))
        if alert_id is not None:
            self.change_alert(alert_id, "resolved", f"the reference data arrived; {resumed} event(s) resumed",
                              Principal("system", c.ADMIN), now)

    # -- alerts ----------------------------------------------------------------------
    def change_alert(self, alert_id: str, status: str, reason: str, principal: Principal,
                     now: datetime) -> dict[str, Any] | None:
        """Acknowledge or resolve an alert; None when there is no such alert."""
        alert = self.ledger.alerts.get(alert_id)
        if alert is None:
            return None
        if alert["status"] == "resolved" or alert["status"] == status:
            return alert
        sp = self.ledger.streams[alert.get("stream") or f"sp:{alert['sku']}@{alert['location']}"]
        assert isinstance(sp, StockPoint | SupplierScorecard | ReferenceWait)
        sp.change_alert(now, alert_id, status, reason, principal.name)
        self._touch(sp)
        return alert
