"""A supplier's delivery record, learned event by event (per supplier, and per supplier × item).

Each rate is an exponentially weighted share with a prior of ``PRIOR_WEIGHT`` observations at
the rate a new supplier is assumed to have, so one delivery moves it but does not set it, and
old deliveries fade. Lead time is not here: it is read from the one lead-time model
(``online_models.lead_time``) per supplier and item.

>>> r = SupplierRecord()
>>> round(r.on_time_rate(), 3), round(r.batch_pass_rate(), 3)
(0.95, 0.98)
>>> r.learn_delivery(on_time=False, filled=0.5)
>>> r.learn_inspection(accepted=50, rejected=50)
>>> round(r.on_time_rate(), 3), round(r.fill_rate(), 3), round(r.batch_pass_rate(), 3)
(0.633, 0.833, 0.653)
"""

from __future__ import annotations

from online_models.slotted import Slotted

PRIOR_WEIGHT = 2.0
DECAY = 0.8  # the weight an observation keeps with each newer one of its kind (memory ~5)
PRIOR_ON_TIME = 0.95
PRIOR_FILL = 1.0
PRIOR_BATCH_PASS = 0.98
PRIOR_ACCEPTED = 0.98
RECALL_DECAY_DAYS = 365.0  # a recall weighs half as much after this many days

_SLOTS = ("deliveries", "on_time", "lines", "filled", "batches", "passed", "units", "accepted",
          "priced", "price_ratio", "recalls", "recall_at", "responses", "response_days", "breaches",
          "orders", "acknowledged", "backordered", "shipments")


class SupplierRecord(Slotted):
    __slots__ = _SLOTS

    def __init__(self) -> None:
        self.deliveries = 0.0  # weights (decayed counts) and weighted sums
        self.on_time = 0.0
        self.lines = 0.0
        self.filled = 0.0
        self.batches = 0.0
        self.passed = 0.0
        self.units = 0.0
        self.accepted = 0.0
        self.priced = 0.0
        self.price_ratio = 0.0
        self.recalls = 0.0  # decayed count, as of day ``recall_at``
        self.recall_at = 0.0
        self.responses = 0  # recalls closed, and their mean days from issue to close
        self.response_days = 0.0
        self.breaches = 0
        self.orders = 0  # purchase orders issued to it, shipping notices it sent
        self.shipments = 0
        self.acknowledged = 0.0  # order lines acknowledged, and those backordered (decayed)
        self.backordered = 0.0

    # -- learning -------------------------------------------------------------------
    def learn_delivery(self, on_time: bool | None, filled: float | None) -> None:
        """A first receipt against a purchase order line: on time by the promised date, and
        the share of the ordered quantity it brought."""
        if on_time is not None:
            self.deliveries = self.deliveries * DECAY + 1.0
            self.on_time = self.on_time * DECAY + (1.0 if on_time else 0.0)
        if filled is not None:
            self.lines = self.lines * DECAY + 1.0
            self.filled = self.filled * DECAY + min(max(filled, 0.0), 1.0)

    def learn_inspection(self, accepted: float, rejected: float) -> None:
        """An inspection of a delivered batch: it passes when nothing was rejected."""
        self.batches = self.batches * DECAY + 1.0
        self.passed = self.passed * DECAY + (1.0 if rejected <= 0 else 0.0)
        total = accepted + rejected
        if total > 0:
            self.units = self.units * DECAY + 1.0
            self.accepted = self.accepted * DECAY + accepted / total

    def learn_price(self, ratio: float) -> None:
        """A receipt's unit price over the contract's at that quantity."""
        self.priced = self.priced * DECAY + 1.0
        self.price_ratio = self.price_ratio * DECAY + ratio

    def learn_recall(self, day: float) -> None:
        self.recalls = self.recalls_now(day) + 1.0
        self.recall_at = day

    def learn_recall_closed(self, days: float) -> None:
        self.responses += 1
        self.response_days += (days - self.response_days) / self.responses

    def learn_breach(self) -> None:
        self.breaches += 1

    def learn_order(self) -> None:
        self.orders += 1

    def learn_acknowledgement(self, backordered: bool) -> None:
        """An acknowledged order line, backordered or confirmed in full."""
        self.acknowledged = self.acknowledged * DECAY + 1.0
        self.backordered = self.backordered * DECAY + (1.0 if backordered else 0.0)

    def learn_shipment(self) -> None:
        self.shipments += 1

    def backorder_rate(self) -> float:
        """The share of acknowledged order lines the supplier backordered (recent ones weigh
        most; 0 before any acknowledgement)."""
        return self.backordered / self.acknowledged if self.acknowledged else 0.0

    # -- reading --------------------------------------------------------------------
    @staticmethod
    def _rate(hits: float, n: float, prior: float) -> float:
        return (hits + prior * PRIOR_WEIGHT) / (n + PRIOR_WEIGHT)

    def on_time_rate(self) -> float:
        return self._rate(self.on_time, self.deliveries, PRIOR_ON_TIME)

    def fill_rate(self) -> float:
        return self._rate(self.filled, self.lines, PRIOR_FILL)

    def batch_pass_rate(self) -> float:
        return self._rate(self.passed, self.batches, PRIOR_BATCH_PASS)

    def accepted_share(self) -> float:
        """The expected share of delivered units accepted at inspection."""
        return self._rate(self.accepted, self.units, PRIOR_ACCEPTED)

    def price_vs_contract(self) -> float:
        """Paid over contract price (1 = as contracted), weighted to recent receipts."""
        return self._rate(self.price_ratio, self.priced, 1.0)

    def recalls_now(self, day: float) -> float:
        """Recalls, each weighing half as much per ``RECALL_DECAY_DAYS`` of age."""
        if self.recalls == 0:
            return 0.0
        return self.recalls * 0.5 ** (max(day - self.recall_at, 0.0) / RECALL_DECAY_DAYS)
