"""Event-sourced aggregates. Every stream is hash-chained (see ``domain.chain``).

Each aggregate is an ``eventsourcing`` aggregate with a text id that names what it is
(``sp:<sku>@<location>``, ``lot:<sku>/<lot>``, ``recall:<reference>``, ``item:<sku>``, ...).
An event's ``apply`` only mutates state, so replaying a stream is the same code as the
live path. Events carry plain JSON values; the facts they record are in the wire schema of
``domain.events`` (normalised), so one schema serves the API, the store and the auditor.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime
from functools import cache
from typing import Any, ClassVar, Self

from eventsourcing.domain import BaseAggregate, CanInitAggregate, CanMutateAggregate
from eventsourcing.utils import get_topic

from domain.chain import GENESIS, chained_state

LAST_EVENTS_KEPT = 20
BOOKKEEPING = frozenset({"lot_not_received", "negative_stock", "late", "out_of_order", "expiry_mismatch"})


@cache
def _topic(cls: type) -> str:
    return get_topic(cls)


_ENVELOPE_FIELDS = frozenset({"originator_id", "originator_version", "timestamp", "prev_hash", "hash"})


@cache
def _own_fields(cls: type) -> frozenset[str]:
    """The fields an event of ``cls`` is appended with: all of its dataclass fields but those
    ``ChainedAggregate.append`` sets itself."""
    return frozenset(f.name for f in dataclass_fields(cls)) - _ENVELOPE_FIELDS


def stock_point_id(sku: str, location: str) -> str:
    return f"sp:{sku}@{location}"


def lot_id(sku: str, lot: str) -> str:
    return f"lot:{sku}/{lot}"


class ChainedAggregate(BaseAggregate[str]):
    """An aggregate whose events each carry ``prev_hash`` and ``hash``."""

    @dataclass(frozen=True)
    class Event(CanMutateAggregate[str]):
        # (topic, stored state bytes) of an event made by ``append``, in a slot so that it is
        # not among the event's attributes (``vars``), which are what a mapper stores.
        __slots__ = ("precoded",)
        originator_id: str
        originator_version: int
        timestamp: datetime
        prev_hash: str
        hash: str

        def apply(self, aggregate: Any) -> None:
            pass

        def mutate(self, aggregate: Any) -> Any:
            aggregate = super().mutate(aggregate)
            aggregate.last_hash = self.hash
            return aggregate

    @dataclass(frozen=True)
    class Fact(Event):
        """An event recording a fact as received: the normalised event, its content
        fingerprint (for de-duplication) and when and by whom it was recorded."""

        event: dict[str, Any]
        fingerprint: str
        recorded_at: str
        recorded_by: str

    @dataclass(frozen=True)
    class Opened(Event, CanInitAggregate[str]):
        originator_topic: str
        key: dict[str, Any]

    def __init__(self, key: dict[str, Any]) -> None:
        self.key = key
        self.last_hash = GENESIS

    @classmethod
    def open(cls, aggregate_id: str, key: dict[str, Any], at: datetime) -> Self:
        """A new stream: its first event, chained to the genesis hash."""
        event = _chained_event(cls.Opened, aggregate_id, cls.INITIAL_VERSION, at, GENESIS,
                               {"key": key, "originator_topic": _topic(cls)})
        agg: Self = event.mutate(None)
        agg._pending_events.append(event)
        return agg

    def append(self, event_class: type[Event], at: datetime, **fields: Any) -> None:
        """Trigger the next event of the stream, chained to the one before it: what
        ``trigger_event`` does (make the event, mutate this aggregate with it, keep it pending),
        with the event made by ``_chained_event``."""
        expected = _own_fields(event_class)
        if fields.keys() != expected:  # what the dataclass's __init__ refused (its stored form too)
            raise TypeError(f"{event_class.__qualname__} takes the fields {sorted(expected)}, "
                            f"not {sorted(fields)}")
        event = _chained_event(event_class, self._id, self._version + 1, at, self.last_hash, fields)
        event.apply(self)
        self._version = event.originator_version
        self._modified_on = at
        self.last_hash = event.hash
        self._pending_events.append(event)


def _chained_event(event_class: type[Any], stream: str, version: int, at: datetime, prev_hash: str,
                   fields: dict[str, Any]) -> Any:
    """An event of a chained stream, made as the dataclass would make it, with its stored state
    encoded once, in the same pass that hashes it (``domain.chain.chained_state``): the store
    writes those bytes (``Event.precoded``) instead of encoding the event again."""
    topic = _topic(event_class)
    state = dict(fields)
    state["timestamp"] = at.isoformat()
    state["prev_hash"] = prev_hash
    h, stored = chained_state(stream, version, topic, state)
    event = object.__new__(event_class)
    attrs = event.__dict__
    attrs["originator_id"] = stream
    attrs["originator_version"] = version
    attrs["timestamp"] = at
    attrs["prev_hash"] = prev_hash
    attrs["hash"] = h
    attrs.update(fields)
    object.__setattr__(event, "precoded", (topic, stored))
    return event


class StockPoint(ChainedAggregate):
    """One SKU at one location: its lots' balances, its open flags and recent history.

    ``effects`` on a recorded fact are the change it makes to each lot's *current* balance,
    decided when it was recorded (a late event older than a count changes nothing now), so
    replay only adds them up; balances as of an earlier instant are folded from the facts
    themselves by ``domain.inventory``.
    """

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)
        self.sku: str = key["sku"]
        self.location: str = key["location"]
        self.site: str = key["site"]
        self.lots: dict[str, float] = {}
        self._negative_lots: set[str] = set()  # the lots of ``lots`` below zero
        self.last_count_at: dict[str, str] = {}
        self.lot_latest: dict[str, str] = {}
        self.latest_occurred_at: str | None = None
        self.flags: set[str] = set()
        self.last_events: deque[dict[str, Any]] = deque(maxlen=LAST_EVENTS_KEPT)
        self.open_alerts: set[str] = set()
        self.override: dict[str, Any] | None = None
        self.override_by: str | None = None
        self.safety_stock: float | None = None
        self.reorder_point: float | None = None
        self.order_up_to: float | None = None
        self.need_open = False
        self.policy: dict[str, Any] | None = None
        self.last_decisions: deque[dict[str, Any]] = deque(maxlen=LAST_EVENTS_KEPT)
        # recall reference -> the units quarantined here for it (lot -> quantity, at the time)
        self.quarantines: dict[str, dict[str, float]] = {}
        self.expiry: dict[str, Any] | None = None  # the last daily expiry check's findings

    @dataclass(frozen=True)
    class Recorded(ChainedAggregate.Fact):
        """A stock fact (usage, receipt, return, waste, transfer side, count) was recorded."""

        moves: list[list[Any]]
        effects: list[list[Any]]
        flags: list[str]

        def apply(self, sp: Any) -> None:
            lots, negative = sp.lots, sp._negative_lots
            for lot, delta in self.effects:
                balance = lots[lot] = lots.get(lot, 0.0) + delta
                if balance < 0:
                    negative.add(lot)
                else:
                    negative.discard(lot)
            event = self.event
            occurred_at = event["occurred_at"]
            etype = event["type"]
            flags = sp.flags
            if etype == "stock_count":
                lot = event.get("lot") or ""
                if occurred_at > sp.last_count_at.get(lot, ""):
                    sp.last_count_at[lot] = occurred_at
                # A count reconciles the books: bookkeeping flags raised before it are settled.
                flags.difference_update(BOOKKEEPING)
            if sp.latest_occurred_at is None or occurred_at > sp.latest_occurred_at:
                sp.latest_occurred_at = occurred_at
            lot_latest = sp.lot_latest
            for _, lot, _ in self.moves:
                if occurred_at > lot_latest.get(lot, ""):
                    lot_latest[lot] = occurred_at
            if negative:  # some lot is below zero (kept up to date above, not re-scanned)
                flags.add("negative_stock")
            else:
                flags.discard("negative_stock")
            if self.flags:
                flags.update(f for f in self.flags if f != "negative_stock")
            sp.last_events.append({"event_id": event["event_id"], "type": etype,
                                   "occurred_at": occurred_at, "recorded_at": self.recorded_at,
                                   "status": "accepted", "flags": self.flags})

    @dataclass(frozen=True)
    class Refused(ChainedAggregate.Fact):
        """An event about this stock point was refused; it changes no stock."""

        errors: list[dict[str, Any]]

        def apply(self, sp: Any) -> None:
            sp.last_events.append({"event_id": self.event.get("event_id"),
                                   "type": self.event.get("type"),
                                   "occurred_at": self.event.get("occurred_at"),
                                   "recorded_at": self.recorded_at, "status": "rejected",
                                   "errors": [e["code"] for e in self.errors]})

    @dataclass(frozen=True)
    class AlertRaised(ChainedAggregate.Event):
        alert: dict[str, Any]

        def apply(self, sp: Any) -> None:
            sp.open_alerts.add(self.alert["id"])

    @dataclass(frozen=True)
    class OverrideSet(ChainedAggregate.Fact):
        """A planner pinned or froze this stock point's policy, or ended an override."""

        def apply(self, sp: Any) -> None:
            sp.override = None if self.event.get("clear") else {
                k: self.event.get(k) for k in ("reorder_point", "order_up_to", "freeze_until", "reason")}
            sp.override_by = self.recorded_by

    @dataclass(frozen=True)
    class Decided(ChainedAggregate.Event):
        """A policy decision (safety stock or reorder point changed, replenishment needed),
        with every number it came from."""

        decision: dict[str, Any]

        def apply(self, sp: Any) -> None:
            d = self.decision
            if d["type"] == "safety_stock_changed":
                sp.safety_stock = d["new"]
            elif d["type"] == "reorder_point_changed":
                sp.reorder_point = d["new"]
                sp.order_up_to = d["order_up_to"]
            elif d["type"] == "replenishment_needed":
                sp.need_open = True
            elif d["type"] == "replenishment_covered":
                sp.need_open = False
            elif d["type"] == "quarantined":
                sp.quarantines[d["reference"]] = dict(d["lots"])
            elif d["type"] == "expiry_checked":
                sp.expiry = d
                return  # daily findings: in ``expiry``, not among the policy decisions
            sp.policy = d.get("policy", sp.policy)
            sp.last_decisions.append(d)

    @dataclass(frozen=True)
    class AlertChanged(ChainedAggregate.Event):
        """An alert was acknowledged or resolved (by a person, or by the system when its
        condition cleared)."""

        alert_id: str
        status: str
        reason: str
        by: str

        def apply(self, sp: Any) -> None:
            if self.status == "resolved":
                sp.open_alerts.discard(self.alert_id)

    @dataclass(frozen=True)
    class AlertRepeated(ChainedAggregate.Event):
        """The condition of an open alert happened again (another refused scan of the same
        recalled lot, say): the alert counts it instead of a new alert being raised."""

        alert_id: str
        event_id: str | None

        def apply(self, sp: Any) -> None:
            pass

    @dataclass(frozen=True)
    class UseFlagged(ChainedAggregate.Event):
        """A use recorded before its lot's recall was known here, of a lot recalled from an
        earlier instant, flagged afterwards (as a case's use of a recalled lot is at intake)."""

        event_id: str
        flags: list[str]
        reason: str

        def apply(self, sp: Any) -> None:
            sp.flags.update(self.flags)

    def record(self, at: datetime, **fields: Any) -> None:
        self.append(self.Recorded, at, **fields)

    def flag_use(self, at: datetime, event_id: str, flags: list[str], reason: str) -> None:
        self.append(self.UseFlagged, at, event_id=event_id, flags=flags, reason=reason)

    def set_override(self, at: datetime, **fields: Any) -> None:
        self.append(self.OverrideSet, at, **fields)

    def decide(self, at: datetime, decision: dict[str, Any]) -> None:
        self.append(self.Decided, at, decision=decision)

    def change_alert(self, at: datetime, alert_id: str, status: str, reason: str, by: str) -> None:
        self.append(self.AlertChanged, at, alert_id=alert_id, status=status, reason=reason, by=by)

    def refuse(self, at: datetime, **fields: Any) -> None:
        self.append(self.Refused, at, **fields)

    def raise_alert(self, at: datetime, alert: dict[str, Any]) -> None:
        self.append(self.AlertRaised, at, alert=alert)

    def repeat_alert(self, at: datetime, alert_id: str, event_id: str | None) -> None:
        self.append(self.AlertRepeated, at, alert_id=alert_id, event_id=event_id)

    def balance(self, lot: str) -> float:
        return self.lots.get(lot, 0.0)


