"""Supplier lead time per supplier and item, learned from purchase orders and receipts."""

from __future__ import annotations

from online_models.slotted import Slotted

_SLOTS = ("alpha", "n", "mean", "var", "on_time")


class LeadTime(Slotted):
    """Lead time in days (PO issued → receipt): exponentially weighted mean and variance,
    and the on-time rate (received by the promised date). Until ``prior_weight`` receipts are
    seen, estimates lean on the master data's lead time (a shrinkage prior), so one early
    delivery does not set the policy.

    >>> lt = LeadTime()
    >>> lt.predict(default_days=5.0)
    (5.0, 1.0)
    >>> for days in (7.0, 8.0, 7.5, 7.0, 8.0, 7.5):
    ...     lt.learn_one(days, on_time=False)
    >>> mean, var = lt.predict(default_days=5.0)
    >>> 6.5 < mean < 7.6, lt.on_time
    (True, 0.0)
    """

    __slots__ = _SLOTS

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha
        self.n = 0
        self.mean = 0.0
        self.var = 0.0
        self.on_time = 1.0

    def learn_one(self, days: float, on_time: bool | None = None) -> None:
        self.n += 1
        a = max(self.alpha, 1.0 / self.n)
        d = days - self.mean
        self.mean += a * d
        self.var = (1 - a) * (self.var + a * d * d) if self.n > 1 else 0.0
        if on_time is not None:
            self.on_time += a * ((1.0 if on_time else 0.0) - self.on_time)

    def next_weight(self, prior_weight: float = 2.0) -> float:
        """The weight the next observation gets (as ``learn_one`` and ``predict`` give it):
        1/(1 + prior_weight) before any receipt."""
        return max(self.alpha, 1.0 / (self.n + 1)) if self.n else 1.0 / (1.0 + prior_weight)

    @staticmethod
    def prior_var(default_days: float) -> float:
        """The variance (days²) assumed of a lead time before any receipt: a 20 % spread."""
        return (0.2 * default_days) ** 2

    def predict(self, default_days: float, prior_weight: float = 2.0) -> tuple[float, float]:
        """Mean and variance (days²) of the lead time."""
        prior_var = self.prior_var(default_days)
        if self.n == 0:
            return default_days, prior_var
        w = self.n / (self.n + prior_weight)
        mean = w * self.mean + (1 - w) * default_days
        var = w * self.var + (1 - w) * prior_var
        return mean, var

    def clone(self) -> LeadTime:
        return LeadTime(self.alpha)
