"""The processor: one transport-agnostic entry point that takes a batch of events and
returns what happened to each, plus the alerts raised.

It keeps the write model (``domain.intake.Ledger``) in memory, rebuilt from the store at
start, decides each event in order with ``domain.intake.Intake`` and appends everything the
batch produced in one store transaction. An answer exists only once that transaction has
committed; if it fails, the in-memory model is rebuilt from the store, so nothing is half-done.

Several processors may share one store (Kafka workers, each owning some stock points): each
keeps in step with what the others stored by ``follow``ing the notification log, and writes its
consumed offsets as tracking records in the transaction of the events they produced.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

import orjson
from eventsourcing.persistence import Tracking

from domain import codes as c
from domain.aggregates import (
    Lot,
    Recall,
    Requisition,
    StockPoint,
    lot_id,
    requisition_stream,
    stock_point_id,
)
from domain.chain import BrokenLink, ChainVerifier
from domain.events import MAX_EVENT_AGE, FieldError, iso_utc, parse_date, parse_instant
from domain.expiry import is_expired
from domain.intake import Intake, Ledger, Outcome, Principal, TransactionCheck
from domain.inventory import Moves, fold_balances, inventory_position
from domain.shelf import expiry_findings, fefo
from streams.parking import ParkingChanges
from streams.planning import MODEL_VERSION, SYSTEM, Planner, PlanningSettings
from streams.procurement import ApprovalError, ProcurementSettings, Purchasing, requisition_view
from streams.snapshots import Snapshot
from streams.store import EventStore

Clock = Callable[[], datetime]
T = TypeVar("T")
log = logging.getLogger(__name__)
# The model of a big store is millions of long-lived objects: a full garbage collection walks
# them all (2.2 s at 1,000,000 stored events, bench/trace.py) for nothing. Once this many events
# were replayed or stored since the last time, the objects are moved out of the collector's
# reach (``gc.freeze``; reference counting still frees them).
FREEZE_AFTER_EVENTS = 10_000
MAX_SETTLE_ROUNDS = 8  # need -> requisition -> order -> covered takes four


# The young generation is collected every this many new container objects (Python's default:
# 700). A batch makes thousands, nearly all freed by reference counting: at 700 the collector ran
# every ~50 events and took ~10% of ingest; at 10,000 a collection walks ~10,000 objects (about a
# millisecond) and the share is ~2% (bench/README.md, "Where the time goes").
YOUNG_GENERATION_THRESHOLD = 10_000


def tune_collector() -> None:
    """Set a long-running ingest process's garbage collector up, once start-up is done: collect
    what start-up left, move the rest (modules, the rebuilt model, clients) out of the
    collector's reach (``gc.freeze``: a full collection walked all of it, pausing answers by
    65-95 ms), and collect the young generation less often (``YOUNG_GENERATION_THRESHOLD``)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)


def utc_now() -> datetime:
    return datetime.now(UTC)


def owns_everything(stock_point: str) -> bool:
    return True


@dataclass
class BatchResult:
    outcomes: list[Outcome]
    alerts: list[dict[str, Any]]
    stored: int