class Lot(ChainedAggregate):
    """A lot of an item: its recorded expiry and status (hold), with each change's reason."""

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)
        self.sku: str = key["sku"]
        self.lot: str = key["lot"]
        self.expiry: str | None = key.get("expiry")
        self.on_hold = False
        self.relabelled_to: str | None = None

    @dataclass(frozen=True)
    class Changed(ChainedAggregate.Fact):
        def apply(self, lot: Any) -> None:
            change = self.event["change"]
            if change == "expiry_corrected":
                lot.expiry = self.event["new_expiry"]
            elif change == "hold":
                lot.on_hold = True
            elif change == "release":
                lot.on_hold = False
            elif change == "relabelled":
                lot.relabelled_to = self.event["new_lot"]

    @dataclass(frozen=True)
    class ExpiryLearned(ChainedAggregate.Event):
        """The lot had no recorded expiry; the first one scanned or received is kept."""

        expiry: str
        event_id: str

        def apply(self, lot: Any) -> None:
            lot.expiry = self.expiry

    def change(self, at: datetime, **fields: Any) -> None:
        self.append(self.Changed, at, **fields)

    def learn_expiry(self, at: datetime, expiry: str, event_id: str) -> None:
        self.append(self.ExpiryLearned, at, expiry=expiry, event_id=event_id)


