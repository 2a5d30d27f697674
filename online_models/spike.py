"""Demand spikes: the recent rate against the baseline, within the event that reveals it."""

from __future__ import annotations

import math
from functools import cache
from statistics import NormalDist

from domain.policy import LeadTimeDemand, ltd_quantile
from online_models.slotted import Slotted

_SLOTS = ("tau_days", "false_alarm", "warning", "min_ratio", "level", "t_last", "active",
          "reference", "warn", "limit", "seen_mean", "seen_var", "seen_t", "seen_days")
# The sum as seen at each use, averaged over about this many days (while no spike is on).
SEEN_MEMORY_DAYS = 28.0
SEEN_MIN_DAYS = 14.0  # ... and trusted once it spans this many


@cache
def _normal_z(tail: float) -> float:
    """The standard normal quantile leaving ``tail`` above it (a detector's few rates: computed
    once each, not on every use)."""
    return NormalDist().inv_cdf(1.0 - tail)


class SpikeDetector(Slotted):
    """An exponentially weighted sum of recent use in continuous time (time constant
    ``tau_days``), tested against what the baseline (mean and variance per day) predicts.

    Under the baseline the weighted sum S has mean μ·τ and variance v·τ/2. A spike is S above
    the 1 − ``false_alarm`` quantile of a count with mean μτ and variance max(v, μ)·τ (Poisson
    or negative binomial, as ``domain.policy.ltd_quantile``: the doubled variance and the
    skewed tail keep false alarms rare on lumpy demand), with S/τ ≥ ``min_ratio``·μ. While it
    lasts, ``lifted_mean`` returns the recent rate S/τ instead of the baseline, so the policy
    sees the spike in the same event; as use returns to normal S decays with time constant τ
    and the lift fades. (An EWMA control chart with a probability limit; Montgomery,
    *Introduction to Statistical Quality Control*, 7th ed., §9.2.)

    The limits come from a reference baseline that follows the baseline only while S is calm
    (at or below the reference's 1 − ``warning`` quantile, or no longer ``min_ratio`` times the
    baseline's mean): a step up in demand takes more than a day to show in S, and meanwhile
    the baseline learns the first high days, mostly as variance, which would lift a limit
    computed afresh out of reach. Once the baseline has caught up, the reference follows.

    The limit assumes uses spread through the day. Where they are not (a cabinet's or an ERP's
    daily feed posts the day's use as one quantity at a fixed hour), S right after each post is
    about μ/(1−e^(−1/τ)), 1.58 μ for τ = 1 day, far above μτ, and every post would look like
    a spike. So the detector also keeps the mean and variance of S as it was seen at each use
    while no spike was on (exponentially weighted over ``SEEN_MEMORY_DAYS``), and once they
    span ``SEEN_MIN_DAYS`` the limit is at least their mean plus as many standard deviations
    as the false-alarm rate asks of a normal tail: the stock point's own rhythm of posting
    is the reference, not the model's.

    >>> d = SpikeDetector(tau_days=1.0)
    >>> for h in range(48):                       # two days at the baseline: 1 use per hour
    ...     d.learn_one(h / 24, 1.0)
    >>> d.update(48 / 24, 24.0, 24.0)
    False
    >>> for m in range(40):                       # then 40 uses in 40 minutes
    ...     d.learn_one(2 + m / 1440, 1.0)
    >>> d.update(2 + 40 / 1440, 24.0, 24.0), d.lifted_mean(2 + 40 / 1440, 24.0) > 24.0
    (True, True)
    """

    __slots__ = _SLOTS

    def __init__(self, tau_days: float = 1.0, false_alarm: float = 1e-4, warning: float = 0.05,
                 min_ratio: float = 1.5) -> None:
        self.tau_days = tau_days
        self.false_alarm = false_alarm
        self.warning = warning
        self.min_ratio = min_ratio
        self.level = 0.0
        self.t_last: float | None = None
        self.active = False
        # The reference baseline (mean, var per day) and its warning level and limit: the
        # baseline moves once a day, so the quantiles are not recomputed on every use.
        self.reference: tuple[float, float] | None = None
        self.warn = 0.0
        self.limit = 0.0
        self.seen_mean = 0.0  # S at each use, while calm: EW mean and variance
        self.seen_var = 0.0
        self.seen_t: float | None = None
        self.seen_days = 0.0

    def _decayed(self, t: float) -> float:
        if self.t_last is None or t <= self.t_last:
            return self.level
        return self.level * math.exp(-(t - self.t_last) / self.tau_days)

    def learn_one(self, t_days: float, qty: float) -> None:
        """Add ``qty`` used at ``t_days`` (days, any origin; late events count at the clock)."""
        self.level = self._decayed(t_days) + qty
        if self.t_last is None or t_days > self.t_last:
            self.t_last = t_days
        if not self.active:
            self._see(self.t_last, self.level)

    def _see(self, t: float, s: float) -> None:
        """Learn the sum as seen at a use (weights by elapsed time: one busy day is no more
        than one quiet day)."""
        if self.seen_t is None:
            self.seen_t, self.seen_mean = t, s
            return
        dt = max(t - self.seen_t, 0.0)
        a = 1.0 - math.exp(-dt / SEEN_MEMORY_DAYS) if dt > 0 else 1e-3
        d = s - self.seen_mean
        self.seen_mean += a * d
        self.seen_var = (1.0 - a) * (self.seen_var + a * d * d)
        self.seen_days += dt
        self.seen_t = t

    def recent_rate(self, t_days: float) -> float:
        """Recent use per day."""
        return self._decayed(t_days) / self.tau_days

    def update(self, t_days: float, mean: float, var: float) -> bool:
        """Re-test against the baseline (per day); True while a spike is on."""
        s = self._decayed(t_days)
        tau = self.tau_days
        baseline = (mean, var)
        if self.reference != baseline and (
                self.reference is None or s <= self.warn or s / tau < self.min_ratio * mean):
            self.reference = baseline
            self.warn = self._quantile(mean, var, 1.0 - self.warning)
            self.limit = self._quantile(mean, var, 1.0 - self.false_alarm)
        limit = self.limit
        if self.seen_days >= SEEN_MIN_DAYS:
            limit = max(limit, self.seen_mean + _normal_z(self.false_alarm) * math.sqrt(max(self.seen_var, 0.0)))
        self.active = s > limit and s / tau >= self.min_ratio * mean
        return self.active

    def _quantile(self, mean: float, var: float, level: float) -> float:
        tau = self.tau_days
        return ltd_quantile(LeadTimeDemand(mean * tau, max(var, mean, 0.0) * tau), level)

    def lifted_mean(self, t_days: float, mean: float) -> float:
        """The mean per day the policy should use: the recent rate during a spike."""
        return max(mean, self.recent_rate(t_days)) if self.active else mean

    def clone(self) -> SpikeDetector:
        return SpikeDetector(self.tau_days, self.false_alarm, self.warning, self.min_ratio)
