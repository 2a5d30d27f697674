"""The supply side in closed loops (issue 20): the real ``Processor`` over an in-memory store
with a simulated clock, one stock point, orders placed when the inventory position falls to
the service's reorder point (read from the stock point, as a buyer or an ERP would) and
received when the supplier delivers.

Two loops, each over ``--seeds`` seeds (plus held-out seeds never looked at while
developing):

1. **Lead time doubles, then recovers.** Demand 6 a day (Poisson, spread through the day);
   the supplier delivers in 5 days (±0.5) until day 120, then in 10 days for 60 days, then
   in 5 again. Figures: days from the first order becoming overdue (past the old lead time's
   mean + 2 sd) until the reorder point covers the demand over the new lead time at the
   service level (6 × 10 days + its safety stock, measured as ROP ≥ 6 × 10; the first order
   is the first placed on or after day 120, overdue 6 days after it is placed); the lead time
   in use against the truth before and after; orders after the recovery until the reorder
   point is back within 10 % of its level before the change (its mean over the 30 days
   before), and within 10 % of a control's on the same day (the same seed with a supplier
   that never changes: the old level without the demand estimate's own drift).
2. **A stock point runs empty for several days.** The same demand; no delivery from day 150
   to day 156 (a supplier's outage), so the shelf is empty for days. Figure: the demand
   estimate before, at the end of and two weeks after the stockout, against the truth of 6.

3. **Lead-time estimators, order by order** (``--estimators``): the service's hand-written
   ``LeadTime`` against River's ``stats.EWMean``/``EWVar`` at the same weight, alone and
   restarted by River's drift detectors (ADWIN, Page-Hinkley), on sequences of lead times
   (5 days ± 0.5 for 30 orders, 10 for 8, 5 again for 30; and a steady supplier): the mean
   absolute error of the mean in use for the next order, orders until it is within 10 % of a
   new level, the spread in use on the steady supplier, and µs per update.

In the first two, **stockout-days at equal on-hand**: the same loop run with a static par and a
nightly 28-day batch forecast (the same uses, the same lead time for an order placed on the
same day, the same outage), each tuned by its safety factor to the dynamic loop's average
on-hand; days with a lost use, counted from day 60. The outage loop is also run with the
outage starting on each of seven consecutive days (its place in the order cycle decides much
of a single run), the stockout-days summed.

Run: ``.venv/bin/python -m bench.supply`` (``--seeds``, ``--held-out``). Prints its figures;
asserts nothing about them.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any

from bench.models import ADMIN, KEY, SCANNER, START, MovingClock
from domain.policy import scaled_reorder_point, service_level
from streams.processor import Processor
from streams.simulation.hospital import poisson
from streams.store import EventStore, memory_env

SKU, LOC, SUP = "SUT-1", "W1", "ACME"
RATE = 6.0
DAYS = 300
CHANGE, RECOVER = 120, 180
OUTAGE = (150, 157)


@dataclass
class Loop:
    seed: int
    lead_time: Any  # day the order is placed -> lead time in days
    outage: tuple[int, int] | None = None
    rop: list[float] = field(default_factory=list)  # reorder point at each day's end
    lead_time_in_use: list[float] = field(default_factory=list)
    demand_estimate: list[float] = field(default_factory=list)
    on_hand: list[float] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)  # uses the empty shelf lost, each day
    orders: list[tuple[int, float, int]] = field(default_factory=list)  # placed, qty, arrives

    def run(self) -> Loop:
        rng = random.Random(self.seed)  # the demand (the lead times: ``lead_time_on``)
        clock = MovingClock()
        p = Processor(EventStore(env=memory_env()), KEY, clock=clock)
        at = (START - timedelta(days=1)).isoformat()
        p.process([({"event_id": "sup", "type": "supplier_registered", "occurred_at": at,
                     "supplier": SUP, "name": SUP}, ADMIN),
                   ({"event_id": "item", "type": "item_registered", "occurred_at": at, "sku": SKU,
                     "base_unit": "each", "criticality": "high", "lead_time_days": 5, "supplier": SUP},
                    ADMIN),
                   ({"event_id": "loc", "type": "location_registered", "occurred_at": at,
                     "location": LOC, "site": "H1", "timezone": "UTC"}, ADMIN)])
        n = 0

        def post(event: dict[str, Any]) -> None:
            nonlocal n
            n += 1
            clock.now = max(clock.now, datetime.fromisoformat(event["occurred_at"]) + timedelta(seconds=1))
            (outcome,) = p.process([(dict(event, event_id=f"e{n}"), SCANNER)]).outcomes
            assert outcome.status == "accepted", outcome

        def stock(kind: str, t: datetime, qty: float, **extra: Any) -> dict[str, Any]:
            return {"type": kind, "occurred_at": t.isoformat(), "site": "H1", "location": LOC, "sku": SKU,
                    "lot": "L", "quantity": qty, **extra}

        post(stock("receipt", START, 60))
        on_hand, pipeline = 60.0, []  # (arrival day, qty, po)
        for day in range(DAYS):
            t0 = START + timedelta(days=day)
            for arrive, qty, po in [x for x in pipeline if x[0] == day]:
                pipeline.remove((arrive, qty, po))
                post(stock("receipt", t0 + timedelta(hours=6), qty, po_id=po))
                on_hand += qty
            lost = 0
            for h in day_uses(rng):
                if on_hand >= 1:  # an empty shelf loses the use (it is not posted)
                    post(stock("usage", t0 + timedelta(hours=h), 1))
                    on_hand -= 1
                else:
                    lost += 1
            self.lost.append(lost)
            clock.now = t0 + timedelta(hours=22)
            p.check_overdue()
            view = p.stock_point_view(SKU, LOC)
            assert view is not None
            rop, out = view["reorder_point"] or 0.0, view["order_up_to"] or 0.0
            position = on_hand + sum(q for _, q, _ in pipeline)
            outage = self.outage is not None and self.outage[0] <= day < self.outage[1]
            if position <= rop and out > position and not outage:
                qty = float(math.ceil(out - position))
                po = f"PO{len(self.orders) + 1}"
                arrive = day + lead_time_on(self.lead_time, self.seed, day)
                post({"type": "po_issued", "occurred_at": (t0 + timedelta(hours=22, minutes=5)).isoformat(),
                      "po_id": po, "supplier": SUP, "location": LOC, "site": "H1",
                      "lines": [{"sku": SKU, "quantity": qty}]})
                pipeline.append((arrive, qty, po))
                self.orders.append((day, qty, arrive))
            if self.outage is not None and self.outage[0] <= day < self.outage[1]:
                pipeline = [(max(a, self.outage[1]), q, po) for a, q, po in pipeline]
            policy = p.planner.evaluate(p.ledger.stock_point(SKU, LOC), clock.now)  # type: ignore[arg-type]
            assert policy is not None
            self.rop.append(rop)
            self.lead_time_in_use.append(policy["inputs"]["lead_time_days"])
            self.demand_estimate.append(policy["inputs"]["demand_mean_per_day"])
            self.on_hand.append(on_hand)
        return self


def day_uses(rng: random.Random) -> list[float]:
    """A day's uses (hours), one unit each: Poisson, 07:00-21:00."""
    return sorted(rng.uniform(7, 21) for _ in range(poisson(rng, RATE)))


