"""A seeded synthetic hospital: its locations, items, suppliers, procedures with their
preference cards, and the stock points (item × location) that buy from suppliers.

Everything here is drawn from one ``random.Random(seed)``: the same seed gives the same
hospital. Demand itself is drawn by ``scenarios.demand_plan``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

SITE = "H1"
TIMEZONE = "UTC"  # simulated days are UTC days, as the KPIs' days are

# kind -> how items of that kind are used
KINDS = ("consumable", "intermittent", "respiratory", "short_shelf_life", "or_item")


@dataclass(frozen=True)
class Supplier:
    supplier: str
    name: str
    quoted_lead_time_days: int
    lead_time_cv: float  # spread of the actual lead time (coefficient of variation)
    on_time: float  # share of orders that arrive within the quoted lead time
    price_factor: float


@dataclass(frozen=True)
class Item:
    sku: str
    description: str
    kind: str
    family: str
    criticality: str
    pack_size: int
    unit_cost: float
    supplier: str
    lead_time_days: int  # the quoted lead time, as the item master holds it
    shelf_life_days: int | None = None


@dataclass(frozen=True)
class Location:
    location: str
    name: str
    kind: str  # ward, or_core, central_store


@dataclass(frozen=True)
class StockPoint:
    sku: str
    location: str
    rate: float  # mean use per day (before weekday, season and scenario factors)
    p_day: float  # chance of a day with use (intermittent items; 1 for fast movers)
    size_mean: float  # mean size of one day's use when there is use (intermittent items)
    seasonal: bool = False

    @property
    def id(self) -> str:
        return f"{self.sku}@{self.location}"


@dataclass(frozen=True)
class Procedure:
    procedure: str
    card: tuple[tuple[str, float, float], ...]  # (sku, quantity, chance it is used)


@dataclass
class Hospital:
    seed: int
    locations: list[Location]
    suppliers: dict[str, Supplier]
    items: dict[str, Item]
    stock_points: list[StockPoint]
    procedures: list[Procedure]
    or_cores: list[str]
    cases_per_day: float  # per OR core, on weekdays
    families: dict[str, list[str]] = field(default_factory=dict)

    def item(self, sku: str) -> Item:
        return self.items[sku]


def generate_hospital(seed: int, n_items: int = 300) -> Hospital:
    """A hospital of one site with a central store, wards and OR cores, ``n_items`` items of
    the kinds hospitals stock, five suppliers and a dozen procedures."""
    rng = random.Random(f"hospital-{seed}")
    locations = [Location("CS", "Central store", "central_store")]
    wards = [f"W{i}" for i in range(1, 5)]
    locations += [Location(w, f"Ward {w[1:]}", "ward") for w in wards]
    or_cores = ["OR1", "OR2"]
    locations += [Location(o, f"Operating-room core {o[2:]}", "or_core") for o in or_cores]
    suppliers = {}
    for i, (name, lt, cv, on_time, price) in enumerate([
            ("MedSupply SA", 3, 0.25, 0.92, 1.00), ("Surgica GmbH", 7, 0.35, 0.85, 1.05),
            ("OrthoImplant Ltd", 10, 0.40, 0.80, 1.10), ("PharmaLog BV", 2, 0.20, 0.95, 0.98),
            ("RespiCare AB", 5, 0.30, 0.88, 1.02)]):
        sid = f"SUP{i + 1}"
        suppliers[sid] = Supplier(sid, name, lt, cv, on_time, price)
    shares = {"consumable": 0.40, "intermittent": 0.20, "respiratory": 0.10, "short_shelf_life": 0.10,
              "or_item": 0.20}
    counts = {k: max(1, round(n_items * s)) for k, s in shares.items()}
    items: dict[str, Item] = {}
    stock_points: list[StockPoint] = []
    families: dict[str, list[str]] = {}

    def add(kind: str, n: int) -> None:
        for j in range(n):
            sku = f"{kind[:3].upper()}-{j + 1:03d}"
            if kind == "consumable":
                sup = rng.choice(["SUP1", "SUP1", "SUP4"])
                item = Item(sku, f"Consumable {j + 1}", kind, "general", rng.choice(["normal", "normal", "high"]),
                            rng.choice([10, 20, 50, 100]), round(rng.uniform(0.05, 4.0), 2), sup,
                            suppliers[sup].quoted_lead_time_days)
                for loc in rng.sample(wards, rng.randint(2, 4)):
                    stock_points.append(StockPoint(sku, loc, rng.uniform(2.0, 30.0), 1.0, 0.0))
            elif kind == "intermittent":
                sup = rng.choice(["SUP2", "SUP2", "SUP1"])
                item = Item(sku, f"Sterile kit {j + 1}", kind, "sterile_kits", rng.choice(["high", "critical"]),
                            1, round(rng.uniform(20.0, 400.0), 2), sup, suppliers[sup].quoted_lead_time_days)
                for loc in rng.sample(wards + ["CS"], rng.randint(1, 2)):
                    p, size = rng.uniform(0.05, 0.4), rng.uniform(1.0, 2.5)
                    stock_points.append(StockPoint(sku, loc, p * size, p, size))
            elif kind == "respiratory":
                sup = "SUP5"
                item = Item(sku, f"Respiratory item {j + 1}", kind, "respiratory",
                            rng.choice(["normal", "high"]), rng.choice([10, 20, 50]),
                            round(rng.uniform(0.5, 12.0), 2), sup, suppliers[sup].quoted_lead_time_days)
                for loc in rng.sample(wards, rng.randint(2, 3)):
                    stock_points.append(StockPoint(sku, loc, rng.uniform(1.0, 12.0), 1.0, 0.0, seasonal=True))
            elif kind == "short_shelf_life":
                sup = "SUP4"
                item = Item(sku, f"Short-life item {j + 1}", kind, "short_shelf_life",
                            rng.choice(["high", "critical"]), rng.choice([1, 5, 10]),
                            round(rng.uniform(5.0, 80.0), 2), sup, suppliers[sup].quoted_lead_time_days,
                            shelf_life_days=rng.choice([14, 21, 30, 45]))
                for loc in rng.sample(wards + ["CS"], rng.randint(1, 2)):
                    stock_points.append(StockPoint(sku, loc, rng.uniform(0.5, 6.0), 1.0, 0.0))
            else:
                sup = rng.choice(["SUP2", "SUP3", "SUP3"])
                item = Item(sku, f"OR implant or kit {j + 1}", kind, "or", rng.choice(["high", "critical"]),
                            rng.choice([1, 1, 2, 5]), round(rng.uniform(30.0, 1500.0), 2), sup,
                            suppliers[sup].quoted_lead_time_days)
                for loc in or_cores:
                    stock_points.append(StockPoint(sku, loc, 0.0, 0.0, 0.0))
            items[sku] = item
            families.setdefault(item.family, []).append(sku)

    for kind in KINDS:
        add(kind, counts[kind])
    or_skus = families.get("or", [])
    procedures = []
    for k in range(12):
        card_skus = rng.sample(or_skus, min(len(or_skus), rng.randint(3, 8))) if or_skus else []
        card = tuple((s, float(rng.choice([1, 1, 1, 2, 3])), round(rng.uniform(0.5, 0.95), 2))
                     for s in card_skus)
        procedures.append(Procedure(f"PROC-{k + 1:02d}", card))
    return Hospital(seed, locations, suppliers, items, stock_points, procedures, or_cores,
                    cases_per_day=4.0, families=families)


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth for small means, a rounded normal for large ones)."""
    if mean <= 0:
        return 0
    if mean > 40:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
