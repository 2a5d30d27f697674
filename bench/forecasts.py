"""Forecast accuracy of the online forecast choice (issue 13, item 3) against each of its seven
candidates and River's ``time_series`` forecasters, on synthetic daily use of several shapes.

Each forecaster learns one closed day at a time; at each day from day 60 it forecasts the use
of the next 7 days (a lead time), scored as the mean absolute error of that 7-day sum, scaled
by the error of the naive forecast (the last 7 days repeated): MASE over a 7-day horizon.
Lower is better; 1 is the naive forecast's.

Shapes: Poisson at 6 a day; intermittent (a day with use one in four, 1-6 units); a ×3 step
on day 150; a ramp to ×3 over days 150-210; a collapse to a third on day 150. Seeds 1-20 are
the ones looked at while developing, 101-120 held out.

Run: ``.venv/bin/python -m bench.forecasts`` (``--seeds``, ``--held-out``). Prints its figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from online_models.demand import DailyDemand
from online_models.forecasts import NAMES
from streams.simulation.hospital import poisson

DAYS, FROM, H = 300, 60, 7


def rate(shape: str, day: int) -> float:
    base = 6.0
    if shape == "step":
        return base * (3 if day >= 150 else 1)
    if shape == "ramp":
        return base * (1 + 2 * min(max(day - 150, 0), 60) / 60)
    if shape == "collapse":
        return base / (3 if day >= 150 else 1)
    return base


def series(shape: str, seed: int) -> list[float]:
    rng = random.Random(f"{shape}-{seed}")
    if shape == "intermittent":
        return [float(rng.randint(1, 6)) if rng.random() < 0.25 else 0.0 for _ in range(DAYS)]
    return [float(poisson(rng, rate(shape, d))) for d in range(DAYS)]


class Ours:
    """The demand model with its forecast choice: ``chosen`` (what the policy uses) or one
    candidate by name."""

    def __init__(self, which: str) -> None:
        self.m, self.which, self.day = DailyDemand(), which, 0

    def learn(self, q: float) -> None:
        self.m.learn_one(self.day, self.day % 7, q)
        self.day += 1
        self.m.advance(self.day)

    def forecast(self) -> float:
        if self.which == "chosen":
            return self.m.chosen()[1]
        fc = self.m.choice.forecasts(self.m.p * self.m.size, self.m.level)
        return fc[NAMES.index(self.which)]


class River:
    def __init__(self, make: Callable[[], Any]) -> None:
        self.m = make()
        self.n = 0

    def learn(self, q: float) -> None:
        self.m.learn_one(q)
        self.n += 1

    def forecast(self) -> float:
        if self.n < 10:
            return 0.0
        return max(0.0, sum(self.m.forecast(horizon=H)) / H)


def forecasters() -> dict[str, Callable[[], Any]]:
    from river import time_series
    made: dict[str, Callable[[], Any]] = {"choice (service)": lambda: Ours("chosen")}
    for name in NAMES:
        made[name] = lambda name=name: Ours(name)
    made["river HoltWinters (α .1, β .01)"] = lambda: River(lambda: time_series.HoltWinters(alpha=0.1, beta=0.01))
    made["river HoltWinters weekly"] = lambda: River(
        lambda: time_series.HoltWinters(alpha=0.1, beta=0.01, gamma=0.05, seasonality=7))
    made["river SNARIMAX(1,0,1)"] = lambda: River(lambda: time_series.SNARIMAX(p=1, d=0, q=1))
    return made


def mase(make: Callable[[], Any], ys: list[float]) -> tuple[float, float]:
    """(MASE over the 7-day horizon from day ``FROM``, µs per learned day)."""
    f, errors, naive, spent = make(), [], [], 0.0
    for d, q in enumerate(ys[:-H]):
        t0 = time.perf_counter()
        try:
            f.learn(q)
        except ArithmeticError:  # River's weekly Holt-Winters divides by a level of 0
            return float("nan"), float("nan")
        spent += time.perf_counter() - t0
        if d + 1 >= FROM:
            actual = sum(ys[d + 1:d + 1 + H])
            errors.append(abs(actual - H * f.forecast()))
            naive.append(abs(actual - sum(ys[d + 1 - H:d + 1])))
    return statistics.mean(errors) / max(statistics.mean(naive), 1e-9), spent / (len(ys) - H) * 1e6


def report(seeds: list[int]) -> None:
    shapes = ("poisson", "intermittent", "step", "ramp", "collapse")
    print(f"MASE over a 7-day horizon (1 = naive), mean of seeds {seeds[0]}..{seeds[-1]}; µs per learned day")
    print(f"{'forecaster':34}" + "".join(f"{s:>18}" for s in shapes) + f"{'µs/day':>9}")
    for name, make in forecasters().items():
        cells, costs = [], []
        for shape in shapes:
            scores = [mase(make, series(shape, seed)) for seed in seeds]
            failed = sum(1 for s, _ in scores if s != s)
            ok = [s for s, _ in scores if s == s]
            cells.append(f"{statistics.mean(ok):.3f}" + (f" ({failed} fail)" if failed else "") if ok else "fails")
            costs += [c for _, c in scores if c == c]
        print(f"{name:34}" + "".join(f"{c:>18}" for c in cells) + f"{statistics.mean(costs):9.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--held-out", type=int, default=20)
    args = ap.parse_args()
    report(list(range(1, args.seeds + 1)))
    if args.held_out:
        print("held out:")
        report(list(range(101, 101 + args.held_out)))


if __name__ == "__main__":
    main()