class Recall(ChainedAggregate):
    """A manufacturer's recall of lots or serials of one item."""

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)
        self.reference: str = key["reference"]
        self.sku: str | None = None
        self.lots: list[str] = []
        self.serials: list[str] = []
        self.is_open = False
        self.issued_at: str | None = None
        self.closed_at: str | None = None
        self.recall_class: str | None = None
        self.issued_event_id: str | None = None
        self.supplier: str | None = None  # as the recall named it (else the item's supplier)
        # location -> confirmed quantities (returned, destroyed, not_found), summed
        self.confirmed: dict[str, dict[str, float]] = {}

    @dataclass(frozen=True)
    class Issued(ChainedAggregate.Fact):
        def apply(self, recall: Any) -> None:
            recall.sku = self.event["sku"]
            recall.lots = list(self.event.get("lots") or [])
            recall.serials = list(self.event.get("serials") or [])
            recall.issued_at = self.event["occurred_at"]
            recall.recall_class = self.event.get("recall_class")
            recall.issued_event_id = self.event.get("event_id")
            recall.supplier = self.event.get("supplier")
            recall.is_open = True

    @dataclass(frozen=True)
    class Closed(ChainedAggregate.Fact):
        def apply(self, recall: Any) -> None:
            recall.is_open = False
            recall.closed_at = self.event["occurred_at"]

    @dataclass(frozen=True)
    class Confirmed(ChainedAggregate.Fact):
        """One location's report of what it did with the recalled units it held."""

        def apply(self, recall: Any) -> None:
            done = recall.confirmed.setdefault(self.event["location"], {})
            for name in ("returned", "destroyed", "not_found"):
                done[name] = done.get(name, 0.0) + float(self.event.get(name) or 0)

    def confirm(self, at: datetime, **fields: Any) -> None:
        self.append(self.Confirmed, at, **fields)

    def issue(self, at: datetime, **fields: Any) -> None:
        self.append(self.Issued, at, **fields)

    def close(self, at: datetime, **fields: Any) -> None:
        self.append(self.Closed, at, **fields)


