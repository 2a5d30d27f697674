"""Demand spikes: a change in the rate of use, detected within the event that reveals it."""

from __future__ import annotations

import math

from online_models.slotted import Slotted

_SLOTS = ("tau_days", "min_ratio", "factor", "threshold", "level", "t_last", "active", "cusum",
          "charged", "fall", "gain", "profile", "hours", "day", "days", "totals", "day_mean", "day_var")
PROFILE_MEMORY = 0.05  # the hour-of-day profile's weight for a new day, after its first 14
PROFILE_FIRST_DAYS = 14
MIN_RATE = 0.05  # a baseline below this per day is taken as this (the drift never stops)


def _hour(t_days: float) -> int:
    """The hour (since the epoch) an instant in days falls in; an instant on the hour (up to
    float error, as 14:00 is 0.58333… of a day) is in the hour it starts."""
    return math.floor(t_days * 24 + 1e-6)


class SpikeDetector(Slotted):
    """A CUSUM on the stock point's use for a rate ``factor`` times the baseline, in the
    stock point's own rhythm; and, while a spike is on, the recent rate for the policy.

    **The alarm** is the CUSUM of the Poisson process of units used against a rate ``factor``
    (×3) times the baseline μ (per day, from the demand model): S rises by ln(factor) per unit
    used and falls by (factor − 1)·μ over a day; a spike when S exceeds ``threshold`` +
    ln(max(μ, 1)). For a known change no detector has a shorter worst-case delay at the same
    rate of false alarms (Lorden 1971, Moustakides 1986); the ln μ term keeps the time between
    false alarms about even in days across rates (a CUSUM's shrinks as 1/μ). The day's fall is
    spread over the hours by the stock point's own **hour-of-day profile** of use (shares of
    each closed day's use by hour, exponentially weighted), charged when each hour begins,
    before any use in it, and S is reflected at zero at the end of each hour: so a cabinet's or
    an ERP's daily post of the day's use at a fixed hour meets its hour's whole share at once
    and is not a spike, and busy hours of the ward are not taken for a change. Evidence counts
    by the dispersion φ of the days' totals (variance/mean, at least 1, from the days this
    detector saw and the baseline's, whichever is larger: lumpy use of several units at once,
    or days that vary more than a Poisson count, make each unit worth less as evidence). ``bench/detection.py`` measures it against the alternatives
    (River's drift detectors, an EWMA chart, a daily CUSUM) on labelled streams, with seeds
    held out.

    **The lift**: an exponentially weighted sum of recent use in continuous time (time constant
    ``tau_days``) gives the recent rate; while a spike is on, ``lifted_mean`` returns it (at
    most ``factor`` times the baseline) instead of the baseline, so the policy sees the spike in
    the same event. The spike ends when the
    recent rate falls below ``min_ratio`` times the baseline (use came back, or the baseline
    caught up).

    >>> d = SpikeDetector()
    >>> for day in range(30):                     # a month of 24 uses a day, one an hour
    ...     for h in range(24):
    ...         d.learn_one(day + h / 24, 1.0)
    ...         _ = d.update(day + h / 24, 24.0, 24.0)
    >>> d.active
    False
    >>> for m in range(60):                       # then 60 uses in an hour
    ...     d.learn_one(30 + m / 1440, 1.0)
    ...     on = d.update(30 + m / 1440, 24.0, 24.0)
    >>> on, d.lifted_mean(30 + 59 / 1440, 24.0) > 24.0
    (True, True)
    """

    __slots__ = _SLOTS

    def __init__(self, tau_days: float = 1.0, min_ratio: float = 1.5, factor: float = 3.0,
                 threshold: float = 5.0) -> None:
        self.tau_days = tau_days
        self.min_ratio = min_ratio
        self.factor = factor
        self.threshold = threshold
        self.level = 0.0  # the EW sum of recent use
        self.t_last: float | None = None
        self.active = False
        self.cusum = 0.0
        self.charged: int | None = None  # the last hour (hours since the epoch) charged
        self.fall = 0.0  # the CUSUM's fall per day and its rise per unit, from the last baseline
        self.gain = 0.0
        self.profile = [1.0 / 24] * 24  # share of a day's use by hour of day
        self.hours = [0.0] * 24  # the current day's use by hour
        self.day: int | None = None  # the current day (days since the epoch)
        self.days = 0  # days closed into the profile
        self.totals = 0  # days' totals learned (days without use too)
        self.day_mean = 0.0  # EW mean and variance of the days' totals
        self.day_var = 0.0

    def _decayed(self, t: float) -> float:
        if self.t_last is None or t <= self.t_last:
            return self.level
        return self.level * math.exp(-(t - self.t_last) / self.tau_days)

    def learn_one(self, t_days: float, qty: float) -> None:
        """Add ``qty`` used at ``t_days`` (days, any origin; late events count at the clock)."""
        t = t_days if self.t_last is None else max(t_days, self.t_last)
        self.level = self._decayed(t) + qty
        self.t_last = t
        hour = _hour(t)
        day = hour // 24
        if self.day is None:
            self.day = day
        if day > self.day:
            self._close_day()
            for _ in range(min(day - self.day - 1, 60)):  # days without use
                self._learn_total(0.0)
            self.day = day
        self.hours[hour % 24] += qty
        if self.charged is not None:  # tested since the baseline was known: the CUSUM moves
            self._charge(hour, self.fall)
            self.cusum += qty * self.gain

    def _learn_total(self, total: float) -> None:
        self.totals += 1
        a = 1.0 / self.totals if self.totals <= PROFILE_FIRST_DAYS else PROFILE_MEMORY
        d = total - self.day_mean
        self.day_mean += a * d
        self.day_var = (1.0 - a) * (self.day_var + a * d * d)

    def _close_day(self) -> None:
        total = sum(self.hours)
        self._learn_total(total)
        if total > 0:
            self.days += 1
            a = 1.0 / self.days if self.days <= PROFILE_FIRST_DAYS else PROFILE_MEMORY
            self.profile = [p + a * (x / total - p) for p, x in zip(self.profile, self.hours, strict=True)]
        self.hours = [0.0] * 24

    def _charge(self, hour: int, rate: float) -> None:
        """Charge the fall of every hour begun since the last one charged, up to ``hour``:
        reflected at zero at each hour's end, so over hours without use it is one clamp, and
        the current hour's share is taken before its uses are added."""
        last = self.charged
        self.charged = hour
        if last is None or hour <= last:
            return
        between = hour - last - 1  # whole hours passed with no use
        share = (between // 24) * sum(self.profile) + sum(self.profile[(last + 1 + i) % 24]
                                                         for i in range(between % 24))
        self.cusum = max(0.0, max(0.0, self.cusum) - rate * share) - rate * self.profile[hour % 24]

    def recent_rate(self, t_days: float) -> float:
        """Recent use per day."""
        return self._decayed(t_days) / self.tau_days

    def update(self, t_days: float, mean: float, var: float) -> bool:
        """Test the use so far against the baseline (mean, variance per day), which the use
        from now on is weighed by; True while a spike is on."""
        mean = max(mean, 0.0)
        # The dispersion of the days' totals as this detector saw them (the baseline's own
        # variance is of its estimate's residuals, and smaller); at least the baseline's.
        seen = self.day_var / self.day_mean if self.totals >= PROFILE_FIRST_DAYS and self.day_mean > 0 else 0.0
        phi = max(var / mean if mean > 0 else 1.0, seen, 1.0)
        hour = _hour(t_days)
        if self.charged is None:  # the first test: the CUSUM starts here
            self.charged = hour
        self._charge(hour, self.fall)
        self.fall = (self.factor - 1.0) * max(mean, MIN_RATE) / phi
        self.gain = math.log(self.factor) / phi
        if self.cusum > self.threshold + math.log(max(mean, 1.0)) + math.log(phi):
            self.active, self.cusum = True, 0.0
        elif self.active and self.recent_rate(t_days) < self.min_ratio * mean:
            self.active = False
        return self.active

    def lifted_mean(self, t_days: float, mean: float) -> float:
        """The mean per day the policy should use: during a spike, the recent rate, at most
        ``factor`` times the baseline (the change the CUSUM weighs evidence for; a one-day
        window right after a lump of use overshoots it, and as the baseline learns a lasting
        change the bound rises with it)."""
        return max(mean, min(self.recent_rate(t_days), self.factor * mean)) if self.active else mean

    def clone(self) -> SpikeDetector:
        return SpikeDetector(self.tau_days, self.min_ratio, self.factor, self.threshold)
