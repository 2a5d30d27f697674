"""The policies compared on the same demand.

Baselines (what hospitals run today), each reviewing every stock point once a day after the
day's use, from the use the books recorded (demand not met is not seen) and the item
master's quoted lead time:

- ``static_par``: the usual par level, min/max set once from the first 90 days: min = 1.5 ×
  the mean use over the quoted lead time, max = min + 7 days of use; order up to max when
  on hand + on order ≤ min.
- ``fixed_rop``: a classic fixed reorder point with a fixed safety stock, set once from the
  first 90 days: safety stock = z_α · σ_d · √L (normal approximation, α by criticality),
  ROP = μ_d · L + safety stock; orders a fixed quantity (one cycle of use in whole packs), as
  many as bring the inventory position above the ROP.
- ``batch_forecast``: an ERP suggestion / batch planner: the same formula recomputed every
  night from the last 28 days, ordering up to ROP + one cycle of use.
- ``moving_window``: the same, from the last 7 days only: simple, and quick to follow a
  change (a strong bar in surges).

Until day 90 the fixed policies use the same rule on the days seen so far (a hospital
starting up sets its pars from what it sees).

Every policy runs under one of two **allocations** (issue 13's two tables): ``criticality``
(the service level by criticality, a 7-day cycle: the *model only* table) or ``cost`` (the
*full system*: the service level from the cost trade-off, never below the criticality's
target, and the economic order cycle, ``domain.policy``'s functions for every policy but
``static_par``, which stays as hospitals run it). And every policy has one **safety factor**,
the multiplier on its safety stock (``domain.policy.scaled_reorder_point``) that the
comparison tunes to equal inventory.

``dynamic`` is ours: the real ``streams.processor.Processor`` (over an in-memory event
store, with a simulated clock) is sent the day's facts as events, and its
``replenishment_needed`` decisions become purchase orders.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any

from domain.aggregates import StockPoint
from domain.intake import Principal
from domain.inventory import inventory_position
from domain.policy import (
    DEFAULT_SERVICE_LEVELS,
    LeadTimeDemand,
    bounded_service_level,
    cost_service_level,
    eoq_days,
    expiry_cap,
    order_quantity,
    scaled_reorder_point,
    service_level,
)
from streams.planning import PlanningSettings
from streams.processor import Processor
from streams.simulation.hospital import SITE, TIMEZONE, Hospital
from streams.store import EventStore, memory_env

BASELINES = ("static_par", "fixed_rop", "batch_forecast", "moving_window")
POLICIES = (*BASELINES, "dynamic")
ALLOCATIONS = ("criticality", "cost")
FREEZE_DAY = 90
WINDOWS = {"batch_forecast": 28, "moving_window": 7}  # the nightly policies' days of history
CYCLE_DAYS = 7.0
ORDER_LINE_COST = 5.0  # the cost of an order line under cost allocation (EOQ cycles)
SETTINGS = PlanningSettings()  # the trade-off's other numbers: serve's defaults
STOCKOUT_COST = SETTINGS.stockout_cost  # the cost of a stockout occasion under cost allocation
SIM_KEY = b"simulation-case-id-key-not-secret"  # pseudonyms of invented cases
ADMIN = Principal("simulator", "admin")
SCANNER = Principal("simulator-scanner", "scanner")


@dataclass(frozen=True)
class Setup:
    """How a policy runs: its allocation (``criticality`` or ``cost``) and safety factor."""

    allocation: str = "criticality"
    safety_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {self.allocation!r}")


def packs(quantity: float, pack: float) -> float:
    """``quantity`` rounded up to whole packs."""
    return math.ceil(max(quantity, 0.0) / pack - 1e-9) * pack


class Params:
    """A baseline's reorder point, safety stock and order-up-to (or fixed quantity) per stock
    point, with the daily demand estimate they came from."""

    __slots__ = ("rop", "ss", "target", "fixed_q", "mean")

    def __init__(self, rop: float, ss: float, target: float, fixed_q: float, mean: float) -> None:
        self.rop, self.ss, self.target, self.fixed_q, self.mean = rop, ss, target, fixed_q, mean


class Baseline:
    def __init__(self, name: str, hospital: Hospital, setup: Setup | None = None) -> None:
        if name not in BASELINES:
            raise ValueError(name)
        self.name = name
        self.hospital = hospital
        self.setup = setup or Setup()
        self.levels = dict(DEFAULT_SERVICE_LEVELS)
        self.params: dict[str, Params] = {}

    def _compute(self, sp_id: str, sku: str, used: list[float]) -> Params:
        item = self.hospital.items[sku]
        n = max(len(used), 1)
        mean = sum(used) / n
        var = sum((u - mean) ** 2 for u in used) / max(n - 1, 1)
        lt = float(item.lead_time_days)
        pack = float(item.pack_size)
        k = self.setup.safety_factor
        by_cost = (self.setup.allocation == "cost" and self.name != "static_par" and mean > 0
                   and item.unit_cost > 0)  # (as the planner: an unpriced item keeps its criticality's)
        cycle_days = CYCLE_DAYS
        if by_cost:
            life = item.shelf_life_days
            cycle_days = eoq_days(mean, item.unit_cost, ORDER_LINE_COST, SETTINGS.holding_rate,
                                  min(SETTINGS.max_cycle_days, life / 2) if life else SETTINGS.max_cycle_days)
        cycle = packs(mean * cycle_days, pack) if mean > 0 else 0.0
        if self.name == "static_par":
            rop = math.ceil(scaled_reorder_point(1.5 * mean * lt, mean * lt, k))
            return Params(rop, max(rop - mean * lt, 0.0), rop + cycle, 0.0, mean)
        alpha = service_level(item.criticality, self.levels)
        if by_cost:
            covered = LeadTimeDemand(mean * lt, var * lt)
            alpha, _ = bounded_service_level(
                cost_service_level(covered, item.unit_cost, max(cycle, pack) / mean, STOCKOUT_COST,
                                   SETTINGS.holding_rate), alpha, SETTINGS.service_ceiling)
        ss = NormalDist().inv_cdf(alpha) * math.sqrt(var * lt)
        rop = math.ceil(scaled_reorder_point(mean * lt + ss, mean * lt, k))
        ss = max(rop - mean * lt, 0.0)
        if self.name == "fixed_rop":
            return Params(rop, ss, rop + cycle, max(cycle, pack), mean)
        return Params(rop, ss, rop + cycle, 0.0, mean)

    def review(self, day: int, history: dict[str, list[float]], position: Callable[[str], float],
               sku_of: dict[str, str]) -> dict[str, float]:
        """The order quantities for today, by stock point (after the day's use)."""
        nightly = self.name in WINDOWS
        recompute = nightly or day < FREEZE_DAY or not self.params
        orders: dict[str, float] = {}
        for sp_id, used in history.items():
            sku = sku_of[sp_id]
            if recompute:
                window = used[-WINDOWS[self.name]:] if nightly else used[:FREEZE_DAY]
                self.params[sp_id] = self._compute(sp_id, sku, window)
            p = self.params[sp_id]
            if p.mean <= 0:
                continue
            ip = position(sp_id)
            if ip > p.rop:
                continue
            pack = float(self.hospital.items[sku].pack_size)
            if self.name == "fixed_rop":
                n = math.floor((p.rop - ip) / p.fixed_q) + 1
                qty = n * p.fixed_q
            else:
                qty = packs(p.target - ip, pack)
            if qty > 0:
                orders[sp_id] = qty
        return orders

    def plan_values(self, sp_id: str) -> tuple[float | None, float | None, float | None]:
        p = self.params.get(sp_id)
        return (p.rop, p.ss, p.mean) if p else (None, None, None)


class Dynamic:
    """Our policy: the real processor, fed the simulated hospital's events day by day."""

    name = "dynamic"

    def __init__(self, hospital: Hospital, start: datetime, setup: Setup | None = None) -> None:
        """``setup``: by criticality, the service levels by criticality and 7-day cycles; by
        cost, the service levels allocated by cost at ``STOCKOUT_COST`` a stockout occasion
        (``PlanningSettings.service_allocation="cost"``, never below the criticality's target)
        and the EOQ's cycles at ``ORDER_LINE_COST`` an order line; its safety factor
        multiplies every safety stock (``PlanningSettings.safety_factor``)."""
        self.hospital = hospital
        self.start = start
        self.now = start
        self.setup = setup or Setup()
        planning = PlanningSettings(service_levels=dict(DEFAULT_SERVICE_LEVELS), cycle_days=CYCLE_DAYS,
                                    safety_factor=self.setup.safety_factor)
        if self.setup.allocation == "cost":
            planning = replace(planning, service_allocation="cost", stockout_cost=STOCKOUT_COST,
                               order_line_cost=ORDER_LINE_COST)
        self.processor = Processor(EventStore(env=memory_env()), SIM_KEY,
                                   late_after=timedelta(days=3), clock=lambda: self.now,
                                   planning=planning)
        self.rejected: list[dict[str, Any]] = []
        self.events = 0

    def at(self, day: int, hour: float) -> str:
        return (self.start + timedelta(days=day, hours=hour)).isoformat()

    def post(self, day: int, hour: float, events: list[tuple[dict[str, Any], Principal]]) -> None:
        if not events:
            return
        self.now = self.start + timedelta(days=day, hours=hour)
        result = self.processor.process(events)
        self.events += len(events)
        for outcome in result.outcomes:
            if outcome.status == "rejected":
                self.rejected.append({"event_id": outcome.event_id, "errors": outcome.errors})

    def register(self, starting: list[tuple[str, str, float, str, int | None]]) -> None:
        """Master data, then the opening stock (stock point id, sku, quantity, lot, expiry day)."""
        h = self.hospital
        t = self.at(-1, 0)
        master: list[dict[str, Any]] = []
        for loc in h.locations:
            master.append({"event_id": f"loc-{loc.location}", "type": "location_registered", "occurred_at": t,
                           "location": loc.location, "site": SITE, "name": loc.name, "kind": loc.kind,
                           "timezone": TIMEZONE})
        for sup in h.suppliers.values():
            master.append({"event_id": f"sup-{sup.supplier}", "type": "supplier_registered",
                           "occurred_at": t, "supplier": sup.supplier, "name": sup.name})
        for item in h.items.values():
            e: dict[str, Any] = {"event_id": f"item-{item.sku}", "type": "item_registered", "occurred_at": t,
                                 "sku": item.sku, "description": item.description, "base_unit": "each",
                                 "pack_size": item.pack_size, "criticality": item.criticality,
                                 "lead_time_days": item.lead_time_days, "supplier": item.supplier,
                                 "unit_cost": item.unit_cost, "currency": "EUR"}
            if item.shelf_life_days:
                e["shelf_life_days"] = item.shelf_life_days
            master.append(e)
        self.post(-1, 1, [(e, ADMIN) for e in master])
        self.post(-1, 6, [(self.receipt_event(-1, sp_id, sku, qty, lot, expiry, None), SCANNER)
                          for sp_id, sku, qty, lot, expiry in starting])

    def receipt_event(self, day: int, sp_id: str, sku: str, qty: float, lot: str,
                      expiry_day: int | None, po_id: str | None) -> dict[str, Any]:
        e: dict[str, Any] = {"event_id": f"rcv-{lot}-{sp_id}", "type": "receipt", "occurred_at": self.at(day, 6),
                             "site": SITE, "location": sp_id.split("@")[1], "sku": sku, "lot": lot,
                             "quantity": qty}
        if expiry_day is not None:
            e["expiry"] = (self.start + timedelta(days=expiry_day)).date().isoformat()
        if po_id:
            e["po_id"] = po_id
        return e

    def waste_event(self, day: int, sp_id: str, sku: str, lot: str, qty: float, reason: str,
                    hour: float = 21.0) -> dict[str, Any]:
        return {"event_id": f"waste-{day}-{sp_id}-{lot}", "type": "waste", "occurred_at": self.at(day, hour),
                "site": SITE, "location": sp_id.split("@")[1], "sku": sku, "lot": lot, "quantity": qty,
                "reason": reason}

    def decisions(self) -> dict[str, float]:
        """The buyer's day-end round: each stock point with an open ``replenishment_needed``
        whose inventory position is still at or below its reorder point is ordered for, up to
        the order-up-to level as it stands now (``domain.policy.order_quantity``, as the
        planner computes it). A need that one order left uncovered is ordered for again (the
        processor raises a need once until it is covered)."""
        out: dict[str, float] = {}
        ledger, planner = self.processor.ledger, self.processor.planner
        for sp in ledger.streams.values():
            if not isinstance(sp, StockPoint) or not sp.need_open:
                continue
            policy = planner.policy(sp, self.now)
            item = ledger.catalog.item(sp.sku, self.now)
            if policy is None or item is None:
                continue
            on_hand = planner.usable_on_hand(sp, self.now)
            ip = inventory_position(on_hand, ledger.on_order.get((sp.sku, sp.location), 0.0))
            if ip > policy.reorder_point:
                continue
            life = item.extra.get("shelf_life_days")
            est = policy.demand  # on the baseline, as the planner judges it
            cap = expiry_cap(min(est.mean, est.baseline_mean or est.mean), float(life), on_hand,
                             policy.lead_time_days) if life else None
            qty = order_quantity(ip, policy.order_up_to, item.pack_size,
                                 float(item.extra.get("min_order") or 0), cap)
            if qty > 0:
                out[f"{sp.sku}@{sp.location}"] = qty
        return out

    def service_levels(self) -> dict[str, float]:
        """The mean service level of the stock points of each criticality, as the policy
        stands now (by cost, each stock point has its own)."""
        ledger, planner = self.processor.ledger, self.processor.planner
        levels: dict[str, list[float]] = {}
        for sp in ledger.streams.values():
            if isinstance(sp, StockPoint) and (policy := planner.policy(sp, self.now)) is not None:
                item = ledger.catalog.item(sp.sku, self.now)
                levels.setdefault(item.criticality if item else "normal", []).append(policy.service_level)
        return {k: sum(v) / len(v) for k, v in sorted(levels.items())}

    def plan_values(self, sp_id: str) -> tuple[float | None, float | None, float | None]:
        sku, loc = sp_id.split("@")
        sp = self.processor.ledger.stock_point(sku, loc)
        if sp is None:
            return None, None, None
        policy = self.processor.planner.policy(sp, self.now)
        return sp.reorder_point, sp.safety_stock, policy.demand.mean if policy else None