class MasterRecord(ChainedAggregate):
    """An item, location or supplier registration; each re-registration is an update."""

    KINDS: ClassVar[tuple[str, ...]] = ("item", "location", "supplier")

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)
        self.kind: str = key["kind"]
        self.current: dict[str, Any] | None = None

    @dataclass(frozen=True)
    class Registered(ChainedAggregate.Fact):
        def apply(self, record: Any) -> None:
            record.current = self.event

    def register(self, at: datetime, **fields: Any) -> None:
        self.append(self.Registered, at, **fields)


class SurgicalCase(ChainedAggregate):
    """A surgical case on the OR schedule (id: its pseudonymised case id)."""

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)
        self.case_id: str = key["case_id"]
        self.procedure: str | None = None
        self.location: str | None = None
        self.scheduled_for: str | None = None
        self.status = "unscheduled"

    @dataclass(frozen=True)
    class Changed(ChainedAggregate.Fact):
        def apply(self, case: Any) -> None:
            e = self.event
            if e["type"] == "surgery_scheduled":
                case.procedure, case.location = e["procedure"], e["location"]
                case.scheduled_for, case.status = e["scheduled_for"], "scheduled"
            elif e["type"] == "surgery_cancelled":
                case.status = "cancelled"
            else:
                case.procedure = case.procedure or e.get("procedure")
                case.status = "completed"

    def change(self, at: datetime, **fields: Any) -> None:
        self.append(self.Changed, at, **fields)


