"""Procurement: from a replenishment need to an approved purchase order, and back from
deliveries, inspections and recalls to each supplier's score.

``Purchasing.learn`` feeds every stored event, in recording order, to the suppliers' records
(live and on replay, like ``Planner.learn``). ``Purchasing.act`` runs on the live path only,
on the events a batch just stored, and records what follows from them through the intake:

- a ``replenishment_needed`` decision at a stock point restocked from another location
  becomes a *transfer request* at that source (its pick list); at a stock point supplied from
  outside it becomes a line of a *requisition* for the supplier of least expected total cost
  (``domain.procurement``), merged per supplier and site while the ordering window is open;
- a use of a consignment item raises a bill-only purchase order and a replacement line;
- a receipt, inspection or recall re-scores its supplier (``supplier_review_needed`` when the
  score falls past the threshold) and a receipt that breaks its contract raises
  ``contract_breach``.

On the distributed profile the work is split by who may write which streams
(``ProcurementSettings.role``): each worker raises its own stock points' requisitions,
transfer requests and consignment orders (``needs``); the API process, which follows the store,
writes the scorecards and supplier notices (``notices``, from ``queued`` events, in ``tick``).

A requisition is submitted when its window closes: auto-approved (and ordered) when every line
is on a contract with a certified supplier and its value is under the limit, otherwise it waits
for a buyer; above the higher limit it needs a second approval by another principal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from domain import codes as c
from domain.aggregates import (
    PurchaseOrder,
    Recall,
    Requisition,
    StockPoint,
    SupplierScorecard,
    SupplyTerms,
    requisition_stream,
    stock_point_id,
)
from domain.catalog import Item
from domain.events import fingerprint, iso_utc
from domain.intake import SYSTEM_EVENT_ID_PREFIX, Intake, Ledger, Principal
from domain.procurement import (
    CERTIFICATE_WARNING_DAYS,
    DEFAULT_SHORTAGE_MULTIPLIERS,
    Candidate,
    Need,
    Offer,
    Risk,
    approvals_needed,
    certificate_standing,
    choose,
    due_by,
    expected_cost,
    is_valid,
    lead_time_breach,
    price_breach,
    review_needed,
    supplier_score,
    unit_price,
)
from online_models.supplier import SupplierRecord
from streams.planning import SYSTEM, Planner, epoch_days


@dataclass(frozen=True)
class ProcurementSettings:
    """How needs become orders (README, "Procurement"); ``enabled`` turns the automation on
    (the service's default; the simulator orders by its own rules)."""

    enabled: bool = False
    # ``all`` (one process does everything); on the distributed profile the workers take
    # ``needs`` (requisitions, transfer requests, consignment: their own stock points' streams)
    # and the API ``notices`` (scorecards and supplier notices: one writer of those streams).
    role: str = "all"
    ordering_window: timedelta = timedelta(0)
    auto_approve_limit: float = 5_000.0
    second_approval_limit: float = 25_000.0
    review_score: float = 85.0
    review_drop: float = 10.0
    price_tolerance: float = 0.005
    lead_time_grace_days: float = 0.5
    certificate_warning_days: int = CERTIFICATE_WARNING_DAYS
    shortage_multipliers: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SHORTAGE_MULTIPLIERS))


