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
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from domain import codes as c
from domain.aggregates import PurchaseOrder, StockPoint, SurgicalCase, stock_point_id
from domain.events import iso_utc
from domain.intake import Intake, Ledger, Principal
from domain.inventory import inventory_position
from domain.policy import (
    DEFAULT_SERVICE_LEVELS,
    FORMULA,
    LeadTimeDemand,
    ReorderPolicy,
    bounded_service_level,
    censored_lead_time,
    changed_enough,
    cost_service_level,
    eoq_days,
    expiry_cap,
    lead_time_demand,
    order_quantity,
    reorder_policy,
    scaled_reorder_point,
    service_level,
    undershoot,
)
from online_models.demand import DailyDemand
from online_models.lead_time import BOOST_ALPHA, SPREAD_FLOOR, SURPRISE_SDS, LeadTime
from online_models.procedures import ProcedureUsage
from online_models.spike import SpikeDetector
from online_models.usage_size import UsageSize

MODEL_VERSION = "daily-choice7+cusum-spike+ew-leadtime-restart-winsor+usage-size+stock-start+spike-base-cycle/10"
SYSTEM = Principal("system", c.ADMIN)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def wall_days(local: datetime) -> float:
    """Days since the epoch on a wall clock: ``local``'s date and time read as if in UTC (a
    daylight-saving change moves it an hour, as it moves the ward's day)."""
    return (local.replace(tzinfo=UTC) - EPOCH).total_seconds() / 86400.0
DEMAND_TYPES = frozenset({"usage", "implied_transfer", "demand_unmet"})
WARM_UP_DAYS = 7  # days of history before spikes are tested against the baseline


@dataclass(frozen=True)
class PlanningSettings:
    """How the planner sets service levels and cycles.

    ``service_allocation``: ``"criticality"`` (the default) takes each stock point's cycle
    service level from ``service_levels`` by the item's criticality; ``"cost"`` sets it per
    stock point from a cost trade-off (``domain.policy.cost_service_level``: a stockout
    occasion costs ``stockout_cost``, holding costs ``holding_rate`` of the unit cost a year),
    so that, for the same inventory value, cheap fast movers get high service and dear slow
    movers less; the one number ``stockout_cost`` moves every stock point's level together
    (the simulator calibrates it). Under ``"cost"`` the criticality still counts:
    ``service_floors`` is the least service level by criticality (None, the default: the
    criticality's own target from ``service_levels``), and ``service_ceiling`` the most. Items without a unit cost keep the level by criticality. Every decision records
    which rule its service level came from (``service_level_source``).

    ``order_line_cost``: None (the default) orders ``cycle_days`` of use beyond the reorder
    point; a cost per order line makes the cycle the economic order quantity's
    (``domain.policy.eoq_days``: long for cheap fast movers, short for dear items, within 1
    to ``max_cycle_days``), recorded in each decision's ``cycle_days`` and ``cycle_source``."""

    service_levels: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SERVICE_LEVELS))
    cycle_days: float = 7.0
    default_lead_time_days: float = 7.0
    change_threshold: float = 0.05
    service_allocation: str = "criticality"
    stockout_cost: float = 250.0
    holding_rate: float = 0.25
    service_floors: dict[str, float] | None = None
    service_ceiling: float = 0.999
    order_line_cost: float | None = None
    max_cycle_days: float = 28.0
    safety_factor: float = 1.0  # multiplies every safety stock (the simulator's tuning knob)


class DemandEstimate(NamedTuple):
    """What the policy uses of a stock point's demand model (per day; sizes per use)."""

    mean: float
    var: float
    baseline_mean: float
    spike: bool
    mean_error_var: float
    undershoot: LeadTimeDemand
    intermittent: bool
    censored_days: int = 0  # days of stockout skipped by the demand model (use below forecast)
    forecaster: str = "ses"  # the forecaster whose mean this is (``ForecastChoice``)


NO_DEMAND = DemandEstimate(0.0, 0.0, 0.0, False, 0.0, LeadTimeDemand(0.0, 0.0), True)


