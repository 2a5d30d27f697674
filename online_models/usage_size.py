"""Size of each use of a stock point (units per transaction), learned one use at a time."""

from __future__ import annotations

from online_models.slotted import Slotted

_SLOTS = ("alpha", "n", "m1", "m2", "m3")


class UsageSize(Slotted):
    """Exponentially weighted first three moments of the quantity of each use (smoothing
    ``alpha``, averaging while fewer than ``1/alpha`` uses are seen). A stock point used one
    unit at a time has every moment 1; one that gives out boxes or kits has larger ones, and
    its inventory position falls below the reorder point by more when an order is triggered
    (``domain.policy.undershoot`` turns the moments into that undershoot).

    >>> s = UsageSize()
    >>> for q in (1.0, 3.0, 1.0, 3.0):
    ...     s.learn_one(q)
    >>> s.predict_one()
    (2.0, 5.0, 14.0)
    """

    __slots__ = _SLOTS

    def __init__(self, alpha: float = 0.05) -> None:
        self.alpha = alpha
        self.n = 0
        self.m1 = 0.0
        self.m2 = 0.0
        self.m3 = 0.0

    def learn_one(self, qty: float) -> None:
        if qty <= 0:
            return
        self.n += 1
        a = max(self.alpha, 1.0 / self.n)
        self.m1 += a * (qty - self.m1)
        self.m2 += a * (qty * qty - self.m2)
        self.m3 += a * (qty * qty * qty - self.m3)

    def predict_one(self) -> tuple[float, float, float]:
        """E[X], E[X²], E[X³] of the quantity X of one use (all 0 before the first)."""
        return self.m1, self.m2, self.m3

    def clone(self) -> UsageSize:
        """A fresh model with the same settings."""
        return UsageSize(self.alpha)

    def __repr__(self) -> str:
        return f"UsageSize(mean={self.m1:.3g}, n={self.n})"
