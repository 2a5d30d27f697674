"""Stock arithmetic: balances as of an instant, and the inventory position.

A stock fact's ``moves`` say what it does to each lot: ``["add", lot, q]`` (receipt +q,
usage −q, ...) or ``["set", lot, q]`` (a count). Balances follow ``occurred_at``: the
balance of a lot at an instant is the fold of the moves up to it in ``occurred_at`` order
(ties in recording order), so a late event lands at its place in history and a count
supersedes whatever came before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Moves = list[list[Any]]


def _in_order(facts: Iterable[tuple[str, Moves]], until: str | None = None) -> list[tuple[str, int, Moves]]:
    """Facts in ``occurred_at`` order, ties in recording order, up to ``until`` (inclusive)."""
    return sorted(((at, i, moves) for i, (at, moves) in enumerate(facts) if until is None or at <= until),
                  key=lambda f: (f[0], f[1]))


def _apply(lots: dict[str, float], moves: Moves) -> None:
    for op, lot, q in moves:
        lots[lot] = q if op == "set" else lots.get(lot, 0.0) + q


def fold_balances(facts: Iterable[tuple[str, Moves]], until: str | None = None) -> dict[str, float]:
    """Lot balances from facts given in recording order as (occurred_at UTC ISO, moves).

    ``until`` (UTC ISO, inclusive) cuts the history at an instant of ``occurred_at``.
    """
    lots: dict[str, float] = {}
    for _, _, moves in _in_order(facts, until):
        _apply(lots, moves)
    return lots


def balance_history(facts: Iterable[tuple[str, Moves]]) -> list[tuple[str, float]]:
    """(occurred_at, the balance of every lot together) after each fact, folded as
    ``fold_balances`` folds them.

    >>> balance_history([("2026-01-02", [["add", "L1", -2.0]]), ("2026-01-01", [["add", "L1", 10.0]]),
    ...                  ("2026-01-03", [["set", "L1", 5.0]])])
    [('2026-01-01', 10.0), ('2026-01-02', 8.0), ('2026-01-03', 5.0)]
    """
    lots: dict[str, float] = {}
    out = []
    for at, _, moves in _in_order(facts):
        _apply(lots, moves)
        out.append((at, sum(lots.values())))
    return out


def inventory_position(usable_on_hand: float, on_order: float = 0.0, reserved: float = 0.0) -> float:
    """Inventory position = usable on hand + on order − reserved for scheduled cases (base units).

    The one formula: later issues feed ``on_order`` (open POs, requisitions, transfer
    requests) and ``reserved`` (scheduled cases) into it rather than writing another.
    """
    return usable_on_hand + on_order - reserved
