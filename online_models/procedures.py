"""Preference cards as they are really used: expected use of each item per procedure."""

from __future__ import annotations


class ProcedureUsage:
    """Per procedure, the exponentially weighted mean quantity of each item used per case,
    learned from completed cases (an item on the card but not used in a case learns a 0).

    >>> pu = ProcedureUsage(alpha=0.5)
    >>> pu.learn_one("hip", {"IMPLANT-H": 1.0, "SUT-2": 3.0})
    >>> pu.learn_one("hip", {"IMPLANT-H": 1.0})
    >>> pu.expected("hip", "IMPLANT-H"), pu.expected("hip", "SUT-2"), pu.expected("knee", "SUT-2")
    (1.0, 1.5, 0.0)
    """

    __slots__ = ("alpha", "cases", "cards")

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.cases: dict[str, int] = {}
        self.cards: dict[str, dict[str, float]] = {}

    def learn_one(self, procedure: str, used: dict[str, float]) -> None:
        n = self.cases.get(procedure, 0) + 1
        self.cases[procedure] = n
        a = max(self.alpha, 1.0 / n)
        card = self.cards.setdefault(procedure, {})
        for sku in set(card) | set(used):
            prev = card.get(sku, 0.0)
            card[sku] = prev + a * (used.get(sku, 0.0) - prev)

    def expected(self, procedure: str, sku: str) -> float:
        return self.cards.get(procedure, {}).get(sku, 0.0)

    def items(self, procedure: str) -> dict[str, float]:
        return dict(self.cards.get(procedure, {}))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProcedureUsage) and (self.cases, self.cards) == (other.cases, other.cards)

    def clone(self) -> ProcedureUsage:
        return ProcedureUsage(self.alpha)
