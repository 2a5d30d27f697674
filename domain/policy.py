"""The replenishment policy: each formula once, with its source.

Units: quantities in the item's base unit, time in days, rates per day.

- Lead-time demand (LTD) with uncertain lead time: mean = d·L, variance = L·σ_d² + d²·σ_L²
  (Silver, Pyke & Peterson, *Inventory and Production Management in Supply Chains*, 4th ed.,
  2017, §6.10, eq. 6.20-6.21), plus L²·Var(d̂) because d is itself an estimate (the variance
  of the lead-time forecast error; Prak, Teunter & Syntetos, EJOR 2017, "On the calculation
  of safety stocks when demand is forecasted").
- Undershoot: when use comes in transactions of X units, the inventory position is already
  U ≥ 0 below the reorder point when an order is triggered, with P(U = u) = P(X > u)/E[X]
  (the equilibrium distribution of the step of a random walk with integer steps, renewal
  theory; see Baganha, Pyke & Ferrer, IJPE 1996, on the undershoot of the reorder point). The
  reorder point covers LTD + U; for one unit per use U = 0.
- Reorder point (continuous review, cycle service level α): the smallest s with
  P(LTD ≤ s) ≥ α, from the LTD distribution itself: Poisson when variance ≤ mean, negative
  binomial matched to mean and variance otherwise (Silver, Pyke & Peterson §6.9 and §7.4 on
  slow movers; Syntetos & Boylan, IJPE 2006, for NB lead-time demand of intermittent items),
  and the normal approximation s = μ + z_α·σ only for large means (μ > 500), where it is
  accurate and cannot go negative. The reorder point is never below the mean LTD.
- Safety stock = reorder point − mean LTD (≥ 0 by construction; it includes the undershoot).
- Order quantity: up to the order-up-to level S = s + cycle stock, rounded up to the pack
  size and the minimum order, capped so that no more is bought than the stock point will
  use before the stock expires (rounded down to whole packs, but one pack when some of a
  pack will be used in time: buying none would be a stockout).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, NamedTuple

DEFAULT_SERVICE_LEVELS = {"critical": 0.995, "high": 0.98, "normal": 0.95}
# Under cost allocation (``cost_service_level``) a stock point's service level is never below
# its criticality's target (``DEFAULT_SERVICE_LEVELS`` or the levels configured): the cost
# trade-off may raise service where a unit is cheap to hold, never lower it where the ward
# needs it (issue 13: the 75 % floor for critical items let a calibration buy fewer
# stockout-days overall with critical items' service).
FORMULA = "ltd_quantile_v2"
NORMAL_ABOVE_MEAN = 500.0


def service_level(criticality: str, levels: dict[str, float] | None = None) -> float:
    """Target cycle service level for an item's criticality (configurable)."""
    table = levels or DEFAULT_SERVICE_LEVELS
    return table.get(criticality, table.get("normal", 0.95))