class StockPointModel:
    """The online state of one stock point: a few numbers (see ``bench/models.py``).

    Like the demand estimate (closed days only), the undershoot the policy uses is taken from
    the use sizes once a day, so that the policy's inputs move once a day unless a spike, the
    schedule or an override moves them (and its quantile can be reused in between)."""

    __slots__ = ("demand", "spike", "sizes", "undershoot", "undershoot_day")

    def __init__(self) -> None:
        self.demand = DailyDemand()
        self.spike = SpikeDetector()
        self.sizes = UsageSize()
        self.undershoot = (0.0, 0.0)  # mean and variance, as of day ``undershoot_day``
        self.undershoot_day = -1

    def learn_use(self, t_days: float, day: int, weekday: int, qty: float, spike: bool = True) -> None:
        """One use of ``qty`` at ``t_days`` (days since the epoch on the location's wall clock,
        ``wall_days``), on local day number ``day``;
        ``spike=False`` keeps it from the spike detector (a use the schedule announced)."""
        self.demand.learn_one(day, weekday, qty)
        if spike:
            self.spike.learn_one(t_days, qty)
        self.sizes.learn_one(qty)
        if self.undershoot_day != self.demand.n_days:
            u = undershoot(*self.sizes.predict_one())
            self.undershoot, self.undershoot_day = (u.mean, u.variance), self.demand.n_days
        if self.demand.n_days >= WARM_UP_DAYS:
            mean, var = self.demand.predict_one()
            self.spike.update(max(t_days, self.spike.t_last or t_days), mean, var)

    def estimate(self) -> DemandEstimate:
        """Demand per day for the policy: the baseline, lifted to the recent rate during a
        spike (or, with too little history for a baseline, when the recent rate is higher)."""
        demand, spike = self.demand, self.spike
        _, var = demand.predict_one()
        forecaster, base_mean, mean_error_var = demand.chosen()
        mean, spike_on = base_mean, False
        # On intermittent demand a day's lumpy use looks like a spike to a one-day window
        # (false alarms ordered weeks of dear kits): there the baseline (TSB) follows alone.
        if spike.active and spike.t_last is not None and not demand.is_intermittent():
            spike_on = True
            mean = spike.lifted_mean(spike.t_last, base_mean)
            var = var * (mean / base_mean) if base_mean > 0 else max(var, mean)
        elif demand.n_days < WARM_UP_DAYS and spike.t_last is not None:
            recent = spike.recent_rate(spike.t_last)
            if recent > mean:
                mean, var = recent, max(var, recent)
        return DemandEstimate(mean, var, base_mean, spike_on, mean_error_var,
                              LeadTimeDemand(*self.undershoot), demand.is_intermittent(),
                              demand.censored_days, forecaster)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.demand, self.spike, self.sizes, self.undershoot, self.undershoot_day)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.demand, self.spike, self.sizes, self.undershoot, self.undershoot_day = state


@lru_cache(maxsize=1 << 16)
def cached_cost_service_level(covered: LeadTimeDemand, unit_cost: float, cycle_days: float,
                              stockout_cost: float, holding_rate: float) -> float:
    """``cost_service_level``, remembered (its inputs move about once a day, as above)."""
    return cost_service_level(covered, unit_cost, cycle_days, stockout_cost, holding_rate)


@lru_cache(maxsize=1 << 16)
def cached_reorder_policy(ltd: LeadTimeDemand, alpha: float, under: LeadTimeDemand) -> ReorderPolicy:
    """``reorder_policy``, remembered: a stock point's inputs mostly move once a day, so the
    same quantile would otherwise be recomputed on every use (see ``bench/models.py``)."""
    return reorder_policy(ltd, alpha, under)


