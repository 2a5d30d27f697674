"""The service KPIs' definitions, once: what a stockout day, the fill rate, the average
inventory value, days of supply and the expired value are, over stock-point-days.

The simulator (``streams.simulation``) counts with these functions; the ClickHouse queries
(``projections.queries``) compute the same figures from the books and cite this module. The
one difference is what can be seen: a simulation knows the demand a stock point could not
meet, the books do not (``stockout_rate`` estimates it from the in-stock days' usage).

Units: quantities in base units, values in the currency of the item's unit cost, one day =
one closing of a stock point's books.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A stock point is out of stock when its on-hand is at most this (float sums of deltas).
EMPTY = 1e-9


def is_stockout_day(unmet: float) -> bool:
    """A stock-point-day is a stockout day when some of its demand was not met from stock."""
    return unmet > EMPTY


def fill_rate(met: float, demand: float) -> float:
    """Share of demand met from stock (0 to 1); 1 when there was no demand."""
    return met / demand if demand > EMPTY else 1.0


def stock_value(quantity: float, unit_cost: float) -> float:
    """Value of a stock quantity: quantity × the item's unit cost (≥ 0)."""
    return max(quantity, 0.0) * unit_cost


def days_of_supply(avg_inventory_value: float, daily_usage_value: float) -> float | None:
    """Average inventory value / mean value used per day; None when nothing was used."""
    return avg_inventory_value / daily_usage_value if daily_usage_value > EMPTY else None


# The criticality weights of the comparison's headline: a critical item's stockout-day counts 10.
DEFAULT_CRITICALITY_WEIGHTS = {"critical": 10.0, "high": 3.0, "normal": 1.0}


def weighted_stockout_days(by_criticality: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """Stockout-days summed over criticality classes, each class's weighted (default critical
    10, high 3, normal 1; a class without a weight counts 1).

    >>> weighted_stockout_days({"critical": 2, "high": 1, "normal": 5})
    28.0
    """
    w = DEFAULT_CRITICALITY_WEIGHTS if weights is None else weights
    return float(sum(w.get(k, 1.0) * v for k, v in by_criticality.items()))


@dataclass
class CycleTally:
    """Cycle service level: the share of replenishment cycles without a stockout. A stock
    point's cycle runs from one order placed to the next (its first from the start of the
    count, its last to the end); a cycle is short when any of its days was a stockout day."""

    cycles: int = 0
    short: int = 0
    _open: dict[str, bool] = field(default_factory=dict)  # stock point -> its open cycle is short

    def day(self, sp: str, stockout: bool) -> None:
        self._open[sp] = self._open.get(sp, False) or stockout

    def ordered(self, sp: str) -> None:
        """An order placed at the day's end: the stock point's cycle closes, the next opens."""
        if sp in self._open:
            self._close(sp)
        self._open[sp] = False

    def close(self) -> None:
        """The end of the count: every open cycle ends."""
        for sp in list(self._open):
            self._close(sp)

    def _close(self, sp: str) -> None:
        self.cycles += 1
        self.short += self._open.pop(sp)

    @property
    def service(self) -> float:
        return 1.0 - self.short / self.cycles if self.cycles else 1.0


@dataclass
class KpiTally:
    """The figures of a set of stock points over a period, fed one closing day at a time.

    ``close_day`` takes, per stock point, the day's demand, what stock met of it and the
    closing on-hand value; ``stockout_events`` counts runs of consecutive stockout days."""

    days: int = 0
    demand: float = 0.0
    met: float = 0.0
    met_value: float = 0.0
    stockout_days: int = 0
    stockout_events: int = 0
    inventory_value_sum: float = 0.0
    expired_value: float = 0.0
    expired_quantity: float = 0.0
    _out_yesterday: set[str] = field(default_factory=set)

    def close_day(self, rows: list[tuple[str, float, float, float, float]]) -> None:
        """``rows``: (stock point, demand, met, closing on-hand value, unit cost) for each
        stock point on one day."""
        out_today: set[str] = set()
        value = 0.0
        for sp, demand, met, closing_value, unit_cost in rows:
            self.demand += demand
            self.met += met
            self.met_value += stock_value(met, unit_cost)
            value += closing_value
            if is_stockout_day(demand - met):
                self.stockout_days += 1
                out_today.add(sp)
                if sp not in self._out_yesterday:
                    self.stockout_events += 1
        self.inventory_value_sum += value
        self._out_yesterday = out_today
        self.days += 1

    def expire(self, quantity: float, unit_cost: float) -> None:
        """Stock that expired on the shelf."""
        self.expired_quantity += quantity
        self.expired_value += stock_value(quantity, unit_cost)

    @property
    def avg_inventory_value(self) -> float:
        return self.inventory_value_sum / self.days if self.days else 0.0

    def figures(self) -> dict[str, float | int | None]:
        avg = self.avg_inventory_value
        daily_use = self.met_value / self.days if self.days else 0.0
        return {"stockout_days": self.stockout_days, "stockout_events": self.stockout_events,
                "fill_rate": fill_rate(self.met, self.demand),
                "avg_inventory_value": avg, "days_of_supply": days_of_supply(avg, daily_use),
                "expired_value": self.expired_value, "expired_quantity": self.expired_quantity,
                "demand": self.demand, "demand_met": self.met}
