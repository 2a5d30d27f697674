"""The simulation: one day at a time, the same demand for every policy.

Each day: deliveries due arrive (morning), a recall quarantines its lots, the day's demand
is met first-expiry-first-out from usable stock (what stock cannot meet is **lost**: the ward
borrows or the case uses a substitute, recorded outside these books; it is not backordered),
stock past its expiry is removed at the end of the day, the KPIs close the day, and the
policy orders. An order arrives after a lead time drawn from its supplier (the quoted lead
time × a log-normal spread, plus a delay when it is late; a disrupted supplier's is doubled
and half its deliveries come in two parts). The first 90 days are warm-up: no figure counts
them. Figures are counted with ``domain.kpis``, the one definition the KPIs use.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from domain.kpis import EMPTY, CycleTally, KpiTally, is_stockout_day, weighted_stockout_days
from domain.policy import DEFAULT_SERVICE_LEVELS
from streams.simulation.hospital import Hospital, generate_hospital
from streams.simulation.policies import (
    ADMIN,
    BASELINES,
    SCANNER,
    Baseline,
    Dynamic,
    Setup,
    packs,
)
from streams.simulation.scenarios import (
    WARM_UP_DAYS,
    DemandPlan,
    Scenario,
    demand_plan,
    make_scenario,
)

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
LONG_LIFE_DAYS = 3 * 365
Progress = Callable[[str, int, int], None]


class Lot:
    __slots__ = ("lot", "qty", "expiry")

    def __init__(self, lot: str, qty: float, expiry: int) -> None:
        self.lot, self.qty, self.expiry = lot, qty, expiry


@dataclass
class Delivery:
    day: int
    sp_id: str
    qty: float
    po_id: str
    lot: str


@dataclass
class RunResult:
    policy: str
    figures: dict[str, Any]
    series: dict[str, dict[str, list[Any]]] = field(default_factory=dict)


@dataclass
class World:
    hospital: Hospital
    scenario: Scenario
    plan: DemandPlan
    days: int
    seed: int
    rates: dict[str, float]  # expected use per day by stock point (for the opening stock)
    tracked: list[str]  # stock points whose series the report plots
    opening: dict[str, float] | None = None  # the opening stock, when it is given (backtest)
    n_items: int = 0


USES_PER_DAY = 1  # uses a ward's day is sent as (1: one line per stock point and day, as an ERP exports)


BULK_HOUR = 21.0  # ``bulk_daily``: the hour the day's use is posted


def spread(qty: float, posting: str = "daily") -> list[tuple[float, float]]:
    """A day's use on a ward as (hour, quantity) uses: ``daily``, one use between 08:00 and
    20:00; ``bulk``, one at ``BULK_HOUR``; ``units``, one use per unit through 08:00-20:00. With more than
    one use a day the processor sees scans through the day (fewer false spikes: one line a day
    lifts the detector's recent rate ~1.6-fold right after it) but each use is smaller than
    the day's, so the undershoot no longer covers the up-to-a-day wait for the day-end order
    round; with one line a day it matches the backtest's daily history. Measured on seed 1,
    steady, 200 days, 60 items: at 80 % service, 4 uses a day gave 478 stockout-days at
    289k average inventory, one line a day 343 at 314k."""
    if posting == "bulk":
        return [(BULK_HOUR, qty)]
    n = max(1, int(qty) if posting == "units" else min(int(qty), USES_PER_DAY))
    base, extra = divmod(int(qty), n)
    parts = [float(base + (1 if k < extra else 0)) for k in range(n)]
    parts[-1] += qty - int(qty)
    return [(8.0 + 12.0 * (k + 0.5) / n, q) for k, q in enumerate(parts)]


def build_world(scenario: str, days: int, seed: int, n_items: int = 300) -> World:
    hospital = generate_hospital(seed, n_items)
    sc = make_scenario(scenario, days, hospital, seed)
    plan = demand_plan(hospital, sc, days, seed)
    rates: dict[str, float] = {}
    share = hospital.cases_per_day * 5 / 7 / max(len(hospital.procedures), 1)
    for sp in hospital.stock_points:
        rates[sp.id] = sp.rate
    for proc in hospital.procedures:
        for sku, qty, chance in proc.card:
            for core in hospital.or_cores:
                rates[f"{sku}@{core}"] = rates.get(f"{sku}@{core}", 0.0) + share * qty * chance
    # A fast mover, an intermittent kit, a respiratory item and an OR item, for the plots.
    tracked: list[str] = []
    for kind in ("consumable", "respiratory", "intermittent", "or_item", "short_shelf_life"):
        sps = [sp for sp in hospital.stock_points if hospital.items[sp.sku].kind == kind]
        if sps:
            tracked.append(max(sps, key=lambda s: (rates[s.id], s.id)).id)
    return World(hospital, sc, plan, days, seed, rates, tracked, n_items=len(hospital.items))


def history_world(history: Any, seed: int = 0) -> World:
    """The world of a backtest: the hospital's own items, demand and opening stock."""
    from streams.simulation.backtest import history_scenario
    plan = history.plan
    rates = {sp.id: sum(d.get(sp.id, 0.0) for d in plan.ward) / plan.days for sp in history.hospital.stock_points}
    tracked = sorted(rates, key=lambda k: (-rates[k], k))[:4]
    return World(history.hospital, history_scenario(plan.days), plan, plan.days, seed, rates, tracked,
                 opening=history.opening, n_items=len(history.hospital.items))


def simulate_policy(world: World, name: str, setup: Setup | None = None,
                    progress: Progress | None = None) -> RunResult:
    """One policy over the world's days. ``setup``: its allocation (by criticality, the
    default, or by cost) and safety factor (``policies.Setup``)."""
    h, plan, sc = world.hospital, world.plan, world.scenario
    setup = setup or Setup()
    dynamic = Dynamic(h, START, setup) if name == "dynamic" else None
    baseline = Baseline(name, h, setup) if name in BASELINES else None
    if dynamic is None and baseline is None:
        raise ValueError(f"unknown policy {name!r}")
    sku_of = {sp.id: sp.sku for sp in h.stock_points}
    cost = {sp.id: h.items[sp.sku].unit_cost for sp in h.stock_points}
    stock: dict[str, list[Lot]] = {sp.id: [] for sp in h.stock_points}
    on_order: dict[str, float] = dict.fromkeys(stock, 0.0)
    history: dict[str, list[float]] = {sp_id: [] for sp_id in stock}
    pipeline: dict[int, list[Delivery]] = {}
    tally = KpiTally()
    crit_of = {sp.id: h.items[sp.sku].criticality for sp in h.stock_points}
    classes = sorted(set(crit_of.values()))
    by_class = {c: KpiTally() for c in classes}
    cycles = {c: CycleTally() for c in classes}
    out_days: dict[str, set[int]] = {}  # stock point -> its stockout days (counted)
    counts = {"orders": 0, "order_lines": 0, "emergency_orders": 0, "recalled_value": 0.0}
    series: dict[str, dict[str, list[Any]]] = {
        sp: {"on_hand": [], "reorder_point": [], "safety_stock": [], "forecast": [], "demand": []}
        for sp in world.tracked}
    n_lot = 0

    def expiry_of(sku: str, day: int) -> int:
        life = h.items[sku].shelf_life_days
        return day + (life if life else LONG_LIFE_DAYS)

    # Opening stock: three weeks of expected use plus the lead time, in whole packs.
    opening: list[tuple[str, str, float, str, int | None]] = []
    for sp in h.stock_points:
        item = h.items[sp.sku]
        qty = world.opening.get(sp.id, 0.0) if world.opening is not None else packs(
            world.rates[sp.id] * min(item.lead_time_days + 21, (item.shelf_life_days or 999) * 0.8), item.pack_size)
        if qty > 0:
            n_lot += 1
            name_ = f"OPEN{n_lot}"
            stock[sp.id].append(Lot(name_, qty, expiry_of(sp.sku, 0)))
            opening.append((sp.id, sp.sku, qty, name_, expiry_of(sp.sku, 0)))
    if dynamic is not None:
        dynamic.register(opening)

    def usable(sp_id: str) -> float:
        return sum(lot.qty for lot in stock[sp_id])

    def take(day: int, sp_id: str, qty: float, facts: list[tuple[dict[str, Any], Any]],
             met_today: dict[str, float], case_id: str | None = None, hour: float = 12.0,
             part: int = 0) -> None:
        """Meet ``qty`` of demand first-expiry-first-out from usable stock (what is short is lost)."""
        got = 0.0
        lots = stock[sp_id]
        while qty - got > EMPTY and lots:
            lot = lots[0]
            use = min(lot.qty, qty - got)
            lot.qty -= use
            got += use
            if dynamic is not None:
                e = {"event_id": f"use-{day}-{sp_id}-{lot.lot}-{case_id or 'w'}{part}", "type": "usage",
                     "occurred_at": dynamic.at(day, hour), "site": "H1", "location": sp_id.split("@")[1],
                     "sku": sku_of[sp_id], "lot": lot.lot, "quantity": use}
                if case_id:
                    e["case_id"] = case_id
                facts.append((e, SCANNER))
            if lot.qty <= EMPTY:
                lots.pop(0)
        met_today[sp_id] = met_today.get(sp_id, 0.0) + got

    n_po = 0
    for day in range(world.days):
        counting = day >= WARM_UP_DAYS
        facts: list[tuple[dict[str, Any], Any]] = []
        # 1. deliveries
        for d in pipeline.pop(day, []):
            sku = sku_of[d.sp_id]
            stock[d.sp_id].append(Lot(d.lot, d.qty, expiry_of(sku, day)))
            stock[d.sp_id].sort(key=lambda lot: lot.expiry)
            on_order[d.sp_id] -= d.qty
            if dynamic is not None:
                facts.append((dynamic.receipt_event(day, d.sp_id, sku, d.qty, d.lot, expiry_of(sku, day), d.po_id),
                              SCANNER))
        # 2. a recall quarantines the recalled items' lots in stock
        if sc.recalled_skus and day == sc.start:
            returns: list[tuple[dict[str, Any], Any]] = []
            for sku in sc.recalled_skus:
                recalled: set[str] = set()
                for sp_id in stock:
                    if sku_of[sp_id] != sku:
                        continue
                    for lot in stock[sp_id]:
                        recalled.add(lot.lot)
                        if counting:
                            counts["recalled_value"] += lot.qty * cost[sp_id]
                        if dynamic is not None:  # returned to the manufacturer
                            returns.append((dynamic.waste_event(day, sp_id, sku, lot.lot, lot.qty,
                                                                f"returned under recall FSCA-{sku}", 6.75),
                                            SCANNER))
                    stock[sp_id] = []
                if dynamic is not None and recalled:
                    facts.append(({"event_id": f"recall-{sku}", "type": "recall_issued",
                                   "occurred_at": dynamic.at(day, 6.5), "sku": sku, "lots": sorted(recalled),
                                   "reference": f"FSCA-{sku}", "recall_class": "II"}, ADMIN))
            facts.extend(returns)
        if dynamic is not None:
            for case in plan.scheduled[day]:
                facts.append(({"event_id": f"sched-{case.case_id}", "type": "surgery_scheduled",
                               "occurred_at": dynamic.at(day, 7), "case_id": case.case_id,
                               "procedure": case.procedure, "location": case.location, "site": "H1",
                               "scheduled_for": dynamic.at(case.day, 8)}, SCANNER))
        # 3. demand, first expiry first out; what stock cannot meet is lost
        demand = plan.demand(day)
        met_today: dict[str, float] = {}

        for case in plan.cases[day]:
            for sku, qty in case.usage:
                take(day, f"{sku}@{case.location}", qty, facts, met_today, case.case_id, 10.0)
            if dynamic is not None:
                facts.append(({"event_id": f"done-{case.case_id}", "type": "surgery_completed",
                               "occurred_at": dynamic.at(day, 11), "case_id": case.case_id,
                               "procedure": case.procedure, "location": case.location, "site": "H1"}, SCANNER))
        for sp_id, qty in plan.ward[day].items():
            for k, (hour, part) in enumerate(spread(qty, sc.posting)):
                take(day, sp_id, part, facts, met_today, None, hour, k)
        # 4. expiry at the end of the day
        # (a lot is usable through its expiry day; staff write it off that evening)
        for sp_id, lots in stock.items():
            if lots and lots[0].expiry <= day:
                keep = []
                for lot in lots:
                    if lot.expiry <= day:
                        if counting:
                            tally.expire(lot.qty, cost[sp_id])
                        if dynamic is not None:
                            facts.append((dynamic.waste_event(day, sp_id, sku_of[sp_id], lot.lot, lot.qty,
                                                              "expired"), SCANNER))
                    else:
                        keep.append(lot)
                stock[sp_id] = keep
        for sp_id in history:
            history[sp_id].append(met_today.get(sp_id, 0.0))
        if dynamic is not None:
            dynamic.post(day, 22, facts)
        # 5. the KPIs close the day
        if counting:
            rows = [(sp_id, demand.get(sp_id, 0.0), met_today.get(sp_id, 0.0), usable(sp_id) * cost[sp_id],
                     cost[sp_id]) for sp_id in stock]
            tally.close_day(rows)
            for c in classes:
                by_class[c].close_day([row for row in rows if crit_of[row[0]] == c])
            for sp_id, wanted_today, met, _, _ in rows:
                cycles[crit_of[sp_id]].day(sp_id, is_stockout_day(wanted_today - met))
                if is_stockout_day(wanted_today - met):
                    out_days.setdefault(sp_id, set()).add(day)
        # 6. the policy orders
        if dynamic is not None:
            wanted = dynamic.decisions()
        else:
            assert baseline is not None
            wanted = baseline.review(day, history, lambda s: usable(s) + on_order[s], sku_of)
        by_supplier: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for sp_id, qty in sorted(wanted.items()):
            sku = sku_of[sp_id]
            by_supplier.setdefault((h.items[sku].supplier, sp_id.split("@")[1]), []).append((sp_id, qty))
        pos = []
        for (supplier, location), lines in sorted(by_supplier.items()):
            n_po += 1
            po_id = f"PO{n_po:06d}"
            sup = h.suppliers[supplier]
            lt_factor, partial = sc.supply(day, supplier)
            if counting:
                counts["orders"] += 1
                counts["order_lines"] += len(lines)
                for sp_id, _ in lines:
                    cycles[crit_of[sp_id]].ordered(sp_id)
                counts["emergency_orders"] += sum(1 for sp_id, _ in lines if usable(sp_id) <= EMPTY)
            for i, (sp_id, qty) in enumerate(lines):
                # The supplier's delivery of an order line placed on this day for this stock
                # point: the same for every policy and safety factor (its own random stream),
                # so that a comparison and a calibration see the same supplier.
                rng = random.Random(f"supply-{world.seed}-{sc.name}-{day}-{sp_id}")
                lt = sup.quoted_lead_time_days * math.exp(rng.gauss(0.0, sup.lead_time_cv) - sup.lead_time_cv ** 2 / 2)
                if rng.random() > sup.on_time:
                    lt += rng.uniform(1.0, sup.quoted_lead_time_days)
                arrive = day + max(1, round(lt * lt_factor))
                parts = [(arrive, qty)]
                if partial and rng.random() < partial:
                    first = packs(qty * rng.uniform(0.3, 0.7), h.items[sku_of[sp_id]].pack_size)
                    if 0 < first < qty:
                        parts = [(arrive, first), (arrive + max(1, round(sup.quoted_lead_time_days * lt_factor)),
                                                   qty - first)]
                for j, (when, q) in enumerate(parts):
                    pipeline.setdefault(when, []).append(Delivery(when, sp_id, q, po_id, f"{po_id}-{i}-{j}"))
                on_order[sp_id] += qty
            if dynamic is not None:
                pos.append(({"event_id": f"po-{po_id}", "type": "po_issued", "occurred_at": dynamic.at(day, 22.5),
                             "po_id": po_id, "supplier": supplier, "location": location, "site": "H1",
                             "lines": [{"sku": sku_of[s], "quantity": q} for s, q in lines],
                             "expected_at": dynamic.at(day + sup.quoted_lead_time_days, 12)}, SCANNER))
        if dynamic is not None:
            dynamic.post(day, 22.5, pos)
        # 7. what the plots show
        policy = dynamic if dynamic is not None else baseline
        assert policy is not None
        for sp_id, s in series.items():
            rop, ss, mean = policy.plan_values(sp_id)
            s["on_hand"].append(usable(sp_id))
            s["reorder_point"].append(rop)
            s["safety_stock"].append(ss)
            s["forecast"].append(mean)
            s["demand"].append(demand.get(sp_id, 0.0))
        if progress is not None:
            progress(name, day + 1, world.days)
    figures: dict[str, Any] = dict(tally.figures(), **counts)
    for c in classes:
        cycles[c].close()
    figures["by_criticality"] = {
        c: {"stockout_days": by_class[c].stockout_days, "fill_rate": by_class[c].figures()["fill_rate"],
            "cycle_service": cycles[c].service, "cycles": cycles[c].cycles,
            "target": DEFAULT_SERVICE_LEVELS.get(c, DEFAULT_SERVICE_LEVELS["normal"])}
        for c in classes}
    figures["allocation"] = setup.allocation
    figures["safety_factor"] = setup.safety_factor
    if dynamic is not None:
        figures["events_processed"] = dynamic.events
        figures["events_rejected"] = len(dynamic.rejected)
        figures["service_levels"] = dynamic.service_levels()
        figures["alerts"] = alert_figures(dynamic, world, out_days)
    return RunResult(name, figures, series)


def alert_figures(dynamic: Dynamic, world: World, out_days: dict[str, set[int]]) -> dict[str, Any]:
    """The dynamic run's alerts raised after warm-up: per stock point and month, by kind (a
    grouped alert counts once, its repeats in ``repeats``), and the share of ``stockout_risk``
    alerts followed by a real stockout at their stock point within the item's quoted lead
    time (day of the raise included)."""
    months = max(world.days - WARM_UP_DAYS, 1) / (365 / 12)
    n_sp = max(len(world.hospital.stock_points), 1)
    by_kind: dict[str, int] = {}
    repeats, risks, followed = 0, 0, 0
    for alert in dynamic.processor.alerts(limit=1 << 30):
        day = (datetime.fromisoformat(alert["raised_at"].replace("Z", "+00:00")) - START).days
        if day < WARM_UP_DAYS:
            continue
        by_kind[alert["kind"]] = by_kind.get(alert["kind"], 0) + 1
        repeats += int(alert.get("count") or 1) - 1
        if alert["kind"] == "stockout_risk" and alert.get("sku") and alert.get("location"):
            sp_id = f"{alert['sku']}@{alert['location']}"
            lead = world.hospital.items[alert["sku"]].lead_time_days if alert["sku"] in world.hospital.items else 0
            risks += 1
            # (the simulated day's facts are decided at its end: a risk raised on a day is
            # followed by a stockout on the days after it, up to the lead time)
            followed += any(d in out_days.get(sp_id, ()) for d in range(day + 1, day + lead + 1))
    total = sum(by_kind.values())
    return {"per_stock_point_month": total / n_sp / months,
            "by_kind_per_stock_point_month": {k: v / n_sp / months for k, v in sorted(by_kind.items())},
            "repeats": repeats, "stockout_risk": risks,
            "stockout_risk_followed_by_stockout": followed / risks if risks else None}


SERVICE_TOLERANCE = 0.01  # no calibration takes a class's cycle service more than this below its target
FACTOR_RANGE = (0.0, 4.0)  # the safety factors a calibration tries
CALIBRATION_STEPS = 5  # bisection steps on the safety factor (from [1, 4]: to within 0.1)
REACHED = 0.95  # a calibration stopped by the top factor reaches its target only this close
TABLES = {"model_only": "criticality", "full_system": "cost"}  # table -> allocation


def weighted(figures: dict[str, Any], weights: dict[str, float] | None = None) -> float:
    """A run's stockout-days weighted by criticality (``domain.kpis.weighted_stockout_days``)."""
    return weighted_stockout_days({c: v["stockout_days"] for c, v in figures["by_criticality"].items()}, weights)


def service_short(figures: dict[str, Any]) -> list[str]:
    """The criticality classes whose cycle service is more than a point below their target."""
    return [c for c, v in figures["by_criticality"].items()
            if v["cycle_service"] < v["target"] - SERVICE_TOLERANCE]


@dataclass
class Calibration:
    """One policy tuned by its safety factor to a target average inventory value: the highest
    factor whose inventory is at most the target, but never a factor below 1 that takes a
    class's cycle service more than a point below its target (then the lowest factor that
    keeps it: the target is not met). ``tries``: (factor, inventory value, weighted
    stockout-days)."""

    policy: str
    target_inventory: float
    result: RunResult
    tries: list[tuple[float, float, float]]

    @property
    def factor(self) -> float:
        return float(self.result.figures["safety_factor"])

    @property
    def met_target(self) -> bool:
        """At most the target, and (at the top of the factors tried) not far below it."""
        inv = self.result.figures["avg_inventory_value"]
        capped = self.factor >= FACTOR_RANGE[1] and inv < REACHED * self.target_inventory
        return bool(inv <= self.target_inventory * (1 + 1e-9) and not capped)

    def as_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "target_avg_inventory_value": self.target_inventory,
                "safety_factor": self.factor, "met_target": self.met_target,
                "tries": [{"safety_factor": f, "avg_inventory_value": v, "weighted_stockout_days": w}
                          for f, v, w in self.tries]}