class NotWhole(Exception):
    """An all-or-nothing batch in which an event was refused (``Processor.process(whole=True)``):
    nothing of it was stored."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        super().__init__(f"{sum(o.status == c.REJECTED for o in outcomes)} events refused")
        self.outcomes = outcomes


class DecisionCheck(NamedTuple):
    """What ``Processor.check_decisions`` found."""

    checked: int
    differences: list[dict[str, Any]]
    skipped: int  # decisions made by another model version (not re-evaluated)


class Processor:
    def __init__(self, store: EventStore, case_id_key: bytes,
                 late_after: timedelta = timedelta(hours=1), clock: Clock = utc_now,
                 planning: PlanningSettings | None = None,
                 procurement: ProcurementSettings | None = None,
                 max_event_age: timedelta = MAX_EVENT_AGE, snapshot: Snapshot | None = None) -> None:
        self.store = store
        self.case_id_key = case_id_key
        self.late_after = late_after
        self.max_event_age = max_event_age
        self.clock = clock
        self.planning = planning or PlanningSettings()
        self.procurement = procurement or ProcurementSettings()
        self.ledger = Ledger()
        self.intake = self._new_intake(self.ledger)
        self.planner = Planner(self.ledger, self.planning)
        self.purchasing = Purchasing(self.ledger, self.planner, self.procurement)
        # The stock points this processor writes for (a Kafka worker's: its partitions').
        self.owns: Callable[[str], bool] = owns_everything
        self.position = 0  # the last notification of the log that the model has applied
        self._own: set[int] = set()  # notifications of ours stored after others' not yet applied
        self._recheck: set[str] = set()  # stock points to check against open recalls
        self.posted_by: dict[str, str] = {}  # event id -> the principal who posted it
        self._unfrozen = 0  # events stored or replayed since the model was last frozen
        self._deferred: dict[str, str | None] | None = None  # stock points to decide after the batch
        self.restored_from: Snapshot | None = None
        self._stale = False  # a failed batch left the model ahead of the store: rebuild first
        if snapshot is None or not self.restore(snapshot):
            self.rebuild()

    def _recover(self) -> None:
        """After a batch that was not stored: the model back to what the store holds. When the
        store cannot be read either (still down), the model is marked stale and rebuilt before
        anything else is processed or followed, so nothing unstored is ever taken as seen."""
        try:
            self.rebuild()
            self._stale = False
        except BaseException:
            self._stale = True
            log.warning("the model could not be rebuilt after a failed batch; it will be before the next one")

    def _fresh(self) -> None:
        if self._stale:
            self.rebuild()
            self._stale = False

    def _new_intake(self, ledger: Ledger) -> Intake:
        return Intake(ledger, self.case_id_key, self.late_after, self._history, self.max_event_age)

    # -- write side -------------------------------------------------------------------
    def process(self, items: Iterable[tuple[Any, Principal]],
                tracking: Sequence[Tracking] = (), *,
                waiting: Mapping[str, tuple[int, int, int]] | None = None,
                resumed: Mapping[str, int] | None = None,
                parking: ParkingChanges | None = None, whole: bool = False) -> BatchResult:
        """Decide and store a batch of (raw event, principal) in order; ``tracking`` (the
        positions consumed, one per Kafka topic-partition) is stored in the same transaction.
        A Kafka worker's causal order (``streams.parking``): ``waiting``, the keys whose events
        it parked in this batch (events parked, reference offset needed, stored), each raises
        ``reference_wait`` once; ``resumed``, the keys whose parked events are in ``items``
        (how many), resolves theirs; ``parking``, the events parked and resumed, stored in
        the same transaction."""
        self._fresh()
        now = self.clock()
        try:
            if self.purchasing.enabled and self.ledger.collecting:
                mark = len(self.intake.recorded)
                self.purchasing.release_due(self.intake, now)
                self._settle(mark, now, None)
            # Policies are decided once per stock point, after the batch's facts (its last
            # event the cause): what a batch changes is decided from the state it leaves.
            self._deferred = {}
            outcomes = [self._handle(raw, principal, now) for raw, principal in items]
            if whole and any(o.status == c.REJECTED for o in outcomes):
                raise NotWhole(outcomes)  # (nothing stored: the model is rebuilt below)
            deferred, self._deferred = self._deferred, None
            if deferred:
                mark = len(self.intake.recorded)
                for sp_id, cause in deferred.items():
                    self.planner.decide(sp_id, self.intake, now, cause)
                self._settle(mark, now, None)
            if self._recheck:
                self._quarantine(now)
                self._flag_recalled_uses(now)
            for key, (parked, needed, stored) in (waiting or {}).items():
                self.intake.reference_wait(key, parked, needed, stored, now)
            for key, n in (resumed or {}).items():
                self.intake.reference_arrived(key, n, now)
            recorded, touched, alerts = self.intake.take_changes()
            if recorded or tracking or parking:
                self._stored(self.store.append(recorded, tracking, parking))
            for agg in touched:
                agg.collect_events()  # saved above, in the order they were decided
            self._recheck.clear()
            for event in recorded:
                self._note_poster(event)
        except BaseException:
            self._deferred = None
            self._recover()
            raise
        self._maybe_freeze(len(recorded))
        return BatchResult(outcomes, alerts, len(recorded))

    def precheck(self, items: Sequence[tuple[Any, Principal]]) -> list[list[dict[str, Any]]]:
        """The refusals each event of an all-or-nothing submission would get now, in order
        (``Intake.precheck``); nothing is recorded."""
        self._fresh()
        now = self.clock()
        seen = TransactionCheck()
        return [[e.as_dict() for e in self.intake.precheck(raw, principal, now, seen)] for raw, principal in items]

    def process_all_or_nothing(self, items: Sequence[tuple[Any, Principal]]
                               ) -> tuple[bool, list[Outcome | None], list[dict[str, Any]]]:
        """Store every event of ``items``, or, when one would be refused (``precheck``), only
        the refusals (each stored as every refusal is) and nothing else: (whether all were
        stored, each event's outcome or None when it was not stored, the alerts raised)."""
        refusals = self.precheck(items)
        if not any(refusals):
            try:
                result = self.process(items, whole=True)
                return True, list(result.outcomes), result.alerts
            except NotWhole as exc:
                # An event refused for what another of the submission changes (a usage of a
                # lot whose expiry its receipt brought): nothing was stored and the model was
                # rebuilt from the store; the refusals found are recorded as found.
                whole: list[Outcome | None] = [None] * len(items)
                found = {i: o.errors for i, o in enumerate(exc.outcomes) if o.status == c.REJECTED}
                return False, self._record_refusals(items, found, whole), []
        outcomes: list[Outcome | None] = [None] * len(items)
        # A refusal that comes from the rest of the submission (an id used twice in it for
        # other content) is recorded as found: alone, the event would be taken. The others
        # are handled as every event is (their alerts raised), which refuses them again.
        within = {i: r for i, r in enumerate(refusals)
                  if any(e["code"] == c.EVENT_ID_REUSED for e in r) and _unstored_id(items[i][0], self.ledger)}
        handled = [i for i, r in enumerate(refusals) if r and i not in within]
        result = self.process([items[i] for i in handled])
        for i, o in zip(handled, result.outcomes, strict=True):
            outcomes[i] = o
        return False, self._record_refusals(items, within, outcomes), result.alerts

    def _record_refusals(self, items: Sequence[tuple[Any, Principal]], found: Mapping[int, list[dict[str, Any]]],
                         outcomes: list[Outcome | None]) -> list[Outcome | None]:
        """Store the refusals ``found`` (item index -> errors) as found, in one transaction,
        each outcome put in its place in ``outcomes``."""
        if found:
            now = self.clock()
            stored, _, _ = self._store_changes(lambda: [
                self.intake.refuse(items[i][0], items[i][1], now, [FieldError(**e) for e in errors])
                for i, errors in found.items()])
            for i, o in zip(found, stored, strict=True):
                outcomes[i] = o
        return outcomes

    def _maybe_freeze(self, events: int) -> None:
        self._unfrozen += events
        if self._unfrozen >= FREEZE_AFTER_EVENTS:
            gc.freeze()
            self._unfrozen = 0

    def _handle(self, raw: Any, principal: Principal, now: datetime) -> Outcome:
        """Decide one event, let the models learn from what it stored, and note the stock
        points it may have moved (their policy is decided after the batch's facts, within the
        batch's transaction)."""
        mark = len(self.intake.recorded)
        outcome = self.intake.handle(raw, principal, now)
        self._settle(mark, now, outcome.event_id)
        return outcome

    def _settle(self, mark: int, now: datetime, cause: str | None) -> None:
        """Learn from the events recorded since ``mark``, let procurement act on them, and
        decide the policy of each stock point they may have moved; again for what that
        recorded, until nothing new follows."""
        recorded = self.intake.recorded
        for _ in range(MAX_SETTLE_ROUNDS):
            if mark >= len(recorded):
                return
            wave, mark = recorded[mark:], len(recorded)
            affected: dict[str, None] = {}
            for event in wave:
                for sp_id in self.planner.learn(event):
                    affected[sp_id] = None
                for sp_id in self.purchasing.learn(event):
                    affected[sp_id] = None
                if isinstance(event, Recall.Issued):
                    self._recall_known(event)
                for sp_id in self._lot_holders(event):
                    affected[sp_id] = None
            if self.purchasing.enabled:
                for event in wave:
                    self.purchasing.act(event, self.intake, now, cause)
            for sp_id in affected:
                if not self.owns(sp_id):  # (the API's model on the distributed profile owns none)
                    continue
                if self._deferred is not None:  # within ``process``: decided after the batch
                    self._deferred.pop(sp_id, None)
                    self._deferred[sp_id] = cause
                else:
                    self.planner.decide(sp_id, self.intake, now, cause)
        raise RuntimeError(f"event {cause}: decisions kept following each other after "
                           f"{MAX_SETTLE_ROUNDS} rounds")

    def rebuild(self) -> int:
        """Rebuild the write model and the online models from the notification log, in
        recording order; returns the number of events replayed."""
        ledger = Ledger()
        planner = Planner(ledger, self.planning)
        purchasing = Purchasing(ledger, planner, self.procurement)
        to_domain = self.store.mapper.to_domain_event
        posted_by: dict[str, str] = {}
        n, position = 0, 0
        for notification in self.store.notifications():
            event = to_domain(notification)
            ledger.replay(event)
            planner.learn(event)
            purchasing.learn(event)
            _note_poster(posted_by, event)
            n += 1
            position = notification.id
        purchasing.queued.clear()  # what the log held at start was acted on when it was stored
        self.ledger, self.planner, self.purchasing, self.posted_by = ledger, planner, purchasing, posted_by
        self.intake = self._new_intake(ledger)
        self.position, self._own = position, set()
        self._unfrozen = 0
        self._maybe_freeze(n)
        return n

    def snapshot_state(self) -> dict[str, Any]:
        """The derived state to snapshot (``streams.snapshots``), as of ``position``: the
        ledger, the planner's and purchasing's models, who posted each event, and the stored
        event at ``position`` (so that a snapshot is only used with the store it came from)."""
        return {"ledger": self.ledger, "planner": self.planner, "purchasing": self.purchasing,
                "posted_by": self.posted_by, "position": self.position, "anchor": self._anchor(self.position)}

    def _anchor(self, position: int) -> list[Any] | None:
        page = self.store.recorder.select_notifications(start=position, limit=1) if position else []
        return [page[0].originator_id, page[0].originator_version] if page and page[0].id == position else None

    def restore(self, snapshot: Snapshot) -> bool:
        """Take the state of ``snapshot`` and follow the log after it; False (nothing changed)
        when it was not made over this store (its anchor event is not where it says)."""
        state = snapshot.state
        if not isinstance(state, dict) or state.get("position") != snapshot.position or \
                state.get("anchor") != self._anchor(snapshot.position):
            log.warning("snapshot %s ignored: it was not made over this store", snapshot.path.name)
            return False
        ledger, planner, purchasing = state["ledger"], state["planner"], state["purchasing"]
        planner.settings, purchasing.settings = self.planning, self.procurement  # today's settings
        self.ledger, self.planner, self.purchasing = ledger, planner, purchasing
        self.posted_by = state["posted_by"]
        self.intake = self._new_intake(ledger)
        self.position, self._own = snapshot.position, set()
        self.restored_from = snapshot
        self.follow()
        self.purchasing.queued.clear()  # what the log held at start was acted on when it was stored
        self._unfrozen = 0
        self._maybe_freeze(FREEZE_AFTER_EVENTS)
        return True

    def follow(self) -> int:
        """Apply what other processors stored since the model last saw the log, in recording
        order (the same code as ``rebuild``); returns the number of their events applied.

        A recall among them makes this processor check the uses it stored of the recalled lot
        (in its next ``process``): one recorded before the recall was known is flagged then."""
        self._fresh()
        to_domain = self.store.mapper.to_domain_event
        n = 0
        for notification in self.store.notifications(start=self.position + 1):
            if notification.id in self._own:
                self._own.discard(notification.id)
            else:
                event = to_domain(notification)
                self.ledger.replay(event)
                self.planner.learn(event)
                self.purchasing.learn(event)
                self._note_poster(event)
                if isinstance(event, Recall.Issued):
                    self._recall_known(event)
                n += 1
            self.position = notification.id
        return n

    def _stored(self, ids: list[int]) -> None:
        """Keep ``position`` at the end of the log when nobody else stored in between
        (``ids``: the notification ids of what was just stored)."""
        if not ids:
            return
        if ids[0] == self.position + 1 and ids[-1] - ids[0] == len(ids) - 1 and not self._own:
            self.position = ids[-1]
        else:
            self._own.update(ids)

    def _note_poster(self, event: Any) -> None:
        _note_poster(self.posted_by, event)

    # -- recalls known after the uses they cover ---------------------------------------
    def recheck_recalls(self, stock_points: Iterable[str] | None = None) -> int:
        """Mark stock points (default: every one this processor owns) to be checked against the
        open recalls in the next ``process``; returns how many were marked."""
        ids = self.ledger.streams if stock_points is None else stock_points
        marked = 0
        for sp_id in ids:
            sp = self.ledger.streams.get(sp_id)
            if isinstance(sp, StockPoint) and self.owns(sp_id) and any(
                    self.ledger.recalled_lots.get((sp.sku, lot)) for lot in sp.lots):
                self._recheck.add(sp_id)
                marked += 1
        return marked

    @property
    def rechecks_pending(self) -> bool:
        return bool(self._recheck)

    def _recall_known(self, event: Any) -> None:
        sku = event.event["sku"]
        lots = set(event.event.get("lots") or ())
        serial_recall = bool(event.event.get("serials"))
        for sp_id, sp in self.ledger.streams.items():
            if (isinstance(sp, StockPoint) and sp.sku == sku and self.owns(sp_id)
                    and (serial_recall or lots & sp.lots.keys())):
                self._recheck.add(sp_id)
        # Where the lots were relabelled to (the relabel is recorded under both lots).
        for lot in lots:
            self._recheck.update(sp_id for sp_id in self.ledger.trace.points.get((sku, lot), ())
                                 if self.owns(sp_id))

    def _lot_holders(self, event: Any) -> list[str]:
        """The stock points whose usable stock a lot event changes (a recall, a hold): their
        policy is decided again. A recalled lot arriving somewhere is quarantined there too."""
        ledger = self.ledger
        if isinstance(event, StockPoint.Recorded):
            sku = str(event.event.get("sku"))
            if ledger.recalled_lots and any(q > 0 and ledger.recall_refs(sku, lot)
                                            for _, lot, q in event.moves):
                self._recheck.add(event.originator_id)
            return []
        if isinstance(event, Recall.Issued | Recall.Closed | Lot.Changed):
            agg = ledger.streams.get(event.originator_id)
            sku = str(getattr(agg, "sku", ""))
            lots = agg.lots if isinstance(agg, Recall) else [getattr(agg, "lot", "")]
            return sorted({sp_id for lot in lots for sp_id in ledger.trace.points.get((sku, lot), ())
                           if self.owns(sp_id)})
        return []

    def _quarantine(self, now: datetime) -> None:
        """Quarantine, by a decision event per stock point, every unit of an open recall that
        the stock points to recheck hold (once per recall, again only if more arrive)."""
        ledger = self.ledger
        serials_at: dict[str, list[tuple[str, str, str]]] = {}
        for (sku, serial), refs in ledger.recalled_serials.items():
            unit = ledger.trace.serials.get((sku, serial))
            if refs and unit and unit["state"] == "in_stock":
                for ref in refs:
                    serials_at.setdefault(stock_point_id(sku, unit["location"]), []).append(
                        (ref, unit["lot"] or "", serial))
        for sp_id in sorted(self._recheck):
            sp = ledger.streams.get(sp_id)
            if not isinstance(sp, StockPoint) or not self.owns(sp_id):
                continue
            by_ref: dict[str, dict[str, float]] = {}
            serials: dict[str, list[str]] = {}
            for lot, q in sp.lots.items():
                if q > 0 and lot:
                    for ref in ledger.recall_refs(sp.sku, lot):
                        by_ref.setdefault(ref, {})[lot] = q
            for ref, lot, serial in serials_at.get(sp_id, ()):
                lots = by_ref.setdefault(ref, {})
                lots[lot] = lots.get(lot, 0.0) + 1.0
                serials.setdefault(ref, []).append(serial)
            for ref in sorted(by_ref):
                lots = by_ref[ref]
                before = sp.quarantines.get(ref)
                if before is not None and all(q <= before.get(lot, 0.0) for lot, q in lots.items()):
                    continue
                recall = ledger.streams.get(f"recall:{ref}")
                if isinstance(recall, Recall) and recall.is_open:
                    self.intake.quarantine(sp, recall, dict(sorted(lots.items())),
                                           sorted(serials.get(ref, [])), recall.issued_event_id, now)

    def daily_check(self, now: datetime | None = None) -> BatchResult:
        """The daily expiry check of every stock point this processor owns (``domain.shelf``):
        its findings are stored as an ``expiry_checked`` decision when they change, and raise
        (or resolve) ``expired_on_shelf`` and ``expiry_risk`` alerts, so replay sees them."""
        now = now or self.clock()

        def check() -> None:
            for sp_id in sorted(self.ledger.streams):
                sp = self.ledger.streams[sp_id]
                if isinstance(sp, StockPoint) and self.owns(sp_id):
                    self._expiry_check(sp, now)

        _, alerts, n = self._store_changes(check)
        return BatchResult([], alerts, n)

    def _shelf(self, sp: StockPoint, now: datetime) -> tuple[list[tuple[str, float, str | None, str]], date]:
        loc = self.ledger.catalog.location(sp.location, now)
        tz = loc.timezone if loc else "UTC"
        rows = []
        for lot, q in sorted(sp.lots.items()):
            if q > 0:
                agg = self.ledger.lot(sp.sku, lot) if lot else None
                rows.append((lot, q, agg.expiry if agg else None,
                             self.ledger.lot_status(sp.sku, lot, now, tz)))
        return rows, now.astimezone(ZoneInfo(tz)).date()

    def _expiry_check(self, sp: StockPoint, now: datetime) -> None:
        rows, today = self._shelf(sp, now)
        prev = sp.expiry or {}
        if not rows and not prev.get("expired_on_shelf") and not prev.get("expiry_risk"):
            return
        item = self.ledger.catalog.item(sp.sku, now)
        model = self.planner.models.get(sp.id)
        rate = model.estimate().mean if model is not None else 0.0
        found = expiry_findings(rows, today, rate, item.unit_cost if item else None)
        kinds = (("expired_on_shelf", c.ALERT_EXPIRED_ON_SHELF), ("expiry_risk", c.ALERT_EXPIRY_RISK))
        if any(found[k] != prev.get(k, []) for k, _ in kinds):
            self.intake.record_decision(sp, {
                "type": "expiry_checked", "sku": sp.sku, "location": sp.location,
                "day": today.isoformat(), "decided_at": iso_utc(now), "demand_per_day": rate,
                "unit_cost": item.unit_cost if item else None, **found}, now)
        for key, kind in kinds:
            now_lots = {r["lot"] or "" for r in found[key]}
            for r in found[key]:
                lot = r["lot"] or ""
                what = (f"{r['quantity']:g} of lot {lot} expired on {r['expiry']} and is still on the shelf"
                        if key == "expired_on_shelf" else
                        f"{r['at_risk']:g} of lot {lot} will expire on {r['expiry']} before it is used")
                value = f" (value at cost {r['value_at_cost']:g})" if r["value_at_cost"] is not None else ""
                self.intake._alert(sp, kind, {"event_id": f"expiry-check:{today}:{lot}"}, now,
                                   f"{sp.sku} at {sp.location}: {what}{value}", lot or None, dedupe=True)
            for r in prev.get(key, []):
                lot = r["lot"] or ""
                open_id = self.ledger.open_alert_keys.get((sp.id, kind, lot))
                if lot not in now_lots and open_id is not None:
                    self.intake.change_alert(open_id, "resolved", "condition cleared", SYSTEM, now)

    def _flag_recalled_uses(self, now: datetime) -> None:
        """Flag each use, stored before its recall was known, of a lot or serial recalled from
        an instant at or before the use (``Intake.flag_recalled_use``)."""
        ledger = self.ledger
        for sp_id in sorted(self._recheck):
            sp = ledger.streams.get(sp_id)
            if not isinstance(sp, StockPoint) or not self.owns(sp_id):
                continue
            events = [*self.store.stream(sp_id), *sp.pending_events]
            flagged = {e.event_id for e in events if isinstance(e, StockPoint.UseFlagged)}
            for e in events:
                if not isinstance(e, StockPoint.Recorded) or e.event["type"] != "usage":
                    continue
                use = e.event
                if use["event_id"] in flagged or c.RECALLED_LOT_USED in e.flags:
                    continue
                lot, serial = use.get("lot") or "", use.get("serial") or ""
                refs = ledger.recalled_lots.get((sp.sku, lot), set()) | ledger.recalled_serials.get(
                    (sp.sku, serial), set())
                started = [(r.issued_at, ref) for ref in sorted(refs)
                           if isinstance(r := ledger.streams.get(f"recall:{ref}"), Recall) and r.issued_at]
                covering = [ref for at, ref in sorted(started) if at <= use["occurred_at"]]
                if covering:
                    self.intake.flag_recalled_use(sp, use, covering[0], now)
                    flagged.add(use["event_id"])

    def check_decisions(self) -> DecisionCheck:
        """Replay the log from the start and re-evaluate every stored policy decision at its
        instant: (decisions checked, those whose numbers differ from the stored ones, decisions
        skipped). A decision records the model version that made it (``model_version`` in its
        inputs); only the current version's (``planning.MODEL_VERSION``) can be re-evaluated by
        this code, so a decision of another version is skipped and counted, not reported as a
        difference (its numbers were right by the model of its day)."""
        ledger = Ledger()
        planner = Planner(ledger, self.planning)
        to_domain = self.store.mapper.to_domain_event
        checked, differences, skipped = 0, [], 0
        for notification in self.store.notifications():
            event = to_domain(notification)
            if isinstance(event, StockPoint.Decided) and "policy" in event.decision:
                version = (event.decision["policy"].get("inputs") or {}).get("model_version")
                if version != MODEL_VERSION:
                    skipped += 1
                    ledger.replay(event)
                    planner.learn(event)
                    continue
                sp = ledger.streams[event.originator_id]
                assert isinstance(sp, StockPoint)
                again = planner.evaluate(sp, event.timestamp)
                checked += 1
                if again != event.decision["policy"]:
                    differences.append({"stream": event.originator_id, "version": event.originator_version,
                                        "stored": event.decision["policy"], "replayed": again})
            ledger.replay(event)
            planner.learn(event)
        return DecisionCheck(checked, differences, skipped)

    def change_alert(self, alert_id: str, status: str, reason: str,
                     principal: Principal) -> dict[str, Any] | None:
        """Acknowledge or resolve an alert (stored as an event); None when there is none."""
        now = self.clock()
        alert, _, _ = self._store_changes(lambda: self.intake.change_alert(alert_id, status, reason, principal, now))
        return None if alert is None else {k: v for k, v in alert.items() if k != "dedupe_key"}

    def _store_changes(self, work: Callable[[], T]) -> tuple[T, list[dict[str, Any]], int]:
        """Run ``work``, which records through the intake (outside ``process``: alert changes,
        daily checks, approvals, ticks), and store what it recorded in one transaction: its
        result, the alerts raised and the events stored. If anything fails, the model is
        rebuilt from the store, so nothing is half-done (an ``ApprovalError`` is raised
        before anything is recorded)."""
        try:
            result = work()
            recorded, touched, alerts = self.intake.take_changes()
            if recorded:
                self._stored(self.store.append(recorded))
            for agg in touched:
                agg.collect_events()
            for event in recorded:
                self._note_poster(event)
        except ApprovalError:
            raise
        except BaseException:
            self._recover()
            raise
        return result, alerts, len(recorded)

    # -- procurement ----------------------------------------------------------------
    def decide_requisition(self, requisition_id: str, approve: bool, reason: str,
                           principal: Principal) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A buyer approves or rejects a requisition (stored as events, with the purchase
        order an approval completes): the requisition after it, and the alerts raised.
        Raises ``streams.procurement.ApprovalError`` when it may not happen."""
        now = self.clock()

        def decide() -> Any:
            mark = len(self.intake.recorded)
            req = self.purchasing.decide_approval(requisition_id, approve, principal, reason, self.intake, now)
            self._settle(mark, now, None)
            return req

        req, alerts, _ = self._store_changes(decide)
        return requisition_view(req, self.ledger), alerts

    def tick(self, now: datetime | None = None) -> BatchResult:
        """Submit the requisitions whose ordering window has closed (the runner calls this
        now and then, so a quiet hour still orders), and, in the ``notices`` role (the API's
        model on the distributed profile), raise the supplier notices of what it followed."""
        now = now or self.clock()
        if not (self.purchasing.enabled and (self.ledger.collecting or self.purchasing.queued)):
            return BatchResult([], [], 0)

        def release() -> None:
            mark = len(self.intake.recorded)
            self.purchasing.release_due(self.intake, now)
            self.purchasing.raise_queued(self.intake, now)
            self._settle(mark, now, None)

        _, alerts, n = self._store_changes(release)
        return BatchResult([], alerts, n)

    def check_overdue(self, now: datetime | None = None) -> BatchResult:
        """Decide again, now, the stock points this processor owns that wait on open purchase
        orders (the runner calls this now and then): an order growing late raises the reorder
        point and an ``order_overdue`` alert while nothing else happens there."""
        now = now or self.clock()

        def check() -> None:
            mark = len(self.intake.recorded)
            for (sku, location), orders in sorted(self.ledger.po_at.items()):
                sp_id = stock_point_id(sku, location)
                if orders and self.owns(sp_id) and self.planner.waits_on_late_orders(sku, location, now):
                    self.planner.decide(sp_id, self.intake, now, None)
            self._settle(mark, now, None)

        _, alerts, n = self._store_changes(check)
        return BatchResult([], alerts, n)

    def requisition(self, requisition_id: str) -> dict[str, Any] | None:
        req = self.ledger.streams.get(requisition_stream(requisition_id))
        return requisition_view(req, self.ledger) if isinstance(req, Requisition) else None

    def pick_list(self, source: str) -> list[dict[str, Any]]:
        """The open transfer requests to be picked at ``source``, each line with the lots to
        take first (FEFO at the source)."""
        now = self.clock()
        out = []
        for req in self.purchasing.requisitions(status="open", kind="transfer", source=source):
            lines = []
            for line in req["lines"]:
                sp = self.ledger.stock_point(line["sku"], source)
                pick = fefo(*self._shelf(sp, now)) if sp is not None else []
                lines.append(dict(line, pick_from=pick))
            out.append(dict(req, lines=lines))
        return out

    def _history(self, sp: StockPoint) -> list[tuple[str, Moves]]:
        """A stock point's facts in recording order: stored ones, then those not yet saved."""
        facts = [(e.event["occurred_at"], e.moves) for e in self.store.stream(sp.id)
                 if isinstance(e, StockPoint.Recorded)]
        facts += [(e.event["occurred_at"], e.moves) for e in sp.pending_events
                  if isinstance(e, StockPoint.Recorded)]
        return facts

    # -- read side --------------------------------------------------------------------
    def event_outcome(self, event_id: str) -> dict[str, Any] | None:
        """What became of a posted event, from the store: its first outcome (``accepted`` or
        ``rejected``, with reasons and flags, including flags added afterwards) and who posted
        it; None when no event with this id is stored."""
        prior = self.ledger.seen.get(event_id)
        if prior is None:
            return None
        return {"event_id": event_id, "status": prior.status, "errors": list(prior.errors),
                "flags": list(prior.flags), "recorded_by": self.posted_by.get(event_id)}

    def stock_point_view(self, sku: str, location: str) -> dict[str, Any] | None:
        sp = self.ledger.stock_point(sku, location)
        if sp is None:
            return None
        loc = self.ledger.catalog.location(location, self.clock())
        tz = loc.timezone if loc else "UTC"
        lots, on_hand, quarantined = [], 0.0, 0.0
        now = self.clock()
        for lot, qty in sorted(sp.lots.items()):
            if qty == 0:
                continue
            status = self.ledger.lot_status(sku, lot, now, tz)
            lot_agg = self.ledger.lot(sku, lot) if lot else None
            lots.append({"lot": lot or None, "expiry": lot_agg.expiry if lot_agg else None,
                         "quantity": qty, "status": status})
            if status == "ok":
                on_hand += qty
            elif qty > 0:
                quarantined += qty
        on_order = self.ledger.on_order.get((sku, location), 0.0)
        policy = sp.policy or {}
        inputs = policy.get("inputs", {})
        return {
            "sku": sku, "location": location, "site": sp.site,
            "on_hand": on_hand, "quarantined": quarantined, "lots": lots,
            "on_order": on_order,
            "inventory_position": inventory_position(on_hand, on_order),
            "safety_stock": sp.safety_stock,
            "reorder_point": sp.reorder_point,
            "order_up_to": sp.order_up_to,
            "service_level": inputs.get("service_level"),
            "lead_time_demand": {"mean": inputs.get("lead_time_demand_mean"),
                                 "spread": inputs.get("lead_time_demand_sd"),
                                 "lead_time_days": inputs.get("lead_time_days")} if inputs else None,
            "override": sp.override,
            "replenishment_needed": sp.need_open,
            "last_decisions": list(reversed(sp.last_decisions)),
            "flags": sorted(sp.flags),
            "open_alerts": sorted(sp.open_alerts),
            "last_event_at": sp.latest_occurred_at,
            "last_events": list(reversed(sp.last_events)),
            **self._shelf_view(sp, now),
        }

    def _shelf_view(self, sp: StockPoint, now: datetime) -> dict[str, Any]:
        """FEFO pick order, serialised units in stock, the last expiry check, recalls here."""
        rows, today = self._shelf(sp, now)
        serials = sorted(self.ledger.trace.serials_at.get((sp.sku, sp.location), ()))
        expiry = sp.expiry or {}
        return {
            "fefo": fefo(rows, today),
            "serials": [self.ledger.trace.serials[(sp.sku, s)] for s in serials],
            "expiry": {k: expiry.get(k, []) for k in ("expired_on_shelf", "expiry_risk")}
                      | {"value_at_cost": expiry.get("value_at_cost"), "checked_on": expiry.get("day"),
                         "demand_per_day": expiry.get("demand_per_day")},
            "recalls": {ref: {"quarantined": lots} for ref, lots in sorted(sp.quarantines.items())},
        }

    def alerts(self, status: str | None = None, kind: str | None = None,
               sku: str | None = None, location: str | None = None,
               limit: int = 500) -> list[dict[str, Any]]:
        out = []
        for alert in reversed(self.ledger.alerts.values()):
            if (status and alert["status"] != status) or (kind and alert["kind"] != kind) or (
                    sku and alert["sku"] != sku) or (location and alert["location"] != location):
                continue
            out.append({k: v for k, v in alert.items() if k != "dedupe_key"})
            if len(out) >= limit:
                break
        return out

    def alert_feed_since(self, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Alert changes after feed number ``seq`` (raised, acknowledged, resolved)."""
        return self.ledger.alert_feed[max(seq, 0):max(seq, 0) + limit]

    def audit_stock_point(self, sku: str, location: str, as_of: datetime | None = None,
                          known_at: datetime | None = None) -> dict[str, Any] | None:
        """A stock point's stored history and its state as of an instant of ``occurred_at``,
        limited to what had been recorded by ``known_at``."""
        events = self.store.stream(stock_point_id(sku, location))
        if not events:
            return None
        as_of_s = iso_utc(as_of) if as_of else None
        if known_at is not None:
            events = [e for e in events if e.timestamp <= known_at]
        history, facts = [], []
        for e in events:
            row = {"version": e.originator_version, "kind": type(e).__name__,
                   "recorded_at": e.timestamp.isoformat(), "hash": e.hash}
            body = {k: v for k, v in vars(e).items()
                    if k not in ("originator_id", "originator_version", "timestamp", "prev_hash", "hash")}
            row.update(body)
            occurred = body.get("event", {}).get("occurred_at") if isinstance(body.get("event"), dict) else None
            if occurred is not None:
                # A refusal keeps the payload as sent: its occurred_at may carry any offset (compare
                # instants, not strings), or be no instant at all (then it sits at its recording).
                instant = parse_instant(occurred)
                occurred = iso_utc(instant if instant is not None else e.timestamp)
            if as_of_s is not None and occurred is not None and occurred > as_of_s:
                continue
            if as_of_s is not None and isinstance(e, StockPoint.AlertRaised) and e.alert["raised_at"] > as_of_s:
                continue
            history.append(row)
            if isinstance(e, StockPoint.Recorded):
                facts.append((e.event["occurred_at"], e.moves))
        at = as_of or self.clock()
        loc = self.ledger.catalog.location(location, at)
        tz = loc.timezone if loc else "UTC"
        balances = fold_balances(facts)
        lots, on_hand, quarantined = [], 0.0, 0.0
        for lot, qty in sorted(balances.items()):
            if qty == 0:
                continue
            status = self._lot_status_as_of(sku, lot, at, tz, known_at)
            lots.append({"lot": lot or None, "quantity": qty, "status": status})
            if status == "ok":
                on_hand += qty
            elif qty > 0:
                quarantined += qty
        return {"sku": sku, "location": location,
                "as_of": as_of.isoformat() if as_of else None,
                "known_at": known_at.isoformat() if known_at else None,
                "state": {"on_hand": on_hand, "quarantined": quarantined, "lots": lots,
                          "inventory_position": inventory_position(on_hand)},
                "events": history}

    def _lot_status_as_of(self, sku: str, lot: str, at: datetime, tz: str,
                          known_at: datetime | None) -> str:
        if not lot:
            return "ok"
        at_s = iso_utc(at)
        for agg in self.ledger.streams.values():
            if getattr(agg, "sku", None) != sku or not agg.id.startswith("recall:"):
                continue
            recall_events = self.store.stream(agg.id)
            recalled = False
            for e in recall_events:
                if known_at is not None and e.timestamp > known_at:
                    break
                body = getattr(e, "event", None)
                if not body or body["occurred_at"] > at_s:
                    continue
                if body["type"] == "recall_issued" and lot in (body.get("lots") or []):
                    recalled = True
                elif body["type"] == "recall_closed":
                    recalled = False
            if recalled:
                return "recalled"
        lot_events = self.store.stream(lot_id(sku, lot))
        expiry, on_hold = None, False
        for e in lot_events:
            if known_at is not None and e.timestamp > known_at:
                break
            if hasattr(e, "key") and e.key.get("expiry"):
                expiry = e.key["expiry"]
            elif getattr(e, "expiry", None):
                expiry = e.expiry
            body = getattr(e, "event", None)
            if body and body["occurred_at"] <= at_s:
                if body["change"] == "expiry_corrected":
                    expiry = body["new_expiry"]
                elif body["change"] in ("hold", "release"):
                    on_hold = body["change"] == "hold"
        if on_hold:
            return "on_hold"
        exp = parse_date(expiry) if expiry else None
        if exp is not None and is_expired(exp, at, tz):
            return "expired"
        return "ok"

    def verify(self) -> tuple[int, BrokenLink | None]:
        return verify_store(self.store)

    def state_digest(self) -> str:
        """A digest of the derived state, to compare a rebuild with the live model."""
        return ledger_digest(self.ledger)


def verify_store(store: EventStore) -> tuple[int, BrokenLink | None]:
    """Check every stored stream's hash chain: events checked, and the first broken link."""
    verifier = ChainVerifier()
    for n in store.notifications():
        broken = verifier.feed(n.originator_id, n.originator_version, n.topic, n.state, n.id)
        if broken is not None:
            return verifier.checked, broken
    return verifier.checked, None


def _note_poster(posted_by: dict[str, str], event: Any) -> None:
    body = getattr(event, "event", None)
    if isinstance(body, dict):
        eid = body.get("event_id")
        if isinstance(eid, str | int) and not isinstance(eid, bool) and str(eid) not in posted_by:
            posted_by[str(eid)] = getattr(event, "recorded_by", "")


def _unstored_id(raw: Any, ledger: Ledger) -> bool:
    """Whether an event's id is one nothing stored holds (an ``event_id_reused`` of it then
    came from the rest of its submission)."""
    eid = raw.get("event_id") if isinstance(raw, dict) else None
    return isinstance(eid, str | int) and not isinstance(eid, bool) and ledger.seen.get(str(eid)) is None


def ledger_digest(ledger: Ledger) -> str:
    h = hashlib.sha256()
    for sid in sorted(ledger.streams):
        agg = ledger.streams[sid]
        state = {k: v for k, v in vars(agg).items() if not k.startswith("_") and k != "pending_events"}
        h.update(orjson.dumps([sid, agg.version, state], default=_jsonable,
                              option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS))
    for eid in sorted(ledger.seen):
        p = ledger.seen[eid]
        h.update(orjson.dumps([eid, p.fingerprint, p.status, p.errors, p.flags]))
    h.update(orjson.dumps(ledger.alerts, option=orjson.OPT_SORT_KEYS))
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    if hasattr(obj, "__iter__"):
        return list(obj)
    return str(obj)


__all__ = ["BatchResult", "Processor", "Principal", "utc_now", "c"]
