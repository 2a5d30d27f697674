"""Daily demand of one stock point, learned one event at a time."""

from __future__ import annotations

import math

from online_models.forecasts import ForecastChoice
from online_models.slotted import Slotted

_SLOTS = ("alpha", "gamma", "day", "today", "n_days", "p", "size", "size_var", "level", "var", "season", "w2",
          "out", "out_today", "censored_days", "choice", "start_day")


class DailyDemand(Slotted):
    """Demand per day on a daily clock that counts days with zero use.

    Two views are kept, both exponentially weighted (smoothing ``alpha``, averaging while
    fewer than ``1/alpha`` days are seen, so that early estimates converge fast):

    - intermittent (TSB, Teunter, Syntetos & Babai, EJOR 2011): the probability ``p`` that a
      day has demand and the size of demand on such a day (mean and variance), updated
      separately; mean per day = p·size, variance = p·size_var + p(1−p)·size²;
    - fast movers: the level and variance of daily totals, with multiplicative weekday
      factors (smoothing ``gamma``) for weekly seasonality.

    ``learn_one(day, weekday, qty)`` adds use to day number ``day`` (e.g. days since the
    epoch in the site's time zone); a later day closes the earlier ones, zeros included.

    Censored days: ``stocked_out(True)`` says the stock point has nothing left to use. A day on
    which it was empty at some time shows at most what was there to use: a lower bound on its
    demand, not an observation (lost sales; Nahmias, *Operations Research* 1994). Such a day is
    learned only when its use is above the forecast (then the bound says demand is higher);
    otherwise the last uncensored estimate is kept through the stockout
    (``censored_days`` counts those skipped).
    ``predict_one()`` gives (mean, variance) of use per day; ``forecast(weekday)`` the mean
    for one weekday; ``mean_error_var()`` how uncertain the estimated mean itself is.

    Online forecast choice: each closed day also teaches ``choice`` (``ForecastChoice``: five
    more forecasters beside TSB and the level, each scored on its own out-of-sample error);
    ``chosen()`` gives the best one's mean per day, what the policy uses. ``predict_one`` stays
    the model's own (the spike detector's baseline).

    >>> m = DailyDemand(alpha=0.1)
    >>> for day in range(60):
    ...     m.learn_one(day, day % 7, 4.0 if day % 2 == 0 else 0.0)
    >>> m.learn_one(60, 60 % 7, 0.0)
    >>> mean, var = m.predict_one()
    >>> round(mean), 0.4 < m.p < 0.6, m.is_intermittent()
    (2, True, True)
    """

    __slots__ = _SLOTS

    def __init__(self, alpha: float = 0.05, gamma: float = 0.05) -> None:
        self.alpha = alpha
        self.gamma = gamma
        self.day: int | None = None
        self.today = 0.0
        self.n_days = 0
        self.p = 0.0
        self.size = 0.0
        self.size_var = 0.0
        self.level = 0.0
        self.var = 0.0
        self.season = [1.0] * 7
        self.w2 = 0.0  # sum of the squared weights of the smoothed mean's observations
        self.out = False  # the stock point has nothing to use now
        self.out_today = False  # ... or had nothing at some time on the open day
        self.censored_days = 0  # days skipped as censored (use below the forecast while empty)
        self.choice = ForecastChoice()
        self.start_day: int | None = None  # the first stock's day, until the first use (``start``)

    def learn_one(self, day: int, weekday: int, qty: float) -> None:
        if self.day is None:
            self.day = day if self.start_day is None else min(self.start_day, day)
        if day > self.day:
            self._close_days_until(day)
        # Use dated before the open day (late events) counts in the open day: the clock
        # never goes back, so replay in recording order gives the same state.
        self.today += qty

    def start(self, day: int) -> None:
        """The stock point had stock from day number ``day`` on: the days from then to the
        first use are days without use, not days before the stock point existed. Without it,
        an item first used after weeks on the shelf is judged by that one day: a kit used once
        in three weeks looks like a use a day. Only the first use opens the clock (history
        posted receipts first, uses after, still counts each use on its own day); the earliest
        start before it is kept; no-op once the clock runs."""
        if self.day is None:
            self.start_day = day if self.start_day is None else min(self.start_day, day)

    def live_from(self, day: int) -> None:
        """Uses are recorded at this stock point's location from day number ``day`` on (its first
        use there): quiet days on the shelf before it say nothing about demand (stock received
        before a go-live, scanned from the go-live on). No-op once the clock runs."""
        if self.day is None and self.start_day is not None:
            self.start_day = max(self.start_day, day)

    def stocked_out(self, out: bool, day: int) -> None:
        """Whether the stock point has nothing left to use from day number ``day`` on (its
        days are then censored: see the class); the days before it close as they were."""
        self.advance(day)
        self.out = out
        self.out_today = self.out_today or out

    def advance(self, day: int) -> None:
        """Let the clock reach ``day`` without use (a quiet stretch)."""
        if self.day is not None and day > self.day:
            self._close_days_until(day)

    def _close_days_until(self, day: int) -> None:
        assert self.day is not None
        closing, total = self.day, self.today
        # Close the open day, then the empty days between it and ``day`` (bounded: a year of
        # silence is the same as a few hundred zero days).
        for d in range(closing, min(day, closing + 400)):
            q = total if d == closing else 0.0
            censored = self.out_today if d == closing else self.out
            if censored and self.n_days > 0 and q < self.forecast(d % 7):
                self.censored_days += 1  # a lower bound below the forecast: nothing learned
                continue
            self._close_one(d % 7, q)
        self.day, self.today = day, 0.0
        self.out_today = self.out

    def _close_one(self, weekday: int, q: float) -> None:
        self.n_days += 1
        a = max(self.alpha, 1.0 / self.n_days)
        self.w2 = (1 - a) * (1 - a) * self.w2 + a * a
        hit = 1.0 if q > 0 else 0.0
        self.p += a * (hit - self.p)
        if q > 0:
            if self.size == 0.0 and self.size_var == 0.0:
                self.size = q
            else:
                d = q - self.size
                self.size += a * d
                self.size_var = (1 - a) * (self.size_var + a * d * d)
        s = self.season[weekday]
        deseason = q / s if s > 0 else q
        d = deseason - self.level
        self.level += a * d
        self.var = (1 - a) * (self.var + a * d * d)
        if self.n_days > 14 and self.level > 0:
            g = self.gamma
            self.season[weekday] = max(0.05, s + g * (q / self.level - s))
            # Keep the factors averaging 1 and move the level the other way, so forecasts are
            # unchanged: without it level and factors drift apart, only their product being
            # learned (Archibald & Koehler, IJF 2003, on normalising Holt-Winters factors).
            k = 7.0 / sum(self.season)
            self.season = [f * k for f in self.season]
            self.level /= k
        self.choice.learn_day(q, self.p * self.size, self.level, self._own())

    def is_intermittent(self) -> bool:
        """Fewer than three days in four see demand (average inter-demand interval > 1.33,
        Syntetos, Boylan & Croston, JORS 2005)."""
        return self.p < 0.75

    def predict_one(self) -> tuple[float, float]:
        """Mean and variance of use per day."""
        if self.n_days == 0:
            return 0.0, 0.0
        if self.is_intermittent():
            mean = self.p * self.size
            var = self.p * self.size_var + self.p * (1 - self.p) * self.size * self.size
            return mean, var
        return self.level, self.var

    def chosen(self) -> tuple[str, float, float]:
        """The forecaster that feeds the policy (``ForecastChoice``; before it has scored
        enough days, TSB on intermittent demand and the level otherwise, as ``predict_one``),
        its mean use per day and the variance of that mean (as ``mean_error_var``)."""
        name, i = self.choice.chosen(default=self._own())
        mean = self.choice.forecasts(self.p * self.size, self.level)[i]
        if name in ("tsb", "ses"):
            return name, mean, self.mean_error_var()
        return name, mean, self.predict_one()[1] * self.choice.mean_error_share(i, self.n_days)

    def _own(self) -> str:
        """Which of the model's own two views ``predict_one`` gives: TSB or the level."""
        return "tsb" if self.is_intermittent() else "ses"

    def mean_error_var(self) -> float:
        """Variance of the estimated mean per day: the daily variance times the sum of the
        squared weights the smoothing gave each day (1/n while averaging, → α/(2−α) later).
        Exact for the level of independent days, an approximation for TSB's p·size."""
        _, var = self.predict_one()
        return var * self.w2

    def forecast(self, weekday: int) -> float:
        """Expected use on a day of the given weekday (0 = the clock's weekday 0)."""
        mean, _ = self.predict_one()
        if self.is_intermittent():
            return mean
        return mean * self.season[weekday]

    def clone(self) -> DailyDemand:
        """A fresh model with the same settings."""
        return DailyDemand(self.alpha, self.gamma)

    def __repr__(self) -> str:
        mean, var = self.predict_one()
        return f"DailyDemand(mean={mean:.3g}/day, sd={math.sqrt(max(var, 0)):.3g}, p={self.p:.2f})"