class PurchaseOrder(ChainedAggregate):
    """A purchase order (from an ERP, or from an approved requisition): lines in base units,
    each delivered to its own location (the order's by default); then what the supplier
    acknowledged and shipped, and the inspections of what it delivered."""

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)
        self.po_id: str = key["po_id"]
        self.supplier: str | None = None
        self.location: str | None = None
        self.issued_at: str | None = None
        self.expected_at: str | None = None
        self.lines: dict[str, float] = {}  # sku -> quantity ordered (all locations)
        self.line_rows: list[dict[str, Any]] = []  # as issued: sku, location, quantity, unit_price
        self.bill_only = False
        self.requisition_id: str | None = None
        self.acknowledged: dict[str, dict[str, Any]] = {}  # sku -> confirmed, backordered, date
        self.shipped_expected_at: str | None = None

    @dataclass(frozen=True)
    class Issued(ChainedAggregate.Fact):
        def apply(self, po: Any) -> None:
            e = self.event
            po.supplier, po.location = e["supplier"], e["location"]
            po.issued_at, po.expected_at = e["occurred_at"], e.get("expected_at")
            po.lines = {}
            for line in e["lines"]:
                po.lines[line["sku"]] = po.lines.get(line["sku"], 0.0) + line["quantity"]
            po.line_rows = [dict(line, location=line.get("location") or e["location"]) for line in e["lines"]]
            po.bill_only = bool(e.get("bill_only"))
            po.requisition_id = e.get("requisition_id")

    @dataclass(frozen=True)
    class Acknowledged(ChainedAggregate.Fact):
        """The supplier confirmed the order, perhaps with some lines backordered to a date."""

        def apply(self, po: Any) -> None:
            for line in self.event.get("lines") or []:
                po.acknowledged[line["sku"]] = dict(line)

    @dataclass(frozen=True)
    class Shipped(ChainedAggregate.Fact):
        """The supplier shipped (all or part of) the order, expected at ``expected_at``."""

        def apply(self, po: Any) -> None:
            po.shipped_expected_at = self.event.get("expected_at") or po.shipped_expected_at

    @dataclass(frozen=True)
    class Inspected(ChainedAggregate.Fact):
        """A delivered batch was inspected: units accepted and rejected, and why."""

    def issue(self, at: datetime, **fields: Any) -> None:
        self.append(self.Issued, at, **fields)

    def acknowledge(self, at: datetime, **fields: Any) -> None:
        self.append(self.Acknowledged, at, **fields)

    def ship(self, at: datetime, **fields: Any) -> None:
        self.append(self.Shipped, at, **fields)

    def inspect(self, at: datetime, **fields: Any) -> None:
        self.append(self.Inspected, at, **fields)


