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
   service level (6 × 10 days + its safety stock, measured as ROP ≥ 6 × 10); the lead time
   in use against the truth before and after; orders after the recovery until the reorder
   point is back within 10 % of its level before the change.
2. **A stock point runs empty for several days.** The same demand; no delivery from day 150
   to day 156 (a supplier's outage), so the shelf is empty for days. Figure: the demand
   estimate before, at the end of and two weeks after the stockout, against the truth of 6.

In both, **stockout-days at equal on-hand**: the same loop run with a static par and a
nightly 28-day batch forecast (the same uses, the same lead time for an order placed on the
same day, the same outage), each tuned by its safety factor to the dynamic loop's average
on-hand; days with a lost use, counted from day 60.

Run: ``.venv/bin/python -m bench.supply`` (``--seeds``, ``--held-out``). Prints its figures;
asserts nothing about them.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
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


def lead_time_figures(loop: Loop) -> dict[str, float | None]:
    late_after = 5.0 + 2 * 0.5  # the old lead time's mean + 2 sd
    first_overdue = CHANGE + late_after  # the first order placed at the change is late from here
    covers = next((d for d in range(int(first_overdue), DAYS) if loop.rop[d] >= RATE * 10.0), None)
    before = statistics.mean(loop.rop[CHANGE - 30:CHANGE])
    recovered_orders = None
    after_orders = [o for o in loop.orders if o[0] >= RECOVER]
    for k, (_, _, arrive) in enumerate(after_orders, start=1):
        if abs(loop.rop[min(arrive, DAYS - 1)] - before) <= 0.1 * before:
            recovered_orders = k
            break
    lt_err_before = statistics.mean(abs(x - 5.0) for x in loop.lead_time_in_use[CHANGE - 30:CHANGE])
    lt_err_during = statistics.mean(abs(x - 10.0) for x in loop.lead_time_in_use[CHANGE + 20:RECOVER])
    lt_err_after = statistics.mean(abs(x - 5.0) for x in loop.lead_time_in_use[RECOVER + 40:RECOVER + 80])
    return {"days_to_cover": None if covers is None else covers - first_overdue,
            "rop_before": before, "orders_to_recover": recovered_orders,
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


def report(seeds: list[int]) -> None:
    loops = [Loop(s, doubling).run() for s in seeds]
    rows = [lead_time_figures(loop) | equal_on_hand(loop) for loop in loops]
    print(f"lead time doubles on day {CHANGE} (5 -> 10 days), recovers on day {RECOVER}; seeds {seeds}"
          f" (stockout-days from day {COUNT_FROM}, each baseline at the dynamic loop's average on-hand)")
    for key in rows[0]:
        values = [r[key] for r in rows]
        shown = ", ".join("-" if v is None else f"{v:.2f}" for v in values)
        print(f"  {key:26} {shown}", flush=True)
    loops2 = [Loop(s, steady, OUTAGE).run() for s in seeds]
    rows2 = [stockout_figures(loop) | equal_on_hand(loop) for loop in loops2]
    print(f"no delivery from day {OUTAGE[0]} to {OUTAGE[1]}; demand {RATE:g} a day; seeds {seeds}")
    for key in rows2[0]:
        print(f"  {key:26} " + ", ".join(f"{r[key]:.2f}" for r in rows2), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--held-out", type=int, default=3)
    args = ap.parse_args()
    report(list(range(1, args.seeds + 1)))
    if args.held_out:
        print("held out:")
        report(list(range(101, 101 + args.held_out)))


if __name__ == "__main__":
    main()
