"""Steps 3-5 of the processor: learn from each stored event, decide, record the decisions.

``Planner.learn`` feeds every stored event, in recording order, to the online models (demand
and spikes per stock point, lead time per supplier × item, usage per procedure) and returns
the stock points whose policy may have moved. ``Planner.decide`` evaluates the policy of one
stock point with ``domain.policy`` and records, through the intake, the decisions that changed
(safety stock, reorder point, replenishment needed) and the alerts (stockout, stockout risk,
demand spike), each with every number it came from. Replaying the log through ``learn``
rebuilds the same models, so re-evaluating at a stored decision's instant gives its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain import codes as c
from domain.aggregates import PurchaseOrder, StockPoint, SurgicalCase, stock_point_id
from domain.catalog import Item
from domain.events import iso_utc
from domain.intake import Intake, Ledger, Principal
from domain.inventory import inventory_position
from domain.policy import (
    DEFAULT_SERVICE_LEVELS,
    FORMULA,
    changed_enough,
    expiry_cap,
    lead_time_demand,
    order_quantity,
    reorder_policy,
    service_level,
)
from online_models.demand import DailyDemand
from online_models.lead_time import LeadTime
from online_models.procedures import ProcedureUsage
from online_models.spike import SpikeDetector

MODEL_VERSION = "daily-tsb+ew-spike+ew-leadtime/1"
SYSTEM = Principal("system", c.ADMIN)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEMAND_TYPES = frozenset({"usage", "implied_transfer"})
WARM_UP_DAYS = 7  # days of history before spikes are tested against the baseline


@dataclass(frozen=True)
class PlanningSettings:
    service_levels: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SERVICE_LEVELS))
    cycle_days: float = 7.0
    default_lead_time_days: float = 7.0
    change_threshold: float = 0.05


class StockPointModel:
    """The online state of one stock point: a few numbers (see ``bench/models.py``)."""

    __slots__ = ("demand", "spike")

    def __init__(self) -> None:
        self.demand = DailyDemand()
        self.spike = SpikeDetector()

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.demand, self.spike)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.demand, self.spike = state


def epoch_days(iso: str) -> float:
    return (datetime.fromisoformat(iso) - EPOCH).total_seconds() / 86400.0


class Planner:
    def __init__(self, ledger: Ledger, settings: PlanningSettings | None = None) -> None:
        self.ledger = ledger
        self.settings = settings or PlanningSettings()
        self.models: dict[str, StockPointModel] = {}
        self.lead_times: dict[tuple[str, str], LeadTime] = {}
        self.procedures = ProcedureUsage()
        self.case_usage: dict[str, dict[str, float]] = {}

    # -- learning ---------------------------------------------------------------------
    def learn(self, event: Any) -> list[str]:
        """Update the models with one stored event; the stock points it may affect."""
        if isinstance(event, StockPoint.Recorded):
            return self._learn_fact(event)
        if isinstance(event, SurgicalCase.Changed):
            return self._learn_case(event)
        if isinstance(event, PurchaseOrder.Issued):
            e = event.event
            return [stock_point_id(line["sku"], e["location"]) for line in e["lines"]
                    if stock_point_id(line["sku"], e["location"]) in self.ledger.streams]
        if isinstance(event, StockPoint.OverrideSet):
            return [event.originator_id]
        return []

    def _learn_fact(self, event: StockPoint.Recorded) -> list[str]:
        e = event.event
        sp_id = event.originator_id
        etype = e["type"]
        if etype in DEMAND_TYPES or (etype == "transfer" and e.get("side") == "out"):
            model = self.models.get(sp_id)
            if model is None:
                model = self.models[sp_id] = StockPointModel()
            at = datetime.fromisoformat(e["occurred_at"])
            loc = self.ledger.catalog.location(e["location"], at)
            local = at.astimezone(ZoneInfo(loc.timezone)) if loc else at
            day = local.date().toordinal()
            model.demand.learn_one(day, local.weekday(), e["quantity"])
            t = epoch_days(e["occurred_at"])
            model.spike.learn_one(t, e["quantity"])
            mean, var = model.demand.predict_one()
            if model.demand.n_days >= WARM_UP_DAYS:
                model.spike.update(max(t, model.spike.t_last or t), mean, var)
            if etype == "usage" and e.get("case_id"):
                used = self.case_usage.setdefault(e["case_id"], {})
                used[e["sku"]] = used.get(e["sku"], 0.0) + e["quantity"]
        elif etype == "receipt" and e.get("po_id"):
            po = self.ledger.streams.get(f"po:{e['po_id']}")
            if isinstance(po, PurchaseOrder) and po.issued_at and e["sku"] in po.lines and po.supplier:
                days = epoch_days(e["occurred_at"]) - epoch_days(po.issued_at)
                on_time = e["occurred_at"] <= po.expected_at if po.expected_at else None
                lt = self.lead_times.setdefault((po.supplier, e["sku"]), LeadTime())
                lt.learn_one(max(days, 0.0), on_time)
        return [sp_id]

    def _learn_case(self, event: SurgicalCase.Changed) -> list[str]:
        case = self.ledger.streams[event.originator_id]
        assert isinstance(case, SurgicalCase)
        etype = event.event["type"]
        if etype == "surgery_completed":
            used = self.case_usage.pop(case.case_id, {})
            if case.procedure:
                self.procedures.learn_one(case.procedure, used)
        if not case.procedure or not case.location:
            return []
        return [sid for sku in self.procedures.items(case.procedure)
                if (sid := stock_point_id(sku, case.location)) in self.ledger.streams]

    # -- deciding ---------------------------------------------------------------------
    def evaluate(self, sp: StockPoint, now: datetime) -> dict[str, Any] | None:
        """The policy of a stock point now, with every input; None for an unknown item."""
        item = self.ledger.catalog.item(sp.sku, now)
        if item is None:
            return None
        s = self.settings
        model = self.models.get(sp.id)
        mean, var, spike_on, base_mean = 0.0, 0.0, False, 0.0
        if model is not None:
            base_mean, var = model.demand.predict_one()
            mean = base_mean
            if model.spike.active and model.spike.t_last is not None:
                spike_on = True
                mean = model.spike.lifted_mean(model.spike.t_last, base_mean)
                var = var * (mean / base_mean) if base_mean > 0 else max(var, mean)
            elif model.demand.n_days < WARM_UP_DAYS and model.spike.t_last is not None:
                # Too little history for a baseline: the recent rate stands in for it.
                recent = model.spike.recent_rate(model.spike.t_last)
                if recent > mean:
                    mean, var = recent, max(var, recent)
        default_lt = item.lead_time_days if item.lead_time_days else s.default_lead_time_days
        lt_model = self.lead_times.get((item.supplier or "", sp.sku))
        lt_mean, lt_var = lt_model.predict(default_lt) if lt_model else (default_lt, (0.2 * default_lt) ** 2)
        known = self._known_demand(sp, now, lt_mean)
        ltd = lead_time_demand(mean, var, lt_mean, lt_var, known, known)
        alpha = service_level(item.criticality, s.service_levels)
        pol = reorder_policy(ltd, alpha)
        pack = item.pack_size or 1.0
        cycle = math.ceil(mean * s.cycle_days / pack - 1e-9) * pack if mean > 0 else 0.0
        model_rop, model_out = pol.reorder_point, pol.reorder_point + cycle
        rop, out, override = model_rop, model_out, None
        if sp.override:
            o = sp.override
            frozen = o.get("freeze_until") and iso_utc(now) < o["freeze_until"]
            if frozen and sp.reorder_point is not None:
                rop, out = sp.reorder_point, sp.order_up_to if sp.order_up_to is not None else model_out
            if o.get("reorder_point") is not None:
                rop = float(o["reorder_point"])
            if o.get("order_up_to") is not None:
                out = float(o["order_up_to"])
            elif o.get("reorder_point") is not None:
                out = max(out, rop)
            override = dict(o, by=sp.override_by, frozen=bool(frozen))
        return {
            "safety_stock": max(rop - ltd.mean, 0.0) if override else pol.safety_stock,
            "reorder_point": rop, "order_up_to": out,
            "model": {"safety_stock": pol.safety_stock, "reorder_point": model_rop, "order_up_to": model_out},
            "override": override,
            "inputs": {
                "demand_mean_per_day": mean, "demand_sd_per_day": math.sqrt(max(var, 0.0)),
                "baseline_mean_per_day": base_mean, "demand_spike": spike_on,
                "intermittent": model.demand.is_intermittent() if model else True,
                "lead_time_days": lt_mean, "lead_time_sd_days": math.sqrt(max(lt_var, 0.0)),
                "lead_time_source": "learned" if lt_model and lt_model.n else "master_data",
                "known_demand": known, "lead_time_demand_mean": ltd.mean,
                "lead_time_demand_sd": ltd.spread, "service_level": alpha,
                "cycle_days": s.cycle_days, "pack_size": pack,
                "formula": FORMULA, "model_version": MODEL_VERSION,
            },
        }

    def _known_demand(self, sp: StockPoint, now: datetime, lead_time_days: float) -> float:
        """Expected use by cases scheduled at this location within the lead time."""
        cases = self.ledger.scheduled.get(sp.location)
        if not cases:
            return 0.0
        start, end = iso_utc(now), iso_utc(now + timedelta(days=lead_time_days))
        return sum(self.procedures.expected(proc, sp.sku) for proc, when in cases.values()
                   if start <= when <= end)

    def usable_on_hand(self, sp: StockPoint, now: datetime) -> float:
        loc = self.ledger.catalog.location(sp.location, now)
        tz = loc.timezone if loc else "UTC"
        return sum(q for lot, q in sp.lots.items() if self.ledger.lot_status(sp.sku, lot, now, tz) == "ok")

    def decide(self, sp_id: str, intake: Intake, now: datetime, cause: str | None) -> None:
        sp = self.ledger.streams.get(sp_id)
        if not isinstance(sp, StockPoint):
            return
        policy = self.evaluate(sp, now)
        if policy is None:
            return
        item = self.ledger.catalog.item(sp.sku, now)
        assert item is not None
        threshold = self.settings.change_threshold
        base = {"sku": sp.sku, "location": sp.location, "cause_event_id": cause,
                "decided_at": iso_utc(now), "policy": policy}
        if changed_enough(sp.safety_stock, policy["safety_stock"], threshold):
            intake.record_decision(sp, dict(base, type="safety_stock_changed", old=sp.safety_stock,
                                            new=policy["safety_stock"]), now)
        if changed_enough(sp.reorder_point, policy["reorder_point"], threshold) or (
                sp.order_up_to is not None
                and changed_enough(sp.order_up_to, policy["order_up_to"], threshold)):
            intake.record_decision(sp, dict(base, type="reorder_point_changed", old=sp.reorder_point,
                                            new=policy["reorder_point"],
                                            order_up_to=policy["order_up_to"]), now)
        on_hand = self.usable_on_hand(sp, now)
        on_order = self.ledger.on_order.get((sp.sku, sp.location), 0.0)
        ip = inventory_position(on_hand, on_order)
        rop, out = policy["reorder_point"], policy["order_up_to"]
        demand = policy["inputs"]["demand_mean_per_day"]
        if ip <= rop and not sp.need_open and out > 0:
            shelf_life = item.extra.get("shelf_life_days")
            cap = expiry_cap(demand, float(shelf_life), on_hand) if shelf_life else None
            qty = order_quantity(ip, out, item.pack_size, float(item.extra.get("min_order") or 0), cap)
            if qty > 0:
                intake.record_decision(sp, dict(base, type="replenishment_needed", quantity=qty,
                                                inventory_position=ip, on_hand=on_hand,
                                                on_order=on_order, expiry_cap=cap), now)
        elif ip > rop and sp.need_open:
            intake.record_decision(sp, dict(base, type="replenishment_covered", inventory_position=ip,
                                            on_hand=on_hand, on_order=on_order), now)
        self._alerts(sp, intake, now, cause, on_hand, policy, item)

    def _alerts(self, sp: StockPoint, intake: Intake, now: datetime, cause: str | None,
                on_hand: float, policy: dict[str, Any], item: Item) -> None:
        inputs = policy["inputs"]
        demand, ltd_mean = inputs["demand_mean_per_day"], inputs["lead_time_demand_mean"]
        conditions = {
            c.ALERT_STOCKOUT: (on_hand <= 0 and demand > 0,
                               f"{sp.sku} is out of stock at {sp.location}"),
            c.ALERT_STOCKOUT_RISK: (0 < on_hand < ltd_mean,
                                    f"{sp.sku} at {sp.location}: {on_hand:g} usable on hand will not "
                                    f"cover the {ltd_mean:.1f} expected over the "
                                    f"{inputs['lead_time_days']:.1f}-day lead time"),
            c.ALERT_DEMAND_SPIKE: (inputs["demand_spike"],
                                   f"demand spike for {sp.sku} at {sp.location}: "
                                   f"{demand:.1f}/day against a baseline of "
                                   f"{inputs['baseline_mean_per_day']:.1f}/day"),
        }
        for kind, (on, message) in conditions.items():
            open_id = intake.open_alert(sp, kind)
            if on and open_id is None:
                intake.raise_alert(sp, kind, cause, message, now)
            elif not on and open_id is not None:
                intake.change_alert(open_id, "resolved", "condition cleared", SYSTEM, now)