class Policy(NamedTuple):
    """A stock point's policy and every number it came from (``as_dict`` for the record)."""

    safety_stock: float
    reorder_point: float
    order_up_to: float
    model_safety_stock: float
    model_reorder_point: float
    model_order_up_to: float
    override: dict[str, Any] | None
    demand: DemandEstimate
    lead_time_days: float
    lead_time_var: float
    lead_time_learned: bool
    known_demand: float
    ltd: LeadTimeDemand
    service_level: float
    cycle_days: float
    pack_size: float
    service_source: str = "criticality"
    trade_off: tuple[float, float] | None = None  # stockout cost and holding rate (by cost)
    order_line_cost: float | None = None  # the cycle is the EOQ's at this cost per order line
    overdue: tuple[dict[str, Any], ...] = ()  # open orders older than the lead time expected
    safety_factor: float = 1.0  # the safety stock's multiplier (recorded when it is not 1)
    lead_time_prior_sd: float | None = None  # the master data's lead_time_sd_days, when given

    @property
    def cycle_source(self) -> str:
        return "fixed" if self.order_line_cost is None else "eoq"

    def as_dict(self) -> dict[str, Any]:
        est, ltd = self.demand, self.ltd
        return {
            "safety_stock": self.safety_stock,
            "reorder_point": self.reorder_point, "order_up_to": self.order_up_to,
            "model": {"safety_stock": self.model_safety_stock, "reorder_point": self.model_reorder_point,
                      "order_up_to": self.model_order_up_to},
            "override": self.override,
            "inputs": {
                "demand_mean_per_day": est.mean, "demand_sd_per_day": math.sqrt(max(est.var, 0.0)),
                "baseline_mean_per_day": est.baseline_mean, "forecaster": est.forecaster,
                "demand_spike": est.spike,
                "demand_mean_error_sd": math.sqrt(est.mean_error_var),
                "intermittent": est.intermittent,
                "lead_time_days": self.lead_time_days,
                "lead_time_sd_days": math.sqrt(max(self.lead_time_var, 0.0)),
                "lead_time_source": ("overdue_orders" if self.overdue else
                                     "learned" if self.lead_time_learned else "master_data"),
                "known_demand": self.known_demand, "lead_time_demand_mean": ltd.mean,
                "lead_time_demand_sd": ltd.spread, "undershoot_mean": est.undershoot.mean,
                "undershoot_sd": est.undershoot.spread, "service_level": self.service_level,
                "service_level_source": self.service_source,
                "stockout_cost": self.trade_off[0] if self.trade_off else None,
                "holding_rate": self.trade_off[1] if self.trade_off else None,
                "cycle_days": self.cycle_days, "cycle_source": self.cycle_source,
                "order_line_cost": self.order_line_cost, "pack_size": self.pack_size,
                "formula": FORMULA, "model_version": MODEL_VERSION,
                **({"overdue_orders": list(self.overdue)} if self.overdue else {}),
                **({"demand_censored_days": est.censored_days} if est.censored_days else {}),
                **({"safety_factor": self.safety_factor} if self.safety_factor != 1.0 else {}),
                **({"lead_time_prior_sd_days": self.lead_time_prior_sd}
                   if self.lead_time_prior_sd is not None else {}),
            },
        }


# An open order is overdue, and evidence that the supplier got slower, once it is older than the
# lead time's mean plus this many spreads (the in-transit view's late arrival, too).
OVERDUE_SDS = 2.0


def epoch_days(iso: str) -> float:
    return (datetime.fromisoformat(iso) - EPOCH).total_seconds() / 86400.0