class SupplyTerms(ChainedAggregate):
    """One supplier's terms for one item (id ``terms:<supplier>/<sku>``): its contracts
    (price, price breaks, minimum order, promised lead time, validity) and quotes."""

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)
        self.supplier: str = key["supplier"]
        self.sku: str = key["sku"]
        self.contracts: list[dict[str, Any]] = []
        self.quotes: list[dict[str, Any]] = []

    @dataclass(frozen=True)
    class Contracted(ChainedAggregate.Fact):
        def apply(self, terms: Any) -> None:
            ref = self.event.get("contract_id")
            terms.contracts = [c for c in terms.contracts if ref is None or c.get("contract_id") != ref]
            terms.contracts.append(self.event)

    @dataclass(frozen=True)
    class Quoted(ChainedAggregate.Fact):
        def apply(self, terms: Any) -> None:
            terms.quotes.append(self.event)
            del terms.quotes[:-LAST_EVENTS_KEPT]

    @dataclass(frozen=True)
    class Inspected(ChainedAggregate.Fact):
        """An inspection of a delivered batch that named no purchase order."""

    def contract(self, at: datetime, **fields: Any) -> None:
        self.append(self.Contracted, at, **fields)

    def inspect(self, at: datetime, **fields: Any) -> None:
        self.append(self.Inspected, at, **fields)

    def quote(self, at: datetime, **fields: Any) -> None:
        self.append(self.Quoted, at, **fields)


def requisition_stream(requisition_id: str) -> str:
    return f"req:{requisition_id}"


class Requisition(ChainedAggregate):
    """A purchase requisition (lines of one supplier for one site) or a transfer request (lines
    for one location from the location that restocks it): raised by the system from
    replenishment needs, approved or rejected by people (or automatically), then ordered."""

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)
        self.requisition_id: str = key["requisition_id"]
        self.kind: str = key["kind"]  # purchase, consignment or transfer
        self.supplier: str | None = key.get("supplier")
        self.site: str = key["site"]
        self.source: str | None = key.get("source")  # a transfer's source location
        self.status = "collecting"
        self.lines: list[dict[str, Any]] = []
        self.value = 0.0
        self.needs_buyer: list[str] = []
        self.approvals_needed = 1
        self.approvals: list[dict[str, Any]] = []
        self.rejection: dict[str, Any] | None = None
        self.po_id: str | None = None
        self.raised_at: str | None = None
        self.window_until: str | None = None

    @dataclass(frozen=True)
    class LineAdded(ChainedAggregate.Event):
        """A need joined the requisition: its line, with the candidates and their scores."""

        line: dict[str, Any]
        window_until: str

        def apply(self, req: Any) -> None:
            req.lines.append(self.line)
            req.value += float(self.line.get("value") or 0.0)
            req.raised_at = req.raised_at or self.line["decided_at"]
            req.window_until = self.window_until

    @dataclass(frozen=True)
    class Submitted(ChainedAggregate.Event):
        """The ordering window closed: the requisition waits for a buyer, or was approved."""

        status: str
        needs_buyer: list[str]
        approvals_needed: int

        def apply(self, req: Any) -> None:
            req.status, req.needs_buyer = self.status, list(self.needs_buyer)
            req.approvals_needed = self.approvals_needed

    @dataclass(frozen=True)
    class Approved(ChainedAggregate.Event):
        by: str
        role: str
        reason: str
        status: str  # after this approval: awaiting_second_approval or approved

        def apply(self, req: Any) -> None:
            req.approvals.append({"by": self.by, "role": self.role, "reason": self.reason,
                                  "at": self.timestamp.isoformat()})
            req.status = self.status

    @dataclass(frozen=True)
    class Rejected(ChainedAggregate.Event):
        by: str
        role: str
        reason: str

        def apply(self, req: Any) -> None:
            req.rejection = {"by": self.by, "role": self.role, "reason": self.reason,
                             "at": self.timestamp.isoformat()}
            req.status = "rejected"

    @dataclass(frozen=True)
    class Ordered(ChainedAggregate.Event):
        po_id: str

        def apply(self, req: Any) -> None:
            req.po_id, req.status = self.po_id, "ordered"

    @dataclass(frozen=True)
    class Fulfilled(ChainedAggregate.Event):
        """A transfer request's units all arrived (by the transfers named)."""

        event_ids: list[str]

        def apply(self, req: Any) -> None:
            req.status = "fulfilled"

    def add_line(self, at: datetime, line: dict[str, Any], window_until: str) -> None:
        self.append(self.LineAdded, at, line=line, window_until=window_until)

    def submit(self, at: datetime, status: str, needs_buyer: list[str], approvals_needed: int) -> None:
        self.append(self.Submitted, at, status=status, needs_buyer=needs_buyer,
                    approvals_needed=approvals_needed)

    def approve(self, at: datetime, by: str, role: str, reason: str, status: str) -> None:
        self.append(self.Approved, at, by=by, role=role, reason=reason, status=status)

    def reject(self, at: datetime, by: str, role: str, reason: str) -> None:
        self.append(self.Rejected, at, by=by, role=role, reason=reason)

    def order(self, at: datetime, po_id: str) -> None:
        self.append(self.Ordered, at, po_id=po_id)

    def fulfil(self, at: datetime, event_ids: list[str]) -> None:
        self.append(self.Fulfilled, at, event_ids=event_ids)


