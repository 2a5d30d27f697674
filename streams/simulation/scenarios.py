"""Scenario switches and the demand they produce, drawn once so every policy meets the same
demand: ``steady``, ``surge`` (an outbreak: several-fold use of the respiratory family for
weeks), ``supplier_disruption`` (lead times double and deliveries come partial),
``recall`` (lots in stock recalled), ``holiday`` (a quiet fortnight, no elective surgery),
and the demand shapes of issue 13: ``bulk_daily`` (each ward's use posted once a day as one
quantity at 21:00, as a cabinet's or an ERP's daily feed), ``unit_poisson`` (plain Poisson
use, scanned one unit at a time through the day), ``lumpy`` (the fast movers' use comes on a
quarter of the days, four times as large), ``step`` (the general consumables' use ×3
overnight for weeks, then back overnight), ``ramp`` (it rises steadily to ×3 over weeks and
stays), ``collapse`` (it falls to a third overnight and stays, as when a surgeon leaves).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from streams.simulation.hospital import Hospital, poisson

SCENARIOS = ("steady", "surge", "supplier_disruption", "recall", "holiday", "bulk_daily", "unit_poisson",
             "lumpy", "step", "ramp", "collapse")
POSTINGS = ("daily", "bulk", "units")  # how a ward's day of use reaches the books (``runner.spread``)
LUMPY_DAY_SHARE = 0.25  # ``lumpy``: the share of days with use
WARM_UP_DAYS = 90
WEEKDAY = (1.1, 1.1, 1.05, 1.05, 1.0, 0.6, 0.55)  # Monday first


@dataclass(frozen=True)
class Scenario:
    name: str
    start: int  # first day of the event
    length: int  # days it lasts
    surge_factor: float = 1.0
    surge_family: str = "respiratory"
    disrupted: tuple[str, ...] = ()
    lead_time_factor: float = 1.0
    partial_share: float = 0.0  # chance that a delivery comes partial (the rest later)
    recalled_skus: tuple[str, ...] = ()
    holiday_factor: float = 1.0
    shape: str = ""  # step, ramp or collapse: the use of ``shape_family`` changes from ``start``
    shape_factor: float = 1.0
    shape_family: str = "general"
    posting: str = "daily"  # one of POSTINGS
    overdispersed: bool = True  # fast movers' daily use gamma-Poisson (else plain Poisson)
    lumpy: bool = False  # fast movers' use on LUMPY_DAY_SHARE of the days

    def active(self, day: int) -> bool:
        return self.start <= day < self.start + self.length

    def demand_factor(self, day: int, family: str, kind: str) -> float:
        if self.shape and family == self.shape_family and day >= self.start:
            if self.shape == "step":
                return self.shape_factor if self.active(day) else 1.0
            if self.shape == "ramp":
                return 1.0 + (self.shape_factor - 1.0) * min(1.0, (day - self.start + 1) / self.length)
            return self.shape_factor  # collapse
        if not self.active(day):
            return 1.0
        if self.surge_factor != 1.0 and family == self.surge_family:
            ramp = min(1.0, (day - self.start + 1) / 7.0)  # an outbreak builds over a week
            return 1.0 + (self.surge_factor - 1.0) * ramp
        if self.holiday_factor != 1.0 and kind != "or_item":
            return self.holiday_factor
        return 1.0

    def supply(self, day: int, supplier: str) -> tuple[float, float]:
        """(lead-time factor, chance of a partial delivery) for an order placed on ``day``."""
        if supplier in self.disrupted and self.active(day):
            return self.lead_time_factor, self.partial_share
        return 1.0, 0.0


def make_scenario(name: str, days: int, hospital: Hospital, seed: int) -> Scenario:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    span = max(days - WARM_UP_DAYS, 1)
    start = WARM_UP_DAYS + span // 4
    length = max(14, min(56, span // 3))
    if name == "surge":
        return Scenario(name, start, length, surge_factor=4.0)
    if name == "supplier_disruption":
        return Scenario(name, start, length, disrupted=("SUP1", "SUP2"), lead_time_factor=2.0,
                        partial_share=0.5)
    if name == "recall":
        rng = random.Random(f"recall-{seed}")
        pool = sorted(hospital.families.get("general", []) + hospital.families.get("sterile_kits", []))
        return Scenario(name, start, 1, recalled_skus=tuple(sorted(rng.sample(pool, min(6, len(pool))))))
    if name == "holiday":
        return Scenario(name, start, 14, holiday_factor=0.45)
    if name in ("step", "ramp", "collapse"):
        return Scenario(name, start, length, shape=name, shape_factor=1 / 3 if name == "collapse" else 3.0)
    if name == "bulk_daily":
        return Scenario(name, days + 1, 0, posting="bulk")
    if name == "unit_poisson":
        return Scenario(name, days + 1, 0, posting="units", overdispersed=False)
    if name == "lumpy":
        return Scenario(name, days + 1, 0, lumpy=True)
    return Scenario(name, days + 1, 0)


@dataclass(frozen=True)
class Case:
    case_id: str
    procedure: str
    location: str
    day: int
    scheduled_on: int
    usage: tuple[tuple[str, float], ...]


@dataclass
class DemandPlan:
    """What happens each day, the same for every policy: ward demand per stock point and the
    surgical cases (scheduled ahead, used on their day)."""

    days: int
    ward: list[dict[str, float]]  # day -> stock point id -> quantity
    cases: list[list[Case]]  # day -> cases done that day
    scheduled: list[list[Case]]  # day -> cases scheduled that day
    expected_rate: dict[str, float] = field(default_factory=dict)

    def demand(self, day: int) -> dict[str, float]:
        """All demand of one day by stock point (ward use and case use)."""
        out = dict(self.ward[day])
        for case in self.cases[day]:
            for sku, qty in case.usage:
                key = f"{sku}@{case.location}"
                out[key] = out.get(key, 0.0) + qty
        return out


def demand_plan(hospital: Hospital, scenario: Scenario, days: int, seed: int,
                start_weekday: int = 0) -> DemandPlan:
    """Draw every day's demand (gamma-Poisson for fast movers, so demand is overdispersed;
    Bernoulli × size for intermittent items; annual season for respiratory items) and the
    OR schedule."""
    rng = random.Random(f"demand-{seed}-{scenario.name}")
    ward: list[dict[str, float]] = []
    cases: list[list[Case]] = [[] for _ in range(days)]
    scheduled: list[list[Case]] = [[] for _ in range(days)]
    n_case = 0
    for day in range(days):
        weekday = (start_weekday + day) % 7
        season = 1.0 + 0.5 * math.cos(2 * math.pi * day / 365.0)  # winter peak at day 0
        today: dict[str, float] = {}
        for sp in hospital.stock_points:
            item = hospital.items[sp.sku]
            if item.kind == "or_item":
                continue
            factor = scenario.demand_factor(day, item.family, item.kind)
            if sp.p_day < 1.0:
                p = min(1.0, sp.p_day * factor)
                q = 1 + poisson(rng, sp.size_mean - 1.0) if rng.random() < p else 0
            else:
                mean = sp.rate * WEEKDAY[weekday] * factor * (season if sp.seasonal else 1.0)
                if scenario.lumpy:
                    q = poisson(rng, mean / LUMPY_DAY_SHARE) if rng.random() < LUMPY_DAY_SHARE else 0
                elif scenario.overdispersed:
                    q = poisson(rng, mean * rng.gammavariate(4.0, 0.25))
                else:
                    q = poisson(rng, mean)
            if q > 0:
                today[sp.id] = float(q)
        ward.append(today)
        if weekday < 5 and not (scenario.holiday_factor != 1.0 and scenario.active(day)):
            for core in hospital.or_cores:
                for _ in range(poisson(rng, hospital.cases_per_day)):
                    proc = rng.choice(hospital.procedures)
                    usage = tuple((sku, qty) for sku, qty, chance in proc.card if rng.random() < chance)
                    n_case += 1
                    lead = rng.randint(2, 14)
                    case = Case(f"C{seed}-{n_case:06d}", proc.procedure, core, day, max(day - lead, 0), usage)
                    cases[day].append(case)
                    scheduled[case.scheduled_on].append(case)
    return DemandPlan(days, ward, cases, scheduled)