class Planner:
    def __init__(self, ledger: Ledger, settings: PlanningSettings | None = None) -> None:
        self.ledger = ledger
        self.settings = settings or PlanningSettings()
        self.models: dict[str, StockPointModel] = {}
        self.lead_times: dict[tuple[str, str], LeadTime] = {}
        self.supplier_items: dict[str, list[LeadTime]] = {}  # supplier -> its items' lead-time models
        self.procedures = ProcedureUsage()
        self.case_usage: dict[str, dict[str, float]] = {}
        # How far ahead cases are scheduled, by location (days; the latest few hundred), and
        # each stock point's use (all of it, and that of scheduled cases): what share of the
        # lead-time demand the schedule already shows.
        self.schedule_leads: dict[str, deque[float]] = {}
        # Each location's first day with a use (local day number): uses are recorded there from it.
        self.live_from: dict[str, int] = {}
        self.scheduled_use: dict[str, list[float]] = {}

    # -- learning ---------------------------------------------------------------------
    def learn(self, event: Any) -> list[str]:
        """Update the models with one stored event; the stock points it may affect."""
        if isinstance(event, StockPoint.Recorded):
            return self._learn_fact(event)
        if isinstance(event, SurgicalCase.Changed):
            return self._learn_case(event)
        if isinstance(event, PurchaseOrder.Issued):
            e = event.event
            ids = (stock_point_id(line["sku"], line.get("location") or e["location"]) for line in e["lines"])
            return [sp_id for sp_id in dict.fromkeys(ids) if sp_id in self.ledger.streams]
        if isinstance(event, StockPoint.OverrideSet):
            return [event.originator_id]
        return []

    def _learn_fact(self, event: StockPoint.Recorded) -> list[str]:
        e = event.event
        sp_id = event.originator_id
        etype = e["type"]
        local: datetime | None = None
        if etype in DEMAND_TYPES or (etype == "transfer" and e.get("side") == "out"):
            model = self.models.get(sp_id)
            if model is None:
                model = self.models[sp_id] = StockPointModel()
            _, local = self._local_time(e)
            # The location records uses from its first one on (its go-live): a stock point's
            # quiet days on the shelf count as days without use from then only.
            sp_here = self.ledger.streams.get(sp_id)
            if model.demand.day is None and isinstance(sp_here, StockPoint):
                today = local.toordinal()
                live = self.live_from[sp_here.location] = min(self.live_from.get(sp_here.location, today), today)
                model.demand.live_from(live)
            # A scheduled case's use was announced by the schedule: a busy OR day is not a spike.
            scheduled = bool(etype == "usage" and e.get("case_id")
                             and e["case_id"] in self.ledger.scheduled.get(e["location"], {}))
            # The spike detector's clock is the location's wall clock (its hour-of-day profile
            # must not move an hour at a daylight-saving change); the demand model's days too.
            model.learn_use(wall_days(local), local.toordinal(), local.weekday(),
                            e["quantity"], spike=not scheduled)
            use = self.scheduled_use.setdefault(sp_id, [0.0, 0.0])
            use[0] += e["quantity"] if scheduled else 0.0
            use[1] += e["quantity"]
            if etype == "usage" and e.get("case_id"):
                used = self.case_usage.setdefault(e["case_id"], {})
                used[e["sku"]] = used.get(e["sku"], 0.0) + e["quantity"]
        elif etype == "receipt" and e.get("po_id"):
            po = self.ledger.streams.get(f"po:{e['po_id']}")
            if isinstance(po, PurchaseOrder) and po.issued_at and e["sku"] in po.lines and po.supplier:
                days = epoch_days(e["occurred_at"]) - epoch_days(po.issued_at)
                on_time = e["occurred_at"] <= po.expected_at if po.expected_at else None
                lt = self.lead_times.get((po.supplier, e["sku"]))
                if lt is None:
                    lt = self.lead_times[(po.supplier, e["sku"])] = LeadTime()
                    self.supplier_items.setdefault(po.supplier, []).append(lt)
                lt.learn_one(max(days, 0.0), on_time)
        model = self.models.get(sp_id)
        if model is None and etype == "receipt":
            # The demand clock starts with the first stock: the quiet days before the first
            # use are days without use (``DailyDemand.start``).
            _, local = self._local_time(e)
            model = self.models[sp_id] = StockPointModel()
            model.demand.start(local.toordinal())
        sp = self.ledger.streams.get(sp_id)
        if model is not None and isinstance(sp, StockPoint):
            # Nothing left to use: the days until stock returns are censored demand. A negative
            # balance (uses scanned, receipts not posted) is a book error, not an empty shelf:
            # its days are observations.
            if local is None:
                _, local = self._local_time(e)
            model.demand.stocked_out(abs(sum(sp.lots.values())) <= 1e-9, local.toordinal())
        return [sp_id]

    def _local_time(self, e: dict[str, Any]) -> tuple[datetime, datetime]:
        """A stock fact's instant, and the same in its location's time zone (the demand clock's)."""
        at = datetime.fromisoformat(e["occurred_at"])
        loc = self.ledger.catalog.location(e["location"], at)
        return at, (at.astimezone(ZoneInfo(loc.timezone)) if loc else at)

    def _learn_case(self, event: SurgicalCase.Changed) -> list[str]:
        case = self.ledger.streams[event.originator_id]
        assert isinstance(case, SurgicalCase)
        etype = event.event["type"]
        if etype == "surgery_scheduled" and case.location and event.event.get("scheduled_for"):
            ahead = epoch_days(event.event["scheduled_for"]) - epoch_days(event.event["occurred_at"])
            self.schedule_leads.setdefault(case.location, deque(maxlen=500)).append(max(ahead, 0.0))
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
        policy = self.policy(sp, now)
        return None if policy is None else policy.as_dict()

    def policy(self, sp: StockPoint, now: datetime) -> Policy | None:
        """The numbers of ``evaluate``, without the dict a decision records (made only when
        one is recorded); None for an unknown item."""
        item = self.ledger.catalog.item(sp.sku, now)
        if item is None:
            return None
        s = self.settings
        model = self.models.get(sp.id)
        est = model.estimate() if model is not None else NO_DEMAND
        mean = est.mean
        default_lt = self.master_lead_time(item)
        lt_mean, lt_var, lt_learned = self.lead_time(item.supplier or "", sp.sku, default_lt,
                                                     self.master_lead_time_sd(item))
        overdue = self.overdue_orders(sp, now, lt_mean + OVERDUE_SDS * math.sqrt(max(lt_var, 0.0)), lt_mean)
        if overdue:  # censored observations: the supplier is slower than the model believes
            lt_model = self.lead_times.get((item.supplier or "", sp.sku)) or LeadTime()
            lt_mean, lt_var = censored_lead_time(lt_mean, lt_var, [o["at_least_days"] for o in overdue],
                                                 lt_model.next_weight(), BOOST_ALPHA, SURPRISE_SDS, SPREAD_FLOOR)
        known = self._known_demand(sp, now, lt_mean)
        # The daily demand d learned from every use already expects the average case load;
        # of the lead time's d·L the schedule already shows the share k = (share of this
        # stock point's use that came from scheduled cases) × (share of a scheduled case's
        # lead time it is known ahead, E[min(ahead, L)]/L, from how far ahead cases are
        # scheduled here). The lead-time demand is the known use plus the rest, d·L·(1 − k),
        # so that cases are not counted twice; only that rest keeps the daily variance (a
        # thinned count), the scheduled use adds its own (Poisson).
        shown = self._schedule_share(sp, lt_mean) if known > 0 else 0.0
        u = 1.0 - shown
        ltd = lead_time_demand(mean * u, est.var * u, lt_mean, 0.0, known, known,
                               est.mean_error_var * u) + LeadTimeDemand(0.0, mean * mean * max(lt_var, 0.0))
        pack = item.pack_size or 1.0
        cycle_days = s.cycle_days
        eoq = s.order_line_cost is not None and bool(item.unit_cost) and mean > 0
        if eoq:
            assert s.order_line_cost is not None and item.unit_cost
            life = item.extra.get("shelf_life_days")  # perishables: at most half the shelf life
            cycle_days = eoq_days(mean, float(item.unit_cost), s.order_line_cost, s.holding_rate,
                                  min(s.max_cycle_days, float(life) / 2) if life else s.max_cycle_days)
        # A spike's recent rate covers the lead time (the reorder point), not a whole cycle:
        # whether it lasts is not known yet, so the stock beyond the reorder point is the
        # cycle's days of the baseline's rate, and a lasting spike is met by ordering more
        # often. (Under economic cycles the days come from the rate in use, so a spike
        # shortens them too: this was measured so, in README's version-10 figures.)
        cycle_mean = est.baseline_mean if est.spike else mean
        cycle = math.ceil(cycle_mean * cycle_days / pack - 1e-9) * pack if cycle_mean > 0 else 0.0
        alpha, source = self._service_level(item, ltd + est.undershoot, mean, max(cycle, pack))
        pol = cached_reorder_policy(ltd, alpha, est.undershoot)
        model_rop = scaled_reorder_point(pol.reorder_point, ltd.mean, s.safety_factor)
        model_ss = pol.safety_stock if s.safety_factor == 1.0 else model_rop - ltd.mean
        model_out = model_rop + cycle
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
        return Policy(max(rop - ltd.mean, 0.0) if override else model_ss, rop, out,
                      model_ss, model_rop, model_out, override, est, lt_mean, lt_var,
                      lt_learned, known, ltd, alpha, cycle_days, pack, source,
                      None if source == "criticality" else (s.stockout_cost, s.holding_rate),
                      s.order_line_cost if eoq else None, tuple(overdue), s.safety_factor,
                      self.master_lead_time_sd(item))

    def _service_level(self, item: Any, covered: LeadTimeDemand, mean: float,
                       order_qty: float) -> tuple[float, str]:
        """The cycle service level of a stock point and the rule it came from: by the item's
        criticality, or (``service_allocation="cost"``) from the cost trade-off over an order
        cycle of ``order_qty``/``mean`` days, at least the criticality's floor."""
        s = self.settings
        if s.service_allocation != "cost" or not item.unit_cost or mean <= 0:
            return service_level(item.criticality, s.service_levels), "criticality"
        alpha = cached_cost_service_level(covered, float(item.unit_cost), order_qty / mean,
                                          s.stockout_cost, s.holding_rate)
        floors = s.service_levels if s.service_floors is None else s.service_floors
        return bounded_service_level(alpha, floors.get(item.criticality, 0.0), s.service_ceiling)

    def master_lead_time(self, item: Any) -> float:
        """The lead time an item's master data gives (else the settings' default), days."""
        return item.lead_time_days if item is not None and item.lead_time_days else self.settings.default_lead_time_days

    def master_lead_time_sd(self, item: Any) -> float | None:
        """The lead time's spread the item's master data gives (``lead_time_sd_days``), days."""
        sd = item.extra.get("lead_time_sd_days") if item is not None else None
        return float(sd) if sd is not None else None

    def lead_time(self, supplier: str, sku: str, default_days: float,
                  default_sd: float | None = None) -> tuple[float, float, bool]:
        """Mean and variance (days²) of a supplier's lead time for an item, and whether any
        of it was learned: the one lead-time model, shrunk to ``default_days`` (the promised or
        master-data lead time) and its spread ``default_sd`` (the terms' or master data's
        ``lead_time_sd_days``; else 20 % of the lead time), which receipts replace."""
        model = self.lead_times.get((supplier, sku))
        if model is None:
            return default_days, LeadTime.prior_var(default_days, default_sd), False
        mean, var = model.predict(default_days, default_sd=default_sd)
        return mean, var, bool(model.n)

    def overdue_orders(self, sp: StockPoint, now: datetime, late_days: float,
                       expected_days: float) -> list[dict[str, Any]]:
        """The open purchase orders for this stock point that have taken longer than
        ``late_days`` (the lead time's mean plus ``OVERDUE_SDS`` spreads: later than all but a
        few orders of a supplier as the model knows it; or that the supplier announced for
        later): each a lower bound on its own lead time (``at_least_days``: its age, or the
        announced arrival if later). A line partly delivered counts no more: its lead time was
        observed with the first delivery, and the rest is a backorder. ``days_late``: past the
        promised date, or else past ``expected_days``."""
        found = []
        today = epoch_days(iso_utc(now))
        for po_id in sorted(self.ledger.po_at.get((sp.sku, sp.location), ())):
            po = self.ledger.streams.get(f"po:{po_id}")
            if not isinstance(po, PurchaseOrder) or po.issued_at is None or po.bill_only:
                continue
            if self.ledger.po_received.get(po_id, {}).get((sp.sku, sp.location)):
                continue  # partly delivered: its lead time was seen; the rest is a backorder
            issued = epoch_days(po.issued_at)
            age = today - issued
            announced = epoch_days(po.shipped_expected_at) - issued if po.shipped_expected_at else 0.0
            at_least = max(age, announced)
            if at_least > late_days:
                promised = epoch_days(po.expected_at) - issued if po.expected_at else None
                expected = promised if promised is not None else expected_days
                found.append({"po_id": po_id, "supplier": po.supplier, "age_days": round(age, 3),
                              "at_least_days": round(at_least, 3),
                              "days_late": round(max(age - expected, 0.0), 3)})
        return found

    def waits_on_late_orders(self, sku: str, location: str, now: datetime) -> bool:
        """Whether an open order for the stock point is older than the item's lead time: only
        such a stock point can have ``overdue_orders`` (which tells whether it is late enough
        to count), so only it needs deciding again as time passes."""
        item = self.ledger.catalog.item(sku, now)
        expected, _, _ = self.lead_time((item.supplier or "") if item else "", sku, self.master_lead_time(item),
                                        self.master_lead_time_sd(item))
        today = epoch_days(iso_utc(now))
        for po_id in self.ledger.po_at.get((sku, location), ()):
            po = self.ledger.streams.get(f"po:{po_id}")
            if isinstance(po, PurchaseOrder) and po.issued_at and today - epoch_days(po.issued_at) > expected:
                return True
        return False

    def supplier_lead_time(self, supplier: str) -> tuple[float | None, float | None, int]:
        """A supplier's lead time over its items (the raw learned figures, weighted by the
        receipts of each): mean, spread and the number of receipts."""
        rows = [(m.n, m.mean, m.var) for m in self.supplier_items.get(supplier, ()) if m.n]
        n = sum(r[0] for r in rows)
        if not n:
            return None, None, 0
        mean = sum(k * mu for k, mu, _ in rows) / n
        var = sum(k * (v + (mu - mean) ** 2) for k, mu, v in rows) / n
        return mean, math.sqrt(max(var, 0.0)), n

    def _schedule_share(self, sp: StockPoint, lead_time_days: float) -> float:
        """The share of a stock point's demand over the lead time that the schedule already
        shows (0 to 1)."""
        use = self.scheduled_use.get(sp.id)
        leads = self.schedule_leads.get(sp.location)
        if not use or not use[1] or not leads or lead_time_days <= 0:
            return 0.0
        ahead = sum(min(x, lead_time_days) for x in leads) / len(leads) / lead_time_days
        return min(use[0] / use[1], 1.0) * ahead

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
        status = self.ledger.lot_status
        # Used-up lots (most of a stock point's lots, after a while) add nothing, so only the
        # others need their status, which is the costly part. The result is the same number
        # as summing over every usable lot, and of the same type: 0 (int) when no lot is
        # usable, a float otherwise.
        total, usable = 0.0, False
        for lot, q in sp.lots.items():
            if q != 0 and status(sp.sku, lot, now, tz) == "ok":
                total += q
                usable = True
        if usable:
            return total
        return 0.0 if any(q == 0 and status(sp.sku, lot, now, tz) == "ok"
                          for lot, q in sp.lots.items()) else 0

    def substitutes(self, sp: StockPoint, now: datetime) -> list[dict[str, Any]]:
        """The item's registered substitutes with usable stock: at this location first, then
        elsewhere on its site."""
        item = self.ledger.catalog.item(sp.sku, now)
        found = []
        for sku in (item.extra.get("substitutes") or []) if item else []:
            for sid, other in self.ledger.streams.items():
                if (isinstance(other, StockPoint) and other.sku == sku and other.site == sp.site
                        and sid.startswith("sp:")):
                    q = self.usable_on_hand(other, now)
                    if q > 0:
                        found.append({"sku": sku, "location": other.location, "on_hand": float(q),
                                      "same_location": other.location == sp.location})
        return sorted(found, key=lambda f: (not f["same_location"], -f["on_hand"], f["sku"], f["location"]))

    def decide(self, sp_id: str, intake: Intake, now: datetime, cause: str | None) -> None:
        sp = self.ledger.streams.get(sp_id)
        if not isinstance(sp, StockPoint):
            return
        policy = self.policy(sp, now)
        if policy is None:
            return
        item = self.ledger.catalog.item(sp.sku, now)
        assert item is not None
        threshold = self.settings.change_threshold
        recorded: dict[str, Any] | None = None

        def decision(**fields: Any) -> dict[str, Any]:
            nonlocal recorded
            if recorded is None:  # the inputs are written out once, for the decisions recorded
                recorded = {"sku": sp.sku, "location": sp.location, "cause_event_id": cause,
                            "decided_at": iso_utc(now), "policy": policy.as_dict()}
            return dict(recorded, **fields)

        if changed_enough(sp.safety_stock, policy.safety_stock, threshold):
            intake.record_decision(sp, decision(type="safety_stock_changed", old=sp.safety_stock,
                                                new=policy.safety_stock), now)
        if changed_enough(sp.reorder_point, policy.reorder_point, threshold) or (
                sp.order_up_to is not None
                and changed_enough(sp.order_up_to, policy.order_up_to, threshold)):
            intake.record_decision(sp, decision(type="reorder_point_changed", old=sp.reorder_point,
                                                new=policy.reorder_point,
                                                order_up_to=policy.order_up_to), now)
        on_hand = self.usable_on_hand(sp, now)
        on_order = self.ledger.on_order.get((sp.sku, sp.location), 0.0)
        ip = inventory_position(on_hand, on_order)
        rop, out = policy.reorder_point, policy.order_up_to
        demand = policy.demand.mean
        if ip <= rop and not sp.need_open and out > 0:
            shelf_life = item.extra.get("shelf_life_days")
            # What perishable stock will be used before it expires is judged on the baseline:
            # a spike's recent rate is not a forecast for the whole shelf life.
            cap = expiry_cap(min(demand, policy.demand.baseline_mean or demand), float(shelf_life),
                             on_hand, policy.lead_time_days) if shelf_life else None
            qty = order_quantity(ip, out, item.pack_size, float(item.extra.get("min_order") or 0), cap)
            if qty > 0:
                intake.record_decision(sp, decision(type="replenishment_needed", quantity=qty,
                                                    inventory_position=ip, on_hand=on_hand,
                                                    on_order=on_order, expiry_cap=cap), now)
        elif ip > rop and sp.need_open:
            intake.record_decision(sp, decision(type="replenishment_covered", inventory_position=ip,
                                                on_hand=on_hand, on_order=on_order), now)
        self._alerts(sp, intake, now, cause, on_hand, policy)

    def _alerts(self, sp: StockPoint, intake: Intake, now: datetime, cause: str | None,
                on_hand: float, policy: Policy) -> None:
        demand, ltd_mean = policy.demand.mean, policy.ltd.mean
        conditions = {
            c.ALERT_STOCKOUT: (on_hand <= 0 and demand > 0,
                               lambda: f"{sp.sku} is out of stock at {sp.location}"),
            c.ALERT_STOCKOUT_RISK: (0 < on_hand < ltd_mean,
                                    lambda: f"{sp.sku} at {sp.location}: {on_hand:g} usable on hand "
                                            f"will not cover the {ltd_mean:.1f} expected over the "
                                            f"{policy.lead_time_days:.1f}-day lead time"),
            c.ALERT_DEMAND_SPIKE: (policy.demand.spike,
                                   lambda: f"demand spike for {sp.sku} at {sp.location}: "
                                           f"{demand:.1f}/day against a baseline of "
                                           f"{policy.demand.baseline_mean:.1f}/day"),
        }
        for kind, (on, message) in conditions.items():
            open_id = intake.open_alert(sp, kind)
            if on and open_id is None:
                text, extra = message(), None
                if kind in (c.ALERT_STOCKOUT, c.ALERT_STOCKOUT_RISK) and (subs := self.substitutes(sp, now)):
                    # Name the registered substitutes that have stock (README, "Procurement").
                    text += "; substitute with stock: " + ", ".join(
                        f"{x['sku']} ({x['on_hand']:g} at {x['location']})" for x in subs[:3])
                    extra = {"substitutes": subs}
                intake.raise_alert(sp, kind, cause, text, now, extra)
            elif not on and open_id is not None:
                intake.change_alert(open_id, "resolved", "condition cleared", SYSTEM, now)
        self._overdue_alerts(sp, intake, now, cause, on_hand, policy)

    def _overdue_alerts(self, sp: StockPoint, intake: Intake, now: datetime, cause: str | None,
                        on_hand: float, policy: Policy) -> None:
        """``order_overdue``: one per late order at this stock point while it is late, resolved
        once it is received (or no longer open)."""
        late = {o["po_id"]: o for o in policy.overdue}
        for po_id, o in late.items():
            if intake.open_alert(sp, c.ALERT_ORDER_OVERDUE, po_id) is None:
                at_risk = on_hand < policy.ltd.mean
                intake.raise_alert(
                    sp, c.ALERT_ORDER_OVERDUE, cause,
                    f"purchase order {po_id} from {o['supplier']} is {o['days_late']:.1f} days late for "
                    f"{sp.sku} at {sp.location}" + ("; the stock point may run out before it arrives"
                                                    if at_risk else ""),
                    now, {"po_id": po_id, "order_supplier": o["supplier"], "days_late": o["days_late"],
                          "stock_points_at_risk": [sp.id] if at_risk else []}, subject=po_id)
        for alert_id in sorted(sp.open_alerts):
            alert = self.ledger.alerts.get(alert_id) or {}
            if alert.get("kind") == c.ALERT_ORDER_OVERDUE and alert.get("po_id") not in late:
                intake.change_alert(alert_id, "resolved", "the order arrived or is no longer open", SYSTEM, now)
