"""Supplier lead time per supplier and item, learned from purchase orders and receipts."""

from __future__ import annotations

from online_models.slotted import Slotted

_SLOTS = ("alpha", "n", "mean", "var", "on_time", "boost", "surprised", "ref", "last")
# The spread a surprise is judged by is at least this share of the mean (a very steady
# supplier's few hours late are not a change).
SPREAD_FLOOR = 0.1
# Two receipts in a row this many spreads from the mean, on the same side, are a change of the
# supplier's lead time, not noise (one late delivery is): the model restarts at the new level
# (the mean of the two) with the spread it had within the old one (a shift of the level is not
# spread), and the next ``BOOST_ORDERS`` − 1 receipts are learned with weight ``BOOST_ALPHA``,
# so mean and spread follow a change, and come back after it ends, within a few orders. An
# open order this many spreads past the mean (the same floor) is the same evidence before it
# arrives (``domain.policy.censored_lead_time``'s ``surprised_weight``). The first surprising
# receipt, until a second confirms it, is learned as if it were ``SURPRISE_SDS`` spreads from
# the mean (winsorised, as a Huber estimator does): one delivery held up by an outage moves the
# mean and spread by a bounded amount instead of inflating the spread for a dozen orders.
SURPRISE_SDS = 3.0
BOOST_ORDERS = 3
BOOST_ALPHA = 0.6


# The lead time's spread assumed, as a share of the lead time, before any receipt and when
# neither the item master nor the supplier's terms give one (``lead_time_sd_days``).
PRIOR_SPREAD = 0.2

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
        self.boost = 0  # receipts left to learn at BOOST_ALPHA
        self.surprised = 0  # the last receipt was far above (1) or below (-1) the mean, or not (0)
        self.ref = (0.0, 0.0)  # mean and spread before that receipt, to test the next one against
        self.last = 0.0  # the last receipt's lead time

    def learn_one(self, days: float, on_time: bool | None = None) -> None:
        surprise, learned = False, days
        if self.n >= BOOST_ORDERS and not self.boost:
            mean, sd = self.ref if self.surprised else (self.mean, max(self.var ** 0.5, SPREAD_FLOOR * self.mean, 1e-9))
            side = 1 if days - mean > SURPRISE_SDS * sd else -1 if mean - days > SURPRISE_SDS * sd else 0
            surprise = side != 0 and side == self.surprised
            if surprise:
                self.boost, self.surprised = BOOST_ORDERS, 0
            else:
                self.surprised, self.ref = side, (mean, sd)
                learned = mean + side * SURPRISE_SDS * sd if side else days
        self.n += 1
        a = max(self.alpha, 1.0 / self.n)
        if self.boost:
            a, self.boost = max(a, BOOST_ALPHA), self.boost - 1
        if on_time is not None:
            self.on_time += a * ((1.0 if on_time else 0.0) - self.on_time)
        if surprise:  # a change: restart at the new level, with the spread within the old one
            self.mean, self.var = (self.last + days) / 2, min(self.var, self.ref[1] ** 2)
        else:
            d = learned - self.mean
            self.mean += a * d
            self.var = (1 - a) * (self.var + a * d * d) if self.n > 1 else 0.0
        self.last = days

    def next_weight(self, prior_weight: float = 2.0) -> float:
        """The weight the next observation gets (as ``learn_one`` and ``predict`` give it):
        1/(1 + prior_weight) before any receipt."""
        return max(self.alpha, 1.0 / (self.n + 1)) if self.n else 1.0 / (1.0 + prior_weight)

    @staticmethod
    def prior_var(default_days: float, default_sd: float | None = None) -> float:
        """The variance (days²) assumed of a lead time before any receipt: the spread the
        master data or the supplier's terms give (``lead_time_sd_days``), else
        ``PRIOR_SPREAD`` (20 %) of the lead time."""
        if default_sd is not None:
            return float(default_sd) ** 2
        return (PRIOR_SPREAD * default_days) ** 2

    def predict(self, default_days: float, prior_weight: float = 2.0,
                default_sd: float | None = None) -> tuple[float, float]:
        """Mean and variance (days²) of the lead time: what receipts taught, shrunk to the
        prior (``default_days``, and ``default_sd`` or the 20 % spread) with the weight of
        ``prior_weight`` receipts."""
        prior_var = self.prior_var(default_days, default_sd)
        if self.n == 0:
            return default_days, prior_var
        w = self.n / (self.n + prior_weight)
        mean = w * self.mean + (1 - w) * default_days
        var = w * self.var + (1 - w) * prior_var
        return mean, var

    def clone(self) -> LeadTime:
        return LeadTime(self.alpha)