def lead_time_on(lead_time: Any, seed: int, day: int) -> int:
    """Days until an order placed on ``day`` arrives: the same for every policy (its own
    random stream per order day)."""
    return max(1, round(lead_time(day, random.Random(f"lead-{seed}-{day}"))))


def doubling(day: int, rng: random.Random) -> float:
    base = 10.0 if CHANGE <= day < RECOVER else 5.0
    return max(1.0, rng.gauss(base, 0.5))


def steady(day: int, rng: random.Random) -> float:
    return max(1.0, rng.gauss(5.0, 0.5))


def lead_time_figures(loop: Loop, control: Loop) -> dict[str, float | None]:
    """``control``: the same seed with a supplier that never changes (the same uses), whose
    reorder point on the same day is the old level without the demand estimate's own drift."""
    late_after = 5.0 + 2 * 0.5  # the old lead time's mean + 2 sd
    placed = next(d for d, _, _ in loop.orders if d >= CHANGE)  # the first order at the new lead time
    first_overdue = placed + late_after  # is late from here
    covers = next((d for d in range(int(first_overdue), DAYS) if loop.rop[d] >= RATE * 10.0), None)
    before = statistics.mean(loop.rop[CHANGE - 30:CHANGE])
    after_orders = [o for o in loop.orders if o[0] >= RECOVER]

    def recovered(level: Any) -> int | None:
        for k, (_, _, arrive) in enumerate(after_orders, start=1):
            day = min(arrive, DAYS - 1)
            if abs(loop.rop[day] - level(day)) <= 0.1 * level(day):
                return k
        return None

    lt_err_before = statistics.mean(abs(x - 5.0) for x in loop.lead_time_in_use[CHANGE - 30:CHANGE])
    lt_err_during = statistics.mean(abs(x - 10.0) for x in loop.lead_time_in_use[CHANGE + 20:RECOVER])
    lt_err_after = statistics.mean(abs(x - 5.0) for x in loop.lead_time_in_use[RECOVER + 40:RECOVER + 80])
    return {"days_to_cover": None if covers is None else covers - first_overdue,
            "rop_before": before, "orders_to_recover": recovered(lambda _: before),
            "orders_to_recover_vs_control": recovered(lambda d: control.rop[d]),
            "lt_err_before": lt_err_before, "lt_err_during": lt_err_during, "lt_err_after": lt_err_after}