class ApprovalError(Exception):
    """An approval or rejection that may not happen (``status``: the HTTP status to answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# The stored events that may call for a supplier notice (``Purchasing.notices``).
NOTICE_EVENTS = (StockPoint.Recorded, PurchaseOrder.Issued, PurchaseOrder.Inspected, PurchaseOrder.Acknowledged,
                 PurchaseOrder.Shipped, SupplyTerms.Inspected, Recall.Issued, Recall.Closed, Requisition.LineAdded)


class Purchasing:
    def __init__(self, ledger: Ledger, planner: Planner, settings: ProcurementSettings | None = None) -> None:
        self.ledger = ledger
        self.planner = planner
        self.settings = settings or ProcurementSettings()
        self.records: dict[str, SupplierRecord] = {}
        self.item_records: dict[tuple[str, str], SupplierRecord] = {}
        self.items_of: dict[str, dict[str, SupplierRecord]] = {}  # supplier -> sku -> its record
        self._first_receipts: set[tuple[str, str, str]] = set()  # (po, sku, location) delivered
        # (sku, location) -> the open transfer requests for it (fulfilled when all has arrived)
        self.open_transfers: dict[tuple[str, str], set[str]] = {}
        self.queued: list[Any] = []  # the ``notices`` role: followed events still to act on

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    # -- learning (live and replay) ----------------------------------------------------
    def _record(self, supplier: str, sku: str | None) -> list[SupplierRecord]:
        rows = [self.records.setdefault(supplier, SupplierRecord())]
        if sku is not None:
            rec = self.item_records.get((supplier, sku))
            if rec is None:
                rec = self.item_records[(supplier, sku)] = SupplierRecord()
                self.items_of.setdefault(supplier, {})[sku] = rec
            rows.append(rec)
        return rows

    def learn(self, event: Any) -> list[str]:
        """Update the suppliers' records with one stored event; the stock points whose
        inventory position it changed (requisitions and transfer requests count as on order)."""
        if self.settings.role == "notices" and self.settings.enabled and isinstance(event, NOTICE_EVENTS):
            self.queued.append(event)
        if isinstance(event, StockPoint.Recorded):
            e = event.event
            if e["type"] == "receipt":
                self._learn_receipt(e)
            elif e["type"] == "transfer" and e.get("side") == "in":
                return []  # the planner re-decides the stock point itself
        elif isinstance(event, PurchaseOrder.Inspected | SupplyTerms.Inspected):
            e = event.event
            for r in self._record(e["supplier"], e["sku"]):
                r.learn_inspection(float(e["accepted"]), float(e["rejected"]))
        elif isinstance(event, PurchaseOrder.Issued) and not event.event.get("bill_only"):
            self._record(event.event["supplier"], None)[0].learn_order()
        elif isinstance(event, PurchaseOrder.Acknowledged):
            e = event.event
            for line in e.get("lines") or []:
                for r in self._record(e["supplier"], line["sku"]):
                    r.learn_acknowledgement(bool(line.get("backordered")))
        elif isinstance(event, PurchaseOrder.Shipped):
            self._record(event.event["supplier"], None)[0].learn_shipment()
        elif isinstance(event, Recall.Issued):
            supplier = self._recall_supplier(event.event)
            if supplier:
                for r in self._record(supplier, event.event["sku"]):
                    r.learn_recall(epoch_days(event.event["occurred_at"]))
        elif isinstance(event, Recall.Closed):
            recall = self.ledger.streams.get(event.originator_id)
            if isinstance(recall, Recall) and recall.issued_at and recall.sku:
                supplier = self._recall_supplier({"sku": recall.sku, "occurred_at": recall.issued_at,
                                                  "supplier": recall.supplier})
                if supplier:
                    days = epoch_days(event.event["occurred_at"]) - epoch_days(recall.issued_at)
                    for r in self._record(supplier, recall.sku):
                        r.learn_recall_closed(max(days, 0.0))
        elif isinstance(event, Requisition.LineAdded):
            key = (event.line["sku"], event.line["location"])
            if event.line.get("source") is not None:  # a transfer request's line
                self.open_transfers.setdefault(key, set()).add(event.originator_id)
            return [stock_point_id(*key)]
        elif isinstance(event, Requisition.Fulfilled | Requisition.Rejected):
            req = self.ledger.streams[event.originator_id]
            assert isinstance(req, Requisition)
            for line in req.lines:
                self.open_transfers.get((line["sku"], line["location"]), set()).discard(event.originator_id)
        elif isinstance(event, Requisition.Ordered):
            # (Not on a rejection: the buyer said no to this need now; it is raised again by
            # the stock point's next movement while it is still under its reorder point.)
            req = self.ledger.streams[event.originator_id]
            assert isinstance(req, Requisition)
            return sorted({stock_point_id(line["sku"], line["location"]) for line in req.lines})
        return []

    def _recall_supplier(self, e: dict[str, Any]) -> str | None:
        if e.get("supplier"):
            return str(e["supplier"])
        item = self.ledger.catalog.item(e["sku"], datetime.fromisoformat(e["occurred_at"]))
        return item.supplier if item else None

    def _learn_receipt(self, e: dict[str, Any]) -> None:
        po = self.ledger.streams.get(f"po:{e['po_id']}") if e.get("po_id") else None
        supplier = po.supplier if isinstance(po, PurchaseOrder) else e.get("supplier")
        if not supplier:
            return
        rows = self._record(supplier, e["sku"])
        if isinstance(po, PurchaseOrder) and not po.bill_only:
            key = (po.po_id, e["sku"], e["location"])
            if key not in self._first_receipts:
                self._first_receipts.add(key)
                ordered = sum(line["quantity"] for line in po.line_rows
                              if line["sku"] == e["sku"] and line["location"] == e["location"])
                due = self._due(po, e["sku"])
                on_time = None if due is None else e["occurred_at"] <= due
                filled = e["quantity"] / ordered if ordered > 0 else None
                for r in rows:
                    r.learn_delivery(on_time, filled)
        contract, breaches = self.breaches(e)
        if contract is not None and e.get("unit_price") is not None:
            expected = self._contract_price(contract, e)
            if expected > 0:
                for r in rows:
                    r.learn_price(float(e["unit_price"]) / expected)
        if breaches:
            for r in rows:
                r.learn_breach()

    def _due(self, po: PurchaseOrder, sku: str) -> str | None:
        """When a line is due: the order's expected instant (a backorder's date when the
        supplier acknowledged one), plus the grace."""
        ack = po.acknowledged.get(sku) or {}
        if ack.get("backorder_date") and ack.get("backordered"):
            return ack["backorder_date"] + "T23:59:59.999999Z"
        if po.expected_at:
            return iso_utc(due_by(datetime.fromisoformat(po.expected_at), self.settings.lead_time_grace_days))
        return None

    # -- terms ---------------------------------------------------------------------
    def offers(self, item: Item, today: date) -> list[Offer]:
        """One offer per supplier of the item: its valid contract, else its valid quote, else
        (for the item's registered supplier) the item master's unit cost and lead time."""
        found: dict[str, Offer] = {}
        for supplier, terms in sorted(self.ledger.terms.get(item.sku, {}).items()):
            contract = next((k for k in reversed(terms.contracts)
                             if is_valid(k.get("valid_from"), k.get("valid_until"), today)), None)
            if contract is not None:
                found[supplier] = _offer(supplier, "contract", contract.get("contract_id") or contract["event_id"],
                                         contract)
                continue
            quote = next((q for q in reversed(terms.quotes)
                          if is_valid(q.get("valid_from"), q.get("valid_until"), today)), None)
            if quote is not None:
                found[supplier] = _offer(supplier, "quote", quote.get("quote_id") or quote["event_id"], quote)
        if item.supplier and item.supplier not in found:
            found[item.supplier] = Offer(item.supplier, "item_master", None, float(item.unit_cost or 0.0), (),
                                         float(item.extra.get("min_order") or 0.0), item.lead_time_days, None, None)
        return list(found.values())

    def valid_contract(self, supplier: str, sku: str, day: str) -> dict[str, Any] | None:
        terms = self.ledger.terms.get(sku, {}).get(supplier)
        if terms is None:
            return None
        today = date.fromisoformat(day[:10])
        return next((k for k in reversed(terms.contracts)
                     if is_valid(k.get("valid_from"), k.get("valid_until"), today)), None)

    def _contract_price(self, contract: dict[str, Any], receipt: dict[str, Any]) -> float:
        po = self.ledger.streams.get(f"po:{receipt.get('po_id')}")
        qty = (po.lines.get(receipt["sku"], receipt["quantity"]) if isinstance(po, PurchaseOrder)
               else receipt["quantity"])
        return unit_price(_offer("", "contract", None, contract), qty)

    def breaches(self, receipt: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The contract a receipt is judged against, and how it broke it (price, lead time)."""
        po = self.ledger.streams.get(f"po:{receipt['po_id']}") if receipt.get("po_id") else None
        supplier = po.supplier if isinstance(po, PurchaseOrder) else receipt.get("supplier")
        if not supplier or (isinstance(po, PurchaseOrder) and po.bill_only):
            return None, []
        day = po.issued_at if isinstance(po, PurchaseOrder) and po.issued_at else receipt["occurred_at"]
        contract = self.valid_contract(supplier, receipt["sku"], day)
        if contract is None:
            return None, []
        found = []
        if receipt.get("unit_price") is not None:
            expected = self._contract_price(contract, receipt)
            if price_breach(float(receipt["unit_price"]), expected, self.settings.price_tolerance):
                found.append({"term": "price", "contract": expected, "actual": float(receipt["unit_price"])})
        promised = contract.get("lead_time_days")
        if promised is not None and isinstance(po, PurchaseOrder) and po.issued_at:
            days = epoch_days(receipt["occurred_at"]) - epoch_days(po.issued_at)
            if lead_time_breach(days, float(promised), self.settings.lead_time_grace_days):
                found.append({"term": "lead_time", "contract": float(promised), "actual": round(days, 3)})
        return contract, found

    # -- acting (live only) ---------------------------------------------------------
    def act(self, event: Any, intake: Intake, now: datetime, cause: str | None) -> None:
        """Record what follows from one event the batch stored (module docstring): needs
        become orders (roles ``all`` and ``needs``), and supplier notices are raised (``all``;
        the ``notices`` role raises them in ``raise_queued``)."""
        if self.settings.role in ("all", "needs"):
            self._needs(event, intake, now)
        if self.settings.role == "all":
            self.notices(event, intake, now)

    def _needs(self, event: Any, intake: Intake, now: datetime) -> None:
        if isinstance(event, StockPoint.Decided) and event.decision["type"] == "replenishment_needed":
            sp = self.ledger.streams[event.originator_id]
            assert isinstance(sp, StockPoint)
            self.on_need(sp, event.decision, intake, now)
        elif isinstance(event, StockPoint.Recorded):
            e = event.event
            if e["type"] == "usage":
                self._consigned_use(event, intake, now)
            elif e["type"] == "transfer" and e.get("side") == "in":
                self._transfers_settled(e, intake, now)

    def raise_queued(self, intake: Intake, now: datetime) -> int:
        """The ``notices`` role: raise what the events followed since the last call call for."""
        queued, self.queued = self.queued, []
        for event in queued:
            self.notices(event, intake, now)
        return len(queued)

    def notices(self, event: Any, intake: Intake, now: datetime) -> None:
        """Re-score a supplier after a receipt, inspection, acknowledgement, shipping notice or
        recall (and raise ``contract_breach``), announce a purchase order procurement issued,
        and name the suppliers whose certificates kept them out or need a buyer."""
        if isinstance(event, StockPoint.Recorded):
            if event.event["type"] == "receipt":
                self._rescore(event.event, intake, now)
        elif isinstance(event, PurchaseOrder.Issued):
            e = event.event
            if e.get("requisition_id"):
                self._notice(e["supplier"], c.ALERT_PURCHASE_ORDER, e["event_id"],
                             f"purchase order {e['po_id']} to {e['supplier']}: {len(e['lines'])} line(s), "
                             f"value {float(e.get('value') or 0):.2f}", intake, now, dedupe=False,
                             extra={"po_id": e["po_id"], "requisition_id": e["requisition_id"], "po": e})
        elif isinstance(event, Requisition.LineAdded):
            for cand in event.line.get("candidates") or []:
                if cand.get("excluded") or {"no_certificate", "certificate_expiring"} & set(cand.get("flags") or ()):
                    self._certificate_notice(cand["supplier"], cand["certificates"], intake, now,
                                             event.line.get("cause_event_id"))
        elif isinstance(event, PurchaseOrder.Inspected | SupplyTerms.Inspected | PurchaseOrder.Acknowledged
                        | PurchaseOrder.Shipped):
            self._rescore(event.event, intake, now)
        elif isinstance(event, Recall.Issued | Recall.Closed):
            recall = self.ledger.streams[event.originator_id]
            assert isinstance(recall, Recall)
            supplier = self._recall_supplier({"sku": recall.sku, "occurred_at": recall.issued_at,
                                              "supplier": recall.supplier})
            if supplier:
                self.score(supplier, intake, now, event.event["event_id"], recall.sku)

    def on_need(self, sp: StockPoint, need: dict[str, Any], intake: Intake, now: datetime) -> None:
        item = self.ledger.catalog.item(sp.sku, now)
        loc = self.ledger.catalog.location(sp.location, now)
        if item is None or loc is None:
            return
        # (Consigned stock is replaced use by use, ``_consigned_use``, and those replacements
        # count as on order: a need left over comes from losses, waste or expiry, bought here.)
        qty = float(need["quantity"])
        if loc.restocked_from:
            self._transfer_request(sp, loc.restocked_from, qty, need, intake, now)
            return
        candidates = self.candidates(sp, item, qty, now)
        chosen = choose(candidates)
        cost = chosen.costing if chosen else None
        line = {"sku": sp.sku, "location": sp.location, "need_quantity": qty,
                "quantity": cost.quantity if cost else qty,
                "unit_price": cost.unit_price if cost else None,
                "value": cost.price if cost else 0.0,
                "supplier": chosen.offer.supplier if chosen else None,
                "source": chosen.offer.source if chosen else None,
                "reference": chosen.offer.reference if chosen else None,
                "promised_lead_time_days": chosen.offer.lead_time_days if chosen else None,
                "flags": list(chosen.flags) if chosen else ["no_eligible_supplier"],
                "criticality": item.criticality,
                "candidates": [cand.as_dict() for cand in sorted(candidates, key=lambda x: x.costing.total)],
                "need": {k: need.get(k) for k in ("inventory_position", "on_hand", "on_order", "quantity")}
                | {"reorder_point": (need.get("policy") or {}).get("reorder_point"),
                   "demand_per_day": self._demand(sp), "cover_days": _finite(self._cover_days(sp, now))},
                "cause_event_id": need.get("cause_event_id"), "decided_at": iso_utc(now)}
        self._add_line("purchase", line["supplier"], sp.site, None, line, intake, now)

    def candidates(self, sp: StockPoint, item: Item, qty: float, now: datetime) -> list[Candidate]:
        """Every supplier offering the item, costed for this need (excluded ones with why)."""
        need = Need(sp.sku, qty, self._demand(sp), self._cover_days(sp, now), item.criticality)
        out = []
        for offer in self.offers(item, now.date()):
            supplier = self.ledger.catalog.supplier(offer.supplier, now)
            certs = list((supplier.extra.get("certificates") or []) if supplier else [])
            standing, _ = certificate_standing(certs, now.date(), self.settings.certificate_warning_days)
            risk = self.risk(offer, sp.sku, item)
            flags = []
            if standing == "none":
                flags.append("no_certificate")
            elif standing == "expiring":
                flags.append("certificate_expiring")
            if offer.source == "quote":
                flags.append("quote_without_contract")
            elif offer.source == "item_master":
                flags.append("no_contract")
            if offer.source == "item_master" and item.unit_cost is None:
                flags.append("no_price")
            card = self._card(offer.supplier)
            out.append(Candidate(offer, risk, expected_cost(offer, risk, need, self.settings.shortage_multipliers),
                                 standing, card.get("score") if card else None,
                                 excluded="certificate_expired" if standing == "expired" else None, flags=flags))
        return out

    def risk(self, offer: Offer, sku: str, item: Item) -> Risk:
        """Lead time from the one lead-time model (learned from this supplier's deliveries of
        the item, shrunk to the promised lead time), and the expected accepted share."""
        promised = offer.lead_time_days or self.planner.master_lead_time(item)
        spread = offer.lead_time_sd_days if offer.lead_time_sd_days is not None else (
            self.planner.master_lead_time_sd(item) if not offer.lead_time_days else None)
        mean, var, learned = self.planner.lead_time(offer.supplier, sku, promised, spread)
        rec = self.item_records.get((offer.supplier, sku))
        if rec is None or rec.units == 0:
            rec = self.records.get(offer.supplier)
        share = rec.accepted_share() if rec is not None else SupplierRecord().accepted_share()
        return Risk(mean, math.sqrt(max(var, 0.0)), share, "learned" if learned else "promised")

    def _demand(self, sp: StockPoint) -> float:
        model = self.planner.models.get(sp.id)
        return model.estimate().mean if model is not None else 0.0

    def _cover_days(self, sp: StockPoint, now: datetime) -> float:
        demand = self._demand(sp)
        if demand <= 0:
            return math.inf
        return max(float(self.planner.usable_on_hand(sp, now)), 0.0) / demand

    def _transfer_request(self, sp: StockPoint, source: str, qty: float, need: dict[str, Any],
                          intake: Intake, now: datetime) -> None:
        line = {"sku": sp.sku, "location": sp.location, "source": source, "quantity": qty,
                "need_quantity": qty, "value": 0.0,
                "need": {k: need.get(k) for k in ("inventory_position", "on_hand", "on_order", "quantity")},
                "cause_event_id": need.get("cause_event_id"), "decided_at": iso_utc(now)}
        rid = "TR-" + fingerprint([sp.id, sp.version, "transfer"])[:12]
        req = intake._open(Requisition, requisition_stream(rid),
                           {"requisition_id": rid, "kind": "transfer", "site": sp.site, "source": source}, now)
        req.add_line(now, line, iso_utc(now))
        intake._touch(req)
        req.submit(now, "open", [], 0)
        intake._touch(req)

    def _transfers_settled(self, e: dict[str, Any], intake: Intake, now: datetime) -> None:
        """Transfer requests whose units have all arrived are fulfilled."""
        key = (e["sku"], e["location"])
        still = set(self.ledger.open_transfer_requests(key))
        for sid in sorted(self.open_transfers.get(key, ())):
            agg = self.ledger.streams.get(sid)
            if isinstance(agg, Requisition) and agg.status == "open" and agg.requisition_id not in still:
                agg.fulfil(now, [e["event_id"]])
                intake._touch(agg)

    def _add_line(self, kind: str, supplier: str | None, site: str, source: str | None,
                  line: dict[str, Any], intake: Intake, now: datetime) -> None:
        """Add a line to the requisition collecting for this supplier and site, or open one;
        submit it now when there is no ordering window."""
        rid = self.ledger.collecting.get((supplier or "", site, kind))
        req = self.ledger.streams.get(requisition_stream(rid)) if rid else None
        if not isinstance(req, Requisition) or req.status != "collecting":
            prefix = "CR-" if kind == "consignment" else "RQ-"
            rid = prefix + fingerprint([supplier, site, kind, line["sku"], line["location"], line["decided_at"],
                                        line.get("cause_event_id")])[:12]
            req = intake._open(Requisition, requisition_stream(rid),
                               {"requisition_id": rid, "kind": kind, "supplier": supplier, "site": site,
                                "source": source}, now)
            window_until = iso_utc(now + self.settings.ordering_window)
        else:
            window_until = req.window_until or iso_utc(now)
        req.add_line(now, line, window_until)
        intake._touch(req)
        if self.settings.ordering_window <= timedelta(0) or self.settings.role == "needs":
            self._submit(req, intake, now)  # (workers own stock points, not a site's requisitions)

    def release_due(self, intake: Intake, now: datetime) -> int:
        """Submit the requisitions whose ordering window has closed; how many."""
        due = []
        at = iso_utc(now)
        for rid in list(self.ledger.collecting.values()):
            req = self.ledger.streams.get(requisition_stream(rid))
            if isinstance(req, Requisition) and req.status == "collecting" and (req.window_until or "") <= at:
                due.append(req)
        for req in sorted(due, key=lambda r: r.requisition_id):
            self._submit(req, intake, now)
        return len(due)

    def _submit(self, req: Requisition, intake: Intake, now: datetime) -> None:
        s = self.settings
        reasons: list[str] = []
        for line in req.lines:
            for flag in line.get("flags") or []:
                if flag in ("quote_without_contract", "no_contract", "no_certificate", "no_price",
                            "no_eligible_supplier"):
                    reasons.append(flag)
        if req.value > s.auto_approve_limit:
            reasons.append("over_auto_approval_limit")
        reasons = sorted(set(reasons))
        approvals = approvals_needed(req.value, s.second_approval_limit)
        if reasons:
            req.submit(now, "pending_approval", reasons, approvals)
            intake._touch(req)
            return
        req.submit(now, "approved", [], approvals)
        intake._touch(req)
        req.approve(now, SYSTEM.name, SYSTEM.role,
                    f"auto-approved: every line on a contract with a certified supplier, value "
                    f"{req.value:.2f} within {s.auto_approve_limit:g}", "approved")
        intake._touch(req)
        self._order(req, SYSTEM, intake, now)

    def decide_approval(self, requisition_id: str, approve: bool, principal: Principal, reason: str,
                        intake: Intake, now: datetime) -> Requisition:
        """A buyer's approval or rejection (``ApprovalError`` when it may not happen)."""
        req = self.ledger.streams.get(requisition_stream(requisition_id))
        if not isinstance(req, Requisition):
            raise ApprovalError(404, f"no requisition {requisition_id}")
        if principal.role not in (c.BUYER, c.ADMIN):
            raise ApprovalError(403, f"the role '{principal.role}' may not approve or reject requisitions")
        if req.kind == "transfer":  # needs no approval; cancelled when the source cannot supply
            if approve or req.status != "open":
                raise ApprovalError(409, f"transfer request {requisition_id} is {req.status}: it needs no "
                                         "approval, and only an open one can be rejected (cancelled)")
            req.reject(now, principal.name, principal.role, reason)
            intake._touch(req)
            return req
        if req.status not in ("pending_approval", "awaiting_second_approval"):
            raise ApprovalError(409, f"requisition {requisition_id} is {req.status}; only one waiting "
                                     f"for approval can be approved or rejected")
        if not approve:
            req.reject(now, principal.name, principal.role, reason)
            intake._touch(req)
            return req
        if not req.supplier:
            raise ApprovalError(409, "no eligible supplier: register a contract or quote with a certified "
                                     "supplier, or reject the requisition")
        if any(a["by"] == principal.name for a in req.approvals):
            raise ApprovalError(409, f"{principal.name} already approved requisition {requisition_id}; "
                                     f"the second approval must come from another principal")
        done = len(req.approvals) + 1 >= req.approvals_needed
        req.approve(now, principal.name, principal.role, reason,
                    "approved" if done else "awaiting_second_approval")
        intake._touch(req)
        if done:
            self._order(req, principal, intake, now)
        return req

    def _order(self, req: Requisition, principal: Principal, intake: Intake, now: datetime) -> None:
        """The approved requisition becomes a purchase order (``po_issued``), announced as a
        ``purchase_order`` notice (for ERP webhooks)."""
        assert req.supplier
        promised = [float(line["promised_lead_time_days"]) for line in req.lines
                    if line.get("promised_lead_time_days") is not None]
        po_id = "PO-" + req.requisition_id.split("-", 1)[1]
        lines = [{"sku": line["sku"], "quantity": line["quantity"], "location": line["location"],
                  "unit_price": line.get("unit_price"), "source": line.get("source"),
                  "reference": line.get("reference")} for line in req.lines]
        po_event = {"event_id": f"{SYSTEM_EVENT_ID_PREFIX}po-{req.requisition_id}", "type": "po_issued",
                    "occurred_at": iso_utc(now),
                    "po_id": po_id, "supplier": req.supplier, "location": req.lines[0]["location"],
                    "site": req.site, "lines": lines, "requisition_id": req.requisition_id,
                    "value": req.value, "approved_by": [a["by"] for a in req.approvals]}
        if promised:
            po_event["expected_at"] = iso_utc(now + timedelta(days=max(promised)))
        outcome = intake.handle(po_event, principal, now, trusted=True)
        if outcome.status != c.ACCEPTED:
            # (The location moved site, the item was withdrawn, ...: stored as refused.) The
            # requisition ends; the need is raised again by the stock point's next movement.
            why = "; ".join(f"{e['field']}: {e['message']}" for e in outcome.errors)
            req.reject(now, SYSTEM.name, SYSTEM.role, f"purchase order {po_id} refused: {why}")
            intake._touch(req)
            return
        req.order(now, po_id)  # (announced by ``notices``, from the po_issued just recorded)
        intake._touch(req)

    def _consigned_use(self, event: StockPoint.Recorded, intake: Intake, now: datetime) -> None:
        """A use of consigned stock: the supplier bills it (a bill-only purchase order line)
        and replaces it (a replacement line, ordered like any requisition)."""
        e = event.event
        at = datetime.fromisoformat(e["occurred_at"])
        item = self.ledger.catalog.item(e["sku"], at)
        if item is None or not item.extra.get("consignment") or not item.supplier:
            return
        offer = next((o for o in self.offers(item, at.date()) if o.supplier == item.supplier), None)
        price = unit_price(offer, e["quantity"]) if offer else item.unit_cost
        bill = {"event_id": f"{SYSTEM_EVENT_ID_PREFIX}bill-{e['event_id']}", "type": "po_issued",
                "occurred_at": iso_utc(now),
                "po_id": "BO-" + fingerprint(e["event_id"])[:12], "supplier": item.supplier,
                "location": e["location"], "bill_only": True, "usage_event_id": e["event_id"],
                "lines": [{"sku": e["sku"], "quantity": e["quantity"], "unit_price": price}]}
        if intake.handle(bill, SYSTEM, now, trusted=True).status != c.ACCEPTED:
            return
        sp = self.ledger.streams[event.originator_id]
        assert isinstance(sp, StockPoint)
        line = {"sku": e["sku"], "location": e["location"], "need_quantity": e["quantity"],
                "quantity": e["quantity"], "unit_price": price, "value": (price or 0.0) * e["quantity"],
                "supplier": item.supplier, "source": offer.source if offer else "item_master",
                "reference": offer.reference if offer else None,
                "promised_lead_time_days": offer.lead_time_days if offer else item.lead_time_days,
                "flags": [] if price else ["no_price"], "criticality": item.criticality, "candidates": [],
                "need": {"replaces_use": e["event_id"]}, "cause_event_id": e["event_id"],
                "decided_at": iso_utc(now)}
        self._add_line("consignment", item.supplier, sp.site, None, line, intake, now)

    # -- scoring ----------------------------------------------------------------------
    def _rescore(self, e: dict[str, Any], intake: Intake, now: datetime) -> None:
        po = self.ledger.streams.get(f"po:{e['po_id']}") if e.get("po_id") else None
        supplier = po.supplier if isinstance(po, PurchaseOrder) else e.get("supplier")
        if not supplier:
            return
        if e["type"] == "receipt":
            _, found = self.breaches(e)
            if found:
                what = "; ".join(f"{b['term'].replace('_', ' ')} {b['actual']:g} against {b['contract']:g}"
                                 for b in found)
                self._notice(supplier, c.ALERT_CONTRACT_BREACH, e["event_id"],
                             f"{supplier} broke its contract for {e['sku']} (receipt {e['event_id']}): {what}",
                             intake, now, dedupe=False,
                             extra={"breaches": found, "po_id": e.get("po_id"), "receipt_sku": e["sku"],
                                    "receipt_location": e["location"]})
        self.score(supplier, intake, now, e["event_id"], e.get("sku"))

    def card(self, supplier: str, now: datetime, sku: str | None = None) -> dict[str, Any]:
        """A supplier's scorecard now: its rates, lead time, recalls and score, and those of
        one item (``sku``: the one the event that re-scored it was about)."""
        rec = self.records.get(supplier) or SupplierRecord()
        day = epoch_days(iso_utc(now))
        lt_mean, lt_sd, n = self.planner.supplier_lead_time(supplier)
        card = dict(_rates(rec, day), supplier=supplier, recall_response_days=rec.response_days if rec.responses else None,
                    contract_breaches=rec.breaches, lead_time_mean_days=lt_mean, lead_time_sd_days=lt_sd,
                    lead_time_receipts=n, deliveries=round(rec.deliveries, 6), inspections=round(rec.batches, 6),
                    orders=rec.orders, shipping_notices=rec.shipments, backorder_rate=rec.backorder_rate())
        items = self.items_of.get(supplier, {})
        card["skus"] = sorted(items)  # the items it delivered (their rates: ``items``)
        item = items.get(sku or "")
        card["item"] = None if item is None else dict(_rates(item, day), sku=sku)
        return card

    def items(self, supplier: str, now: datetime) -> dict[str, dict[str, float]]:
        """Each item's rates and score for a supplier."""
        day = epoch_days(iso_utc(now))
        return {sku: _rates(r, day) for sku, r in sorted(self.items_of.get(supplier, {}).items())}

    def _card(self, supplier: str) -> dict[str, Any] | None:
        sc = self.ledger.streams.get(f"scorecard:{supplier}")
        return sc.card if isinstance(sc, SupplierScorecard) else None

    def score(self, supplier: str, intake: Intake, now: datetime, cause: str | None,
              sku: str | None = None) -> None:
        """Record the supplier's scorecard when its score moved, and raise
        ``supplier_review_needed`` when it falls below the threshold, or the threshold's drop
        below its peak since the last review."""
        s = self.settings
        sc = intake._open(SupplierScorecard, f"scorecard:{supplier}", {"supplier": supplier}, now)
        prev = sc.card or {}
        card = self.card(supplier, now, sku)
        review_open = intake.ledger.open_alert_keys.get((sc.id, c.ALERT_SUPPLIER_REVIEW_NEEDED, "")) is not None
        if prev.get("review_open") and not review_open:
            peak = card["score"]  # reviewed since: the trend starts again from here
        else:
            peak = max(float(prev.get("peak", card["score"])), card["score"])
        card.update(peak=peak, review_open=review_open, scored_at=iso_utc(now), cause_event_id=cause,
                    review_score=s.review_score, review_drop=s.review_drop)
        falling = review_needed(card["score"], peak, s.review_score, s.review_drop)
        if falling and not review_open:
            card["review_open"] = True
        if prev and all(prev.get(k) == card.get(k) for k in card if k not in ("scored_at", "cause_event_id")):
            return
        sc.score(now, card)
        intake._touch(sc)
        if falling and not review_open:
            self._notice(supplier, c.ALERT_SUPPLIER_REVIEW_NEEDED, cause,
                         f"{supplier} scores {card['score']:.1f} (peak {peak:.1f}; review below "
                         f"{s.review_score:g} or {s.review_drop:g} under the peak): on time "
                         f"{card['on_time_rate']:.0%}, fill {card['fill_rate']:.0%}, batches passed "
                         f"{card['batch_pass_rate']:.0%}: renegotiate or second-source",
                         intake, now, dedupe=True, extra={"score": card["score"], "peak": peak})

    def _certificate_notice(self, supplier: str, standing: str, intake: Intake, now: datetime,
                            cause: str | None) -> None:
        why = {"expired": "has an expired certificate and is excluded",
               "none": "has no certificate on record (a buyer must approve its orders)",
               "expiring": f"has a certificate expiring within {self.settings.certificate_warning_days} days"}
        self._notice(supplier, c.ALERT_SUPPLIER_CERTIFICATE, cause,
                     f"supplier {supplier} {why.get(standing, standing)}",
                     intake, now, dedupe=True, extra={"certificates": standing})

    def _notice(self, supplier: str, kind: str, cause: str | None, message: str, intake: Intake,
                now: datetime, dedupe: bool, extra: dict[str, Any] | None = None) -> None:
        sc = intake._open(SupplierScorecard, f"scorecard:{supplier}", {"supplier": supplier}, now)
        intake._alert(sc, kind, {"event_id": cause}, now, message, None, dedupe=dedupe, extra=extra)

    # -- reading --------------------------------------------------------------------
    def requisitions(self, status: str | None = None, kind: str | None = None,
                     supplier: str | None = None, source: str | None = None) -> list[dict[str, Any]]:
        out = []
        due = transfers_outstanding(self.ledger)
        for agg in self.ledger.streams.values():
            if not isinstance(agg, Requisition):
                continue
            if ((status and agg.status != status) or (kind and agg.kind != kind)
                    or (supplier and agg.supplier != supplier) or (source and agg.source != source)):
                continue
            out.append(requisition_view(agg, self.ledger, due))
        return sorted(out, key=lambda r: (r["raised_at"] or "", r["id"]), reverse=True)

    def scorecards(self) -> list[dict[str, Any]]:
        """Each supplier's latest stored scorecard, its open notices, and its items' rates (as
        of the card)."""
        return [dict(agg.card, open_notices=sorted(agg.open_alerts),
                     items=self.items(agg.supplier, datetime.fromisoformat(agg.card["scored_at"])))
                for agg in self.ledger.streams.values()
                if isinstance(agg, SupplierScorecard) and agg.card is not None]

    def in_transit(self, sku: str | None, location: str | None, now: datetime) -> list[dict[str, Any]]:
        """Open purchase order lines, with the expected arrival the supplier stated and the
        one learned from its lead time (mean and spread)."""
        rows = []
        for po_id, lines in self.ledger.po_open.items():
            po = self.ledger.streams.get(f"po:{po_id}")
            if not isinstance(po, PurchaseOrder) or po.issued_at is None:
                continue
            for (line_sku, line_loc), qty in lines.items():
                if qty <= 1e-9 or (sku and line_sku != sku) or (location and line_loc != location):
                    continue
                item = self.ledger.catalog.item(line_sku, now)
                mean, var, learned = self.planner.lead_time(po.supplier or "", line_sku,
                                                            self.planner.master_lead_time(item),
                                                            self.planner.master_lead_time_sd(item))
                issued = datetime.fromisoformat(po.issued_at)
                ack = po.acknowledged.get(line_sku) or {}
                rows.append({"po_id": po_id, "supplier": po.supplier, "sku": line_sku, "location": line_loc,
                             "open_quantity": qty, "issued_at": po.issued_at,
                             "expected_at": po.shipped_expected_at or po.expected_at,
                             "backordered": ack.get("backordered"), "backorder_date": ack.get("backorder_date"),
                             "expected_arrival": iso_utc(issued + timedelta(days=mean)),
                             "expected_arrival_late": iso_utc(issued + timedelta(days=mean + 2 * math.sqrt(var))),
                             "lead_time_mean_days": mean, "lead_time_sd_days": math.sqrt(var),
                             "lead_time_source": "learned" if learned else "master_data",
                             "days_in_transit": round(epoch_days(iso_utc(now)) - epoch_days(po.issued_at), 3)})
        return sorted(rows, key=lambda r: (r["expected_arrival"], r["po_id"], r["sku"]))

    def purchase_orders(self, status: str | None = None) -> list[dict[str, Any]]:
        """Purchase orders as issued, with what is still to receive (the ERP export)."""
        out = []
        for agg in self.ledger.streams.values():
            if not isinstance(agg, PurchaseOrder) or agg.issued_at is None:
                continue
            open_lines = self.ledger.po_open.get(agg.po_id, {})
            lines = [dict(line, open_quantity=open_lines.get((line["sku"], line["location"]), 0.0))
                     for line in agg.line_rows]
            state = ("bill_only" if agg.bill_only else
                     "open" if any(x["open_quantity"] > 1e-9 for x in lines) else "received")
            if status and state != status:
                continue
            out.append({"po_id": agg.po_id, "supplier": agg.supplier, "location": agg.location,
                        "issued_at": agg.issued_at, "expected_at": agg.expected_at, "status": state,
                        "bill_only": agg.bill_only, "requisition_id": agg.requisition_id, "lines": lines})
        return sorted(out, key=lambda p: (p["issued_at"], p["po_id"]))


def transfers_outstanding(ledger: Ledger) -> dict[str, float]:
    """Transfer request id -> the quantity still to arrive."""
    return {rid: q for rows in ledger.transfers_due.values() for rid, q in rows}


def requisition_view(req: Requisition, ledger: Ledger, due: dict[str, float] | None = None) -> dict[str, Any]:
    due = transfers_outstanding(ledger) if due is None else due
    return {"id": req.requisition_id, "kind": req.kind, "status": req.status, "supplier": req.supplier,
            "site": req.site, "source": req.source, "value": req.value, "raised_at": req.raised_at,
            "window_until": req.window_until, "needs_buyer": req.needs_buyer,
            "approvals_needed": req.approvals_needed, "approvals": req.approvals, "rejection": req.rejection,
            "po_id": req.po_id, "outstanding": due.get(req.requisition_id) if req.kind == "transfer" else None,
            "lines": req.lines}


def _offer(supplier: str, source: str, reference: str | None, e: dict[str, Any]) -> Offer:
    breaks = tuple(sorted((float(b["min_quantity"]), float(b["price"])) for b in e.get("price_breaks") or []))
    lt, sd = e.get("lead_time_days"), e.get("lead_time_sd_days")
    return Offer(supplier, source, reference, float(e["price"]), breaks, float(e.get("min_order") or 0.0),
                 float(lt) if lt is not None else None, e.get("valid_from"), e.get("valid_until"),
                 float(sd) if sd is not None else None)


def _rates(r: SupplierRecord, day: float) -> dict[str, Any]:
    recalls = r.recalls_now(day)
    return {"score": supplier_score(r.on_time_rate(), r.fill_rate(), r.batch_pass_rate(), r.price_vs_contract(),
                                    recalls),
            "on_time_rate": r.on_time_rate(), "fill_rate": r.fill_rate(), "batch_pass_rate": r.batch_pass_rate(),
            "accepted_share": r.accepted_share(), "price_vs_contract": r.price_vs_contract(),
            "recalls": round(recalls, 6)}


def _finite(x: float) -> float | None:
    return None if math.isinf(x) else x


__all__ = ["ApprovalError", "ProcurementSettings", "Purchasing", "requisition_view"]