def _run_in_child(conn: Any, world: World, name: str, setup: Setup) -> None:
    """A child's whole life: one run, its result (or its error) sent back, then exit."""
    try:
        conn.send(("ok", simulate_policy(world, name, setup)))
    except BaseException:  # noqa: BLE001 - the parent raises it
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()
        os._exit(0)  # not the exit handlers of the process it was forked from


def _context() -> Any:
    """Children forked from a server process that has imported the simulator and nothing
    else, started once: not forked from this process, whose other threads (the calibrations'
    waits, a progress bar's refresh) may hold locks a child would inherit held."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["streams.simulation.runner"])
    return _CONTEXT


_CONTEXT: Any = None


class Runs:
    """The simulation runs of one world: each in a child process of its own (``workers`` at
    once; a run's processor does not hand all its memory back to the system, so a comparison
    of dozens of runs in one process grew by about 290 MB a run on 40 items), or, with
    ``workers=0``, here."""

    def __init__(self, world: World, workers: int = 2, progress: Progress | None = None) -> None:
        self.world, self.workers, self.progress = world, workers, progress
        self.slots = threading.BoundedSemaphore(max(workers, 1))

    def run(self, name: str, setup: Setup) -> RunResult:
        if self.workers <= 0:
            return simulate_policy(self.world, name, setup, progress=self.progress)
        ctx = _context()
        with self.slots:
            receive, send = ctx.Pipe(duplex=False)
            child = ctx.Process(target=_run_in_child, args=(send, self.world, name, setup), daemon=True)
            child.start()
            send.close()
            try:
                status, value = receive.recv()
            except EOFError:
                raise RuntimeError(f"the {name} run's process ended without a result "
                                   f"(exit code {child.exitcode})") from None
            finally:
                receive.close()
                child.join()
        if status != "ok":
            raise RuntimeError(f"the {name} run failed:\n{value}")
        if self.progress is not None:
            self.progress(name, self.world.days, self.world.days)
        result: RunResult = value
        return result

    def together(self, calls: Sequence[Callable[[], Any]]) -> list[Any]:
        """Independent chains of runs (the calibrations), side by side."""
        if self.workers <= 0 or len(calls) < 2:
            return [call() for call in calls]
        with ThreadPoolExecutor(len(calls)) as ex:
            return list(ex.map(lambda call: call(), calls))


def calibrate(runs: Runs, name: str, allocation: str, target_inventory: float,
              start: RunResult | None = None, steps: int = CALIBRATION_STEPS,
              weights: dict[str, float] | None = None) -> Calibration:
    """``name`` under ``allocation`` tuned by its safety factor to ``target_inventory``: a
    bisection on the factor in ``FACTOR_RANGE`` (``start``: its run at factor 1, if made)."""
    done: dict[float, RunResult] = {}
    tries: list[tuple[float, float, float]] = []

    def run(f: float) -> RunResult:
        if f not in done:
            r = start if f == 1.0 and start is not None else runs.run(name, Setup(allocation, f))
            done[f] = r
            tries.append((f, r.figures["avg_inventory_value"], weighted(r.figures, weights)))
        return done[f]

    def fits(f: float) -> bool:
        return bool(run(f).figures["avg_inventory_value"] <= target_inventory * (1 + 1e-9))

    def keeps_service(f: float) -> bool:
        return f >= 1.0 or not service_short(run(f).figures)

    lo, hi = FACTOR_RANGE
    if fits(1.0):
        lo = 1.0
        if fits(hi):
            lo = hi
    elif not fits(lo):
        hi = lo
    else:
        hi = 1.0
    for _ in range(steps if lo < hi else 0):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    best = lo
    if not keeps_service(best):  # the lowest factor up to 1 that keeps every class's service
        lo, hi = best, 1.0
        for _ in range(steps):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if keeps_service(mid) else (mid, hi)
        best = hi
    return Calibration(name, target_inventory, run(best), sorted(tries))


@dataclass
class Table:
    """One of the comparison's two tables: every policy at factor 1 under one allocation;
    dynamic tuned to the leanest baseline's inventory; each baseline tuned to dynamic's."""

    name: str
    allocation: str
    results: dict[str, RunResult]
    dynamic_tuned: Calibration | None = None
    baselines_tuned: dict[str, Calibration] = field(default_factory=dict)

    @property
    def leanest(self) -> str:
        return min(BASELINES, key=lambda n: self.results[n].figures["avg_inventory_value"])

    def as_json(self, weights: dict[str, float] | None = None) -> dict[str, Any]:
        def figures(r: RunResult) -> dict[str, Any]:
            return dict(r.figures, weighted_stockout_days=weighted(r.figures, weights),
                        service_short=service_short(r.figures))
        out: dict[str, Any] = {"allocation": self.allocation,
                               "policies": {n: figures(r) for n, r in self.results.items()}}
        if self.dynamic_tuned is not None:
            out["dynamic_to_leanest"] = dict(self.dynamic_tuned.as_json(), leanest=self.leanest,
                                             figures=figures(self.dynamic_tuned.result))
        out["baselines_to_dynamic"] = {n: dict(c.as_json(), figures=figures(c.result))
                                       for n, c in self.baselines_tuned.items()}
        return out


@dataclass
class Comparison:
    scenario: str
    seed: int
    days: int
    n_items: int
    tables: dict[str, Table]
    world: World
    weights: dict[str, float] | None = None

    @property
    def results(self) -> dict[str, RunResult]:
        """The full-system table's runs at factor 1 (the plots' and the single table's)."""
        return self.tables["full_system"].results if "full_system" in self.tables else \
            next(iter(self.tables.values())).results

    def as_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "seed": self.seed, "days": self.days,
                "warm_up_days": WARM_UP_DAYS, "items": self.n_items,
                "stock_points": len(self.world.hospital.stock_points), "unmet_demand": "lost",
                "criticality_weights": self.weights, "service_tolerance": SERVICE_TOLERANCE,
                "tables": {n: t.as_json(self.weights) for n, t in self.tables.items()}}