class SupplierScorecard(ChainedAggregate):
    """A supplier's scorecard (id ``scorecard:<supplier>``): each change of its score with the
    rates it came from, and the notices about the supplier (review needed, contract breach,
    purchase order issued), raised and changed like a stock point's alerts."""

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)
        self.supplier: str = key["supplier"]
        self.card: dict[str, Any] | None = None
        self.open_alerts: set[str] = set()

    @dataclass(frozen=True)
    class Scored(ChainedAggregate.Event):
        card: dict[str, Any]

        def apply(self, sc: Any) -> None:
            sc.card = self.card

    @dataclass(frozen=True)
    class AlertRaised(ChainedAggregate.Event):
        alert: dict[str, Any]

        def apply(self, sc: Any) -> None:
            sc.open_alerts.add(self.alert["id"])

    @dataclass(frozen=True)
    class AlertChanged(ChainedAggregate.Event):
        alert_id: str
        status: str
        reason: str
        by: str

        def apply(self, sc: Any) -> None:
            if self.status == "resolved":
                sc.open_alerts.discard(self.alert_id)

    def score(self, at: datetime, card: dict[str, Any]) -> None:
        self.append(self.Scored, at, card=card)

    def raise_alert(self, at: datetime, alert: dict[str, Any]) -> None:
        self.append(self.AlertRaised, at, alert=alert)

    def change_alert(self, at: datetime, alert_id: str, status: str, reason: str, by: str) -> None:
        self.append(self.AlertChanged, at, alert_id=alert_id, status=status, reason=reason, by=by)


class RefusalLog(ChainedAggregate):
    """Refusals that belong to no known stock point (unknown item or location, malformed)."""

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)

    @dataclass(frozen=True)
    class Refused(ChainedAggregate.Fact):
        event: Any
        errors: list[dict[str, Any]]

    def refuse(self, at: datetime, **fields: Any) -> None:
        self.append(self.Refused, at, **fields)


class ReferenceWait(ChainedAggregate):
    """Events of one Kafka key (a stock point's ``sku@location``, a case's, an order's; id
    ``wait:<key>``) parked by a worker because the reference data they were sent after (an
    item, a location, a supplier) is not stored yet: the ``reference_wait`` alert, raised
    while they wait and resolved when they resume (distributed profile; README, "Causal
    order"). The parked messages themselves are kept outside the log until then
    (``streams.parking``)."""

    def __init__(self, key: dict[str, Any]) -> None:
        super().__init__(key)
        self.wait_key: str = key["key"]
        self.open_alerts: set[str] = set()

    @dataclass(frozen=True)
    class AlertRaised(ChainedAggregate.Event):
        alert: dict[str, Any]

        def apply(self, rw: Any) -> None:
            rw.open_alerts.add(self.alert["id"])

    @dataclass(frozen=True)
    class AlertChanged(ChainedAggregate.Event):
        alert_id: str
        status: str
        reason: str
        by: str

        def apply(self, rw: Any) -> None:
            if self.status == "resolved":
                rw.open_alerts.discard(self.alert_id)

    def raise_alert(self, at: datetime, alert: dict[str, Any]) -> None:
        self.append(self.AlertRaised, at, alert=alert)

    def change_alert(self, at: datetime, alert_id: str, status: str, reason: str, by: str) -> None:
        self.append(self.AlertChanged, at, alert_id=alert_id, status=status, reason=reason, by=by)