def stockout_figures(loop: Loop) -> dict[str, float]:
    empty_days = sum(1 for d in range(OUTAGE[0], OUTAGE[1] + 5) if loop.on_hand[d] < 1)
    return {"empty_days": empty_days, "estimate_before": loop.demand_estimate[OUTAGE[0] - 1],
            "estimate_end_of_stockout": min(loop.demand_estimate[OUTAGE[0]:OUTAGE[1] + 5]),
            "estimate_two_weeks_after": loop.demand_estimate[OUTAGE[1] + 14]}


COUNT_FROM = 60  # days before are warm-up in the stockout comparison
Z_HIGH = NormalDist().inv_cdf(service_level("high"))


def baseline_loop(name: str, seed: int, lead_time: Any, outage: tuple[int, int] | None,
                  factor: float) -> tuple[float, int]:
    """A baseline in the same loop (the same uses, the same lead time for an order placed on
    the same day, the same outage): ``static_par`` (min = 1.5 × the mean use over the quoted
    5 days, max = min + 7 days of use, from the first 90 days) or ``batch_forecast`` (a
    nightly ROP from the last 28 days, μL + z·σ√L at the item's 98 %, up to ROP + 7 days),
    its safety stock times ``factor`` (``domain.policy.scaled_reorder_point``). Returns the
    average on-hand and the stockout-days counted from ``COUNT_FROM``."""
    rng = random.Random(seed)
    on_hand, pipeline, used = 60.0, [], []  # (arrival day, qty)
    hand_sum, out_days = 0.0, 0
    lt = 5.0
    for day in range(DAYS):
        on_hand += sum(q for a, q in pipeline if a == day)
        pipeline = [(a, q) for a, q in pipeline if a != day]
        met = lost = 0
        for _ in day_uses(rng):
            if on_hand >= 1:
                on_hand -= 1
                met += 1
            else:
                lost += 1
        used.append(float(met))
        window = used[-28:] if name == "batch_forecast" else used[:90]
        mean = statistics.mean(window)
        if name == "static_par":
            rop = scaled_reorder_point(1.5 * mean * lt, mean * lt, factor)
        else:
            sd = statistics.pstdev(window) if len(window) > 1 else math.sqrt(mean)
            rop = scaled_reorder_point(mean * lt + Z_HIGH * sd * math.sqrt(lt), mean * lt, factor)
        rop = math.ceil(rop)
        position = on_hand + sum(q for _, q in pipeline)
        out = outage is not None and outage[0] <= day < outage[1]
        if position <= rop and not out and mean > 0:
            pipeline.append((day + lead_time_on(lead_time, seed, day), float(math.ceil(rop + 7 * mean - position))))
        if outage is not None and outage[0] <= day < outage[1]:
            pipeline = [(max(a, outage[1]), q) for a, q in pipeline]
        if day >= COUNT_FROM:
            hand_sum += on_hand
            out_days += lost > 0
    return hand_sum / (DAYS - COUNT_FROM), out_days


def tuned(name: str, seed: int, lead_time: Any, outage: tuple[int, int] | None,
          target: float) -> tuple[float, float, int]:
    """The baseline's safety factor whose average on-hand is at most ``target`` (bisection in
    [0, 6]): (factor, on-hand, stockout-days)."""
    lo, hi = 0.0, 6.0
    if baseline_loop(name, seed, lead_time, outage, lo)[0] > target:
        return (lo, *baseline_loop(name, seed, lead_time, outage, lo))
    for _ in range(12):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if baseline_loop(name, seed, lead_time, outage, mid)[0] <= target else (lo, mid)
    return (lo, *baseline_loop(name, seed, lead_time, outage, lo))