class LeadTimeDemand(NamedTuple):
    """A quantity by its mean and variance (a named tuple: made on every evaluation, and a
    cache key)."""

    mean: float
    variance: float

    @property
    def spread(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    def __add__(self, other: tuple[Any, ...]) -> LeadTimeDemand:  # type: ignore[override]
        """The sum of two independent quantities (means and variances add)."""
        assert isinstance(other, LeadTimeDemand)
        return LeadTimeDemand(self.mean + other.mean, self.variance + other.variance)


def lead_time_demand(demand_mean: float, demand_var: float, lead_time_mean: float,
                     lead_time_var: float, known: float = 0.0, known_var: float = 0.0,
                     mean_error_var: float = 0.0) -> LeadTimeDemand:
    """LTD from daily demand (mean, variance), lead time (mean, variance in days²) and known
    future demand within the lead time (e.g. scheduled surgeries), added to the mean and its
    variance. Silver, Pyke & Peterson eq. 6.20-6.21; ``mean_error_var`` (the variance of the
    estimated daily mean) adds L²·Var(d̂), Prak, Teunter & Syntetos (EJOR 2017).

    >>> lead_time_demand(10.0, 16.0, 4.0, 1.0)   # d=10/day, σ_d=4, L=4 days, σ_L=1 day
    LeadTimeDemand(mean=40.0, variance=164.0)
    """
    d, L = max(demand_mean, 0.0), max(lead_time_mean, 0.0)
    mean = d * L + max(known, 0.0)
    var = (L * max(demand_var, 0.0) + d * d * max(lead_time_var, 0.0) + max(known_var, 0.0)
           + L * L * max(mean_error_var, 0.0))
    return LeadTimeDemand(mean, var)


def undershoot(size_mean: float, size_m2: float, size_m3: float) -> LeadTimeDemand:
    """Mean and variance of how far below the reorder point the inventory position is when
    an order is triggered, from the first three moments of the size X of one use:
    E[U] = (E[X²] − E[X]) / (2E[X]), E[U²] = (2E[X³] − 3E[X²] + E[X]) / (6E[X]).

    >>> undershoot(1.0, 1.0, 1.0)                 # one unit at a time: none
    LeadTimeDemand(mean=0.0, variance=0.0)
    >>> undershoot(2.0, 4.0, 8.0)                 # always two: 0 or 1, evenly
    LeadTimeDemand(mean=0.5, variance=0.25)
    """
    if size_mean <= 0.0:
        return LeadTimeDemand(0.0, 0.0)
    mean = max((size_m2 - size_mean) / (2.0 * size_mean), 0.0)
    m2 = max((2.0 * size_m3 - 3.0 * size_m2 + size_mean) / (6.0 * size_mean), 0.0)
    return LeadTimeDemand(mean, max(m2 - mean * mean, 0.0))


def ltd_quantile(ltd: LeadTimeDemand, alpha: float) -> float:
    """Smallest whole quantity s with P(LTD ≤ s) ≥ alpha.

    >>> ltd_quantile(LeadTimeDemand(3.0, 3.0), 0.95)   # Poisson(3): P(≤5)=0.916, P(≤6)=0.966
    6.0
    >>> ltd_quantile(LeadTimeDemand(0.0, 0.0), 0.99)
    0.0
    """
    mean, var = ltd.mean, ltd.variance
    if mean <= 0.0:
        return 0.0
    if mean > NORMAL_ABOVE_MEAN:
        return float(math.ceil(mean + NormalDist().inv_cdf(alpha) * math.sqrt(max(var, mean))))
    if var <= mean * (1.0 + 1e-9):  # Poisson
        pmf = math.exp(-mean)
        cdf, k = pmf, 0
        while cdf < alpha and k < 100_000:
            k += 1
            pmf *= mean / k
            cdf += pmf
        return float(k)
    r = mean * mean / (var - mean)  # negative binomial with the same mean and variance
    q = mean / var  # = r / (r + mean), without the underflow of mean² for tiny means
    pmf = math.exp(r * math.log(q))
    cdf, k = pmf, 0
    while cdf < alpha and k < 1_000_000:
        pmf *= (k + r) / (k + 1) * (1.0 - q)
        k += 1
        cdf += pmf
    return float(k)


def ltd_cdf(ltd: LeadTimeDemand, s: float) -> float:
    """P(LTD ≤ s) under the same distribution ``ltd_quantile`` uses (the service level a
    reorder point implies)."""
    mean, var = ltd.mean, ltd.variance
    if mean <= 0.0:
        return 1.0
    if s < 0:
        return 0.0
    if mean > NORMAL_ABOVE_MEAN:
        return NormalDist(mean, math.sqrt(max(var, mean))).cdf(s + 0.5)
    if var <= mean * (1.0 + 1e-9):
        pmf = math.exp(-mean)
        cdf = pmf
        for k in range(1, int(s) + 1):
            pmf *= mean / k
            cdf += pmf
        return min(cdf, 1.0)
    r = mean * mean / (var - mean)
    q = mean / var  # = r / (r + mean), without the underflow of mean² for tiny means
    pmf = math.exp(r * math.log(q))
    cdf = pmf
    for k in range(int(s)):
        pmf *= (k + r) / (k + 1) * (1.0 - q)
        cdf += pmf
    return min(cdf, 1.0)


def cost_service_level(covered: LeadTimeDemand, unit_cost: float, cycle_days: float,
                       stockout_cost: float, holding_rate: float) -> float:
    """The cycle service level at which one more unit of reorder point stops paying: the
    reorder point s is raised while the stockout occasions it avoids are worth more than it
    costs to hold, P(X = s + 1)·(365 / T)·B ≥ h·c, with X the demand the reorder point
    covers (LTD + undershoot), T the cycle in days (an order every T days, one chance of a
    stockout each), B the cost of a stockout occasion (``stockout_cost``), h the yearly
    holding rate and c the unit cost (Silver, Pyke & Peterson §7.1, "B1: specified fixed cost
    per stockout occasion", in its discrete form; it is the Lagrangian allocation of a budget
    of inventory value that minimises stockout occasions, 1/B the multiplier). Returns P(X ≤ s)
    for the s it stops at, never below the mean: cheap fast movers get a high service level,
    expensive slow movers a lower one.

    >>> round(cost_service_level(LeadTimeDemand(3.0, 3.0), 1.0, 7.0, 100.0, 0.25), 4)  # cheap
    1.0
    >>> round(cost_service_level(LeadTimeDemand(3.0, 3.0), 1000.0, 7.0, 100.0, 0.25), 3)  # dear
    0.966
    """
    mean, var = covered.mean, covered.variance
    if mean <= 0.0:
        return 1.0
    threshold = holding_rate / 365.0 * unit_cost * max(cycle_days, 1.0) / max(stockout_cost, 1e-12)
    if mean > NORMAL_ABOVE_MEAN:
        sd = math.sqrt(max(var, mean))
        x = threshold * sd * math.sqrt(2.0 * math.pi)
        z = math.sqrt(-2.0 * math.log(x)) if 0.0 < x < 1.0 else (0.0 if x > 0 else 8.0)
        return NormalDist().cdf(z)
    if var <= mean * (1.0 + 1e-9):  # Poisson
        return _cdf_until_pmf_below(math.exp(-mean), lambda k: mean / (k + 1), mean, threshold, 100_000)
    r = mean * mean / (var - mean)
    q = mean / var
    return _cdf_until_pmf_below(math.exp(r * math.log(q)), lambda k: (k + r) / (k + 1) * (1.0 - q),
                                mean, threshold, 1_000_000)


def bounded_service_level(cost_level: float, floor: float, ceiling: float) -> tuple[float, str]:
    """A cost-allocated service level (``cost_service_level``) held between the criticality's
    ``floor`` and ``ceiling``, with the rule it came from: ``cost`` or ``criticality_floor``.

    >>> bounded_service_level(0.90, 0.95, 0.999), bounded_service_level(0.9999, 0.95, 0.999)
    ((0.95, 'criticality_floor'), (0.999, 'cost'))
    """
    alpha = min(cost_level, ceiling)
    return (floor, "criticality_floor") if alpha < floor else (alpha, "cost")


def scaled_reorder_point(reorder_point: float, ltd_mean: float, safety_factor: float) -> float:
    """The reorder point with its safety stock (what it holds above the mean lead-time demand)
    multiplied by ``safety_factor``: the one knob every policy of the comparison is tuned by
    to equal inventory. A factor of 1 leaves the reorder point as it is; never below zero.

    >>> scaled_reorder_point(14.0, 10.0, 1.0), scaled_reorder_point(14.0, 10.0, 0.5)
    (14.0, 12.0)
    >>> scaled_reorder_point(14.0, 10.0, 0.0), scaled_reorder_point(3.0, 10.0, 2.0)
    (10.0, 0.0)
    """
    if safety_factor == 1.0:
        return reorder_point
    return max(ltd_mean + safety_factor * (reorder_point - ltd_mean), 0.0)


def _cdf_until_pmf_below(pmf: float, ratio: Callable[[int], float], mean: float, threshold: float,
                         limit: int) -> float:
    """P(X ≤ s) at the first s at or above the mean where P(X = s + 1) falls below
    ``threshold``, walking a discrete pmf from P(X = 0) = ``pmf`` by P(k+1)/P(k) = ``ratio(k)``."""
    cdf, k = pmf, 0
    while k < limit:
        nxt = pmf * ratio(k)
        if k >= mean and nxt < threshold:
            break
        k += 1
        pmf = nxt
        cdf += pmf
    return min(cdf, 1.0)


@dataclass(frozen=True)
class ReorderPolicy:
    safety_stock: float
    reorder_point: float
    service_level: float
    ltd: LeadTimeDemand
    covered: LeadTimeDemand  # what the reorder point covers: LTD + undershoot
    formula: str = FORMULA


def reorder_policy(ltd: LeadTimeDemand, alpha: float,
                   undershoot: LeadTimeDemand | None = None) -> ReorderPolicy:
    """Reorder point and safety stock at cycle service level ``alpha``: the ``alpha``
    quantile of LTD + undershoot. ``ltd_cdf(policy.covered, policy.reorder_point)`` is the
    service level it implies (at or just above ``alpha`` for discrete demand)."""
    covered = ltd + undershoot if undershoot is not None else ltd
    rop = max(ltd_quantile(covered, alpha), covered.mean)
    return ReorderPolicy(safety_stock=rop - ltd.mean, reorder_point=rop, service_level=alpha,
                         ltd=ltd, covered=covered)


def censored_lead_time(mean: float, var: float, at_least: list[float], weight: float,
                       surprised_weight: float | None = None, surprise_sds: float = 3.0,
                       spread_floor: float = 0.0) -> tuple[float, float]:
    """Lead-time mean and variance (days, days²) after learning from open orders known to take
    at least ``at_least`` days each (their age, or a later arrival the supplier announced):
    right-censored observations, which say the supplier is slower than the model believes
    before any of those orders arrives.

    Each bound ``a`` above the mean is learned as an observation of E[L | L ≥ a] under the
    normal model, μ + σ·φ(z)/(1−Φ(z)) with z = (a−μ)/σ (the inverse Mills ratio: the E-step of
    expectation-maximisation for right-censored data, as in Tobit regression), with the
    exponentially weighted update the lead-time model itself uses (``weight``: its weight for
    its next observation). One late order moves the estimate a little; several, or one that
    keeps ageing, move it further; when they arrive, their real lead times replace them.

    A bound ``surprise_sds`` spreads or more above the mean (the spread at least
    ``spread_floor`` times the mean; an order still open that late has well under 1 % chance
    under the model: the supplier changed) is learned with
    ``surprised_weight`` when given, the weight the lead-time model gives a receipt that
    reveals a change, so the estimate follows a slower supplier within days of the first
    order becoming late, not after it arrives.

    >>> censored_lead_time(5.0, 1.0, [], 0.1)
    (5.0, 1.0)
    >>> censored_lead_time(5.0, 1.0, [4.0], 0.1)         # not yet late: nothing learned
    (5.0, 1.0)
    >>> m, v = censored_lead_time(5.0, 1.0, [9.0], 0.1)  # four days late
    >>> round(m, 2), round(v, 2)
    (5.42, 2.51)
    >>> m, v = censored_lead_time(5.0, 1.0, [9.0, 9.5, 10.0], 0.1)
    >>> round(m, 2)
    6.37
    >>> m, v = censored_lead_time(5.0, 1.0, [9.0], 0.1, surprised_weight=0.6)  # 4 sd: a change
    >>> round(m, 2), round(v, 2)
    (7.54, 4.69)
    """
    new_mean, new_var = mean, var
    for a in sorted(at_least):
        if a <= new_mean:
            continue
        sd = math.sqrt(max(new_var, 1e-12))
        z = (a - new_mean) / sd
        tail = 0.5 * math.erfc(z / math.sqrt(2.0))
        if tail > 1e-300:
            conditional = new_mean + sd * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) / tail
        else:  # far in the tail: E[L | L ≥ a] ≈ a + σ/z
            conditional = a + sd / z
        surprising = (a - new_mean) / max(sd, spread_floor * new_mean) >= surprise_sds
        w = max(weight, surprised_weight) if surprised_weight is not None and surprising else weight
        d = max(conditional, a) - new_mean
        new_mean += w * d
        new_var = (1.0 - w) * (new_var + w * d * d)
    return new_mean, new_var