def compare_world(world: World, calibrate_policies: bool = True, progress: Progress | None = None,
                  tables: tuple[str, ...] = tuple(TABLES), weights: dict[str, float] | None = None,
                  workers: int = 2) -> Comparison:
    """Each table: every policy at factor 1 under the table's allocation; then (unless
    ``calibrate_policies`` is false) dynamic tuned to the leanest baseline's average inventory
    value, and each baseline tuned to dynamic's (at its factor 1). ``workers``: runs at once,
    each in its own process (0: all here, one after another)."""
    out: dict[str, Table] = {}
    names = (*BASELINES, "dynamic")
    runs = Runs(world, workers, progress)
    for tname in tables:
        allocation = TABLES[tname]
        results = dict(zip(names, runs.together(
            [partial(runs.run, n, Setup(allocation)) for n in names]), strict=True))
        t = Table(tname, allocation, results)
        if calibrate_policies:
            target = results[t.leanest].figures["avg_inventory_value"]
            dyn_inv = results["dynamic"].figures["avg_inventory_value"]
            tuned = runs.together(
                [partial(calibrate, runs, "dynamic", allocation, target, results["dynamic"], weights=weights)]
                + [partial(calibrate, runs, n, allocation, dyn_inv, results[n], weights=weights)
                   for n in BASELINES])
            t.dynamic_tuned = tuned[0]
            t.baselines_tuned = dict(zip(BASELINES, tuned[1:], strict=True))
        out[tname] = t
    return Comparison(world.scenario.name, world.seed, world.days, world.n_items, out, world, weights)


def compare(scenario: str, days: int, seed: int, n_items: int = 300, calibrate_policies: bool = True,
            progress: Progress | None = None, tables: tuple[str, ...] = tuple(TABLES),
            weights: dict[str, float] | None = None, workers: int = 2) -> Comparison:
    return compare_world(build_world(scenario, days, seed, n_items), calibrate_policies, progress, tables,
                         weights, workers)