def equal_on_hand(loop: Loop) -> dict[str, float]:
    """Stockout-days from ``COUNT_FROM`` of the dynamic loop and of each baseline tuned to its
    average on-hand."""
    hand = statistics.mean(loop.on_hand[COUNT_FROM:])
    out: dict[str, float] = {"on_hand": hand, "dynamic": sum(1 for x in loop.lost[COUNT_FROM:] if x > 0)}
    for name in ("static_par", "batch_forecast"):
        factor, on_hand, days = tuned(name, loop.seed, loop.lead_time, loop.outage, hand)
        out[name] = days
        out[f"{name}_on_hand"] = on_hand
    return out


# Where the outage falls in the order cycle decides much of who runs out in a single run (a
# policy with an order on its way when the supplier stops is covered at the restart; one
# without waits a whole lead time): the outage loop is also run from each of 7 start days.
OUTAGE_STARTS = tuple(range(OUTAGE[0], OUTAGE[0] + 7))


def outage_phases(seed: int) -> dict[str, float]:
    """Stockout-days from ``COUNT_FROM`` summed over the outage started on each of
    ``OUTAGE_STARTS`` (the same length), dynamic and each baseline tuned to the dynamic run's
    average on-hand, and the mean on-hand."""
    length = OUTAGE[1] - OUTAGE[0]
    runs = [equal_on_hand(Loop(seed, steady, (start, start + length)).run()) for start in OUTAGE_STARTS]
    return {key: (statistics.mean if "on_hand" in key else sum)(r[key] for r in runs) for key in runs[0]}


class RiverLeadTime:
    """River's exponentially weighted mean and variance at the hand-written model's weight,
    optionally restarted (mean, variance and detector anew) when a River drift detector fires."""

    def __init__(self, detector: Any = None, alpha: float = 0.1) -> None:
        from river import stats
        self.make_detector, self.alpha = detector, alpha
        self.mean, self.var = stats.EWMean(alpha), stats.EWVar(alpha)
        self.detector = detector() if detector else None
        self.n = 0

    def learn_one(self, days: float) -> None:
        from river import stats
        if self.detector is not None:
            self.detector.update(days)
            if self.detector.drift_detected:
                self.mean, self.var = stats.EWMean(self.alpha), stats.EWVar(self.alpha)
                self.detector, self.n = self.make_detector(), 0
        self.n += 1
        self.mean.update(days)
        self.var.update(days)

    def predict(self) -> tuple[float, float]:
        return self.mean.get(), self.var.get()


class HandLeadTime:
    """The service's ``online_models.lead_time.LeadTime`` with its master-data prior (5 days)."""

    def __init__(self) -> None:
        from online_models.lead_time import LeadTime
        self.model = LeadTime()

    def learn_one(self, days: float) -> None:
        self.model.learn_one(days)

    def predict(self) -> tuple[float, float]:
        return self.model.predict(5.0)


def estimators() -> dict[str, Any]:
    from river import drift
    return {"hand-written (service)": HandLeadTime,
            "river EWMean/EWVar": RiverLeadTime,
            "river + ADWIN restart": lambda: RiverLeadTime(drift.ADWIN),
            "river + Page-Hinkley restart": lambda: RiverLeadTime(lambda: drift.PageHinkley(min_instances=5, delta=0.1,
                                                                                              threshold=5.0)),
            "river + Page-Hinkley (defaults)": lambda: RiverLeadTime(drift.PageHinkley)}