def eoq_days(demand_per_day: float, unit_cost: float, order_line_cost: float,
             holding_rate: float, max_days: float = 28.0) -> float:
    """The cycle of the economic order quantity in days of use, Q*/d with
    Q* = √(2·D·K / (h·c)) (Harris 1913; Silver, Pyke & Peterson §4.2): D use a year, K the cost
    of an order line, h the yearly holding rate, c the unit cost; within 1 day (one review a
    day) and ``max_days``.

    >>> round(eoq_days(2.5, 1000.0, 5.0, 0.25), 1)     # a dear implant: under three days
    2.4
    >>> eoq_days(15.0, 0.5, 5.0, 0.25)                  # a cheap fast mover: the longest cycle
    28.0
    """
    if demand_per_day <= 0 or unit_cost <= 0 or holding_rate <= 0:
        return max_days
    days = math.sqrt(2.0 * order_line_cost * 365.0 / (holding_rate * unit_cost * demand_per_day))
    return min(max(days, 1.0), max_days)


def order_quantity(inventory_position: float, order_up_to: float, pack_size: float = 1.0,
                   min_order: float = 0.0, expiry_cap: float | None = None) -> float:
    """Quantity to order now: up to ``order_up_to``, in whole packs, at least ``min_order``,
    and never more than ``expiry_cap`` (what will be used before the stock expires) but
    one pack when the cap is above zero and below a pack.

    >>> order_quantity(3, 40, pack_size=10)
    40.0
    >>> order_quantity(3, 40, pack_size=10, expiry_cap=25)
    20.0
    >>> order_quantity(39, 40, pack_size=10, min_order=30)
    30.0
    >>> order_quantity(3, 40, pack_size=10, expiry_cap=4)
    10.0
    """
    pack = pack_size if pack_size and pack_size > 0 else 1.0
    need = order_up_to - inventory_position
    if need <= 0:
        return 0.0
    qty = math.ceil(need / pack - 1e-9) * pack
    if min_order > 0:
        qty = max(qty, math.ceil(min_order / pack - 1e-9) * pack)
    if expiry_cap is not None:
        cap = math.floor(max(expiry_cap, 0.0) / pack + 1e-9) * pack
        if cap <= 0.0 < expiry_cap:  # some of a pack will be used before it expires: one pack,
            cap = pack               # rather than none and a stockout
        if qty > cap:
            qty = cap if cap >= min_order else 0.0
    return float(qty)


def expiry_cap(daily_demand: float, shelf_life_days: float | None, usable_on_hand: float,
               lead_time_days: float = 0.0) -> float | None:
    """What the stock point can use before newly bought stock expires, beyond what it holds:
    the stock bought now arrives after the lead time and lasts its shelf life from then, and
    what is held is used first (FEFO), so d·(L + shelf life) − on hand.

    >>> expiry_cap(2.0, 14.0, 10.0), expiry_cap(2.0, 14.0, 10.0, lead_time_days=3.0)
    (18.0, 24.0)
    """
    if shelf_life_days is None:
        return None
    return max(daily_demand * (max(lead_time_days, 0.0) + shelf_life_days) - max(usable_on_hand, 0.0), 0.0)


def changed_enough(old: float | None, new: float, threshold: float = 0.05) -> bool:
    """Decisions are emitted only when a value moves by more than ``threshold`` (relative) or
    at least one whole unit, so they do not chatter."""
    if old is None:
        return True
    if old == new:
        return False
    return abs(new - old) >= max(1.0, threshold * abs(old))