def estimator_figures(make: Any, seeds: list[int]) -> dict[str, float]:
    """Order by order: truth 5 ± 0.5 (30 orders), 10 (8), 5 (30); and a steady 5 ± 0.5 (68 orders,
    its error and spread in use after the first 10)."""
    errors, to_new, to_old, sds, steady_mae, spent, updates = [], [], [], [], [], 0.0, 0
    for seed in seeds:
        rng = random.Random(f"estimators-{seed}")
        truth = [5.0] * 30 + [10.0] * 8 + [5.0] * 30
        model = make()
        predicted = []
        for mu in truth:
            predicted.append(model.predict()[0])
            t0 = time.perf_counter()
            model.learn_one(max(1.0, rng.gauss(mu, 0.5)))
            spent += time.perf_counter() - t0
            updates += 1
        errors.append(statistics.mean(abs(p - t) for p, t in zip(predicted[10:], truth[10:], strict=True)))
        to_new.append(next((k for k in range(8) if abs(predicted[30 + k] - 10.0) <= 1.0), 8))
        to_old.append(next((k for k in range(30) if abs(predicted[38 + k] - 5.0) <= 0.5), 30))
        steady = make()
        steady_errors = []
        for k in range(68):
            if k >= 10:
                steady_errors.append(abs(steady.predict()[0] - 5.0))
            steady.learn_one(max(1.0, rng.gauss(5.0, 0.5)))
        sds.append(math.sqrt(max(steady.predict()[1], 0.0)))
        steady_mae.append(statistics.mean(steady_errors))
    return {"mae_days": statistics.mean(errors), "orders_to_new": statistics.mean(to_new),
            "orders_back": statistics.mean(to_old), "steady_sd": statistics.mean(sds),
            "steady_mae_days": statistics.mean(steady_mae),
            "us_per_update": spent / updates * 1e6}


def report_estimators(seeds: list[int]) -> None:
    print(f"lead-time estimators, order by order, {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}): mean abs error"
          " of the next order's mean (days), orders until within 10 % of the doubled level (of 8) and back"
          " (of 30); on a steady supplier the mean's error and the spread (truth 0.5); µs per update")
    for name, make in estimators().items():
        f = estimator_figures(make, seeds)
        print(f"  {name:32} mae {f['mae_days']:.2f}  to new {f['orders_to_new']:.2f}  back {f['orders_back']:.2f}"
              f"  steady: mae {f['steady_mae_days']:.2f} sd {f['steady_sd']:.2f}  {f['us_per_update']:.1f} µs",
              flush=True)


def report(seeds: list[int]) -> None:
    loops = [Loop(s, doubling).run() for s in seeds]
    rows = [lead_time_figures(loop, Loop(loop.seed, steady).run()) | equal_on_hand(loop) for loop in loops]
    print(f"lead time doubles on day {CHANGE} (5 -> 10 days), recovers on day {RECOVER}; seeds {seeds}"
          f" (stockout-days from day {COUNT_FROM}, each baseline at the dynamic loop's average on-hand)")
    for key in rows[0]:
        values = [r[key] for r in rows]
        shown = ", ".join("-" if v is None else f"{v:.2f}" for v in values)
        print(f"  {key:30} {shown}", flush=True)
    loops2 = [Loop(s, steady, OUTAGE).run() for s in seeds]
    rows2 = [stockout_figures(loop) | equal_on_hand(loop) for loop in loops2]
    print(f"no delivery from day {OUTAGE[0]} to {OUTAGE[1]}; demand {RATE:g} a day; seeds {seeds}")
    for key in rows2[0]:
        print(f"  {key:30} " + ", ".join(f"{r[key]:.2f}" for r in rows2), flush=True)
    rows3 = [outage_phases(s) for s in seeds]
    print(f"the same outage starting on each of days {OUTAGE_STARTS[0]}-{OUTAGE_STARTS[-1]} (stockout-days"
          f" summed over the {len(OUTAGE_STARTS)} starts; each run at its own equal on-hand); seeds {seeds}")
    for key in rows3[0]:
        print(f"  {key:30} " + ", ".join(f"{r[key]:.2f}" for r in rows3), flush=True)
    totals = {k: sum(r[k] for r in rows3) for k in ("dynamic", "static_par", "batch_forecast")}
    best = sum(r["dynamic"] <= min(r["static_par"], r["batch_forecast"]) for r in rows3)
    print(f"  totals: {totals}; dynamic at most the best baseline on {best} of {len(rows3)} seeds", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--held-out", type=int, default=3)
    ap.add_argument("--estimators", type=int, default=200, help="sequences per estimator (0: none)")
    args = ap.parse_args()
    if args.estimators:
        report_estimators(list(range(1, args.estimators + 1)))
        report_estimators(list(range(1001, 1001 + args.estimators)))  # held out
    report(list(range(1, args.seeds + 1)))
    if args.held_out:
        print("held out:")
        report(list(range(101, 101 + args.held_out)))


if __name__ == "__main__":
    main()
