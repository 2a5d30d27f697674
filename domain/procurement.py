"""Procurement formulas: an offer's price at a quantity, a certificate's standing, the
expected total cost of buying a need from one supplier, the choice among suppliers, and a
supplier's score. Each is written here once; ``streams.procurement`` only feeds them.

The expected total cost of a candidate (README, "Procurement") is

    price      unit price at the order quantity (price breaks, minimum order) × quantity
  + lateness   E[days short] × demand per day × unit price × shortage multiplier(criticality)
  + quality    (1 − expected accepted share) × price

where E[days short] = E[(L − cover)+] for a lead time L ~ Normal(mean, sd) learned for the
supplier and item, and ``cover`` the days the usable stock on hand lasts at the forecast
demand, at the order quantity (the need, the minimum order, or a price break above them) of
least total. Every term is non-decreasing in price, lead-time mean, lead-time spread and
rejected share, and the price term strictly increasing in price, so a supplier that is worse
on every criterion (a higher minimum order included) is never chosen
(``tests/unit/test_procurement.py``).

>>> o = Offer("S1", "contract", "C-1", 10.0, ((100.0, 9.0), (500.0, 8.5)), 0.0, 3.0, None, None)
>>> unit_price(o, 50), unit_price(o, 100), unit_price(o, 800)
(10.0, 9.0, 8.5)
>>> round(expected_late_days(5.0, 0.0, 3.0), 6), round(expected_late_days(2.0, 0.0, 3.0), 6)
(2.0, 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

# What one unit short for a day costs, as a multiple of its unit price, by criticality: a
# critical item short delays care; a normal one is borrowed, substituted or expedited.
DEFAULT_SHORTAGE_MULTIPLIERS = {"critical": 20.0, "high": 4.0, "normal": 0.25}
CERTIFICATE_WARNING_DAYS = 30
NO_DEMAND_COVER_DAYS = math.inf


@dataclass(frozen=True)
class Offer:
    """One supplier's terms for one item: from a contract, a quote, or the item's master
    data (its registered supplier and unit cost)."""

    supplier: str
    source: str  # "contract", "quote" or "item_master"
    reference: str | None  # the contract id or the quote's event id
    price: float
    price_breaks: tuple[tuple[float, float], ...]  # (minimum quantity, unit price)
    min_order: float
    lead_time_days: float | None  # promised
    valid_from: str | None
    valid_until: str | None
    lead_time_sd_days: float | None = None  # its promised spread, when the terms give one

    def as_dict(self) -> dict[str, Any]:
        return {"supplier": self.supplier, "source": self.source, "reference": self.reference,
                "price": self.price, "price_breaks": [list(b) for b in self.price_breaks],
                "min_order": self.min_order, "lead_time_days": self.lead_time_days,
                "valid_from": self.valid_from, "valid_until": self.valid_until,
                **({"lead_time_sd_days": self.lead_time_sd_days} if self.lead_time_sd_days is not None else {})}


def unit_price(offer: Offer, quantity: float) -> float:
    """The unit price at ``quantity``: the break with the largest minimum at or below it."""
    price = offer.price
    best = -1.0
    for minimum, p in offer.price_breaks:
        if minimum <= quantity and minimum > best:
            price, best = p, minimum
    return price


def order_sizes(offer: Offer, quantity: float) -> list[float]:
    """The quantities worth costing for a need of ``quantity``: at least the minimum order,
    and each price break above that (buying up to a break can cost less in all)."""
    base = max(quantity, offer.min_order)
    return [base, *sorted({m for m, _ in offer.price_breaks if m > base})]


def is_valid(valid_from: str | None, valid_until: str | None, today: date) -> bool:
    """Whether a validity period (dates, inclusive; open ends) covers ``today``."""
    day = today.isoformat()
    return (valid_from is None or valid_from <= day) and (valid_until is None or day <= valid_until)


def certificate_standing(certificates: list[dict[str, Any]], today: date,
                         warning_days: int = CERTIFICATE_WARNING_DAYS) -> tuple[str, list[dict[str, Any]]]:
    """``none`` (nothing on record), ``expired`` (one has lapsed: the supplier is excluded),
    ``expiring`` (one lapses within ``warning_days``) or ``valid``; and each certificate's
    own standing."""
    if not certificates:
        return "none", []
    soon = (today + timedelta(days=warning_days)).isoformat()
    day = today.isoformat()
    rows = []
    for cert in certificates:
        until = cert.get("valid_until")
        standing = ("expired" if until is not None and until < day else
                    "expiring" if until is not None and until <= soon else "valid")
        rows.append({"name": cert.get("name"), "valid_until": until, "standing": standing})
    worst = ("expired" if any(r["standing"] == "expired" for r in rows) else
             "expiring" if any(r["standing"] == "expiring" for r in rows) else "valid")
    return worst, rows


def expected_late_days(mean: float, sd: float, cover_days: float) -> float:
    """E[(L − cover)+] for L ~ Normal(mean, sd): the expected days without stock when the
    order takes L days and the stock lasts ``cover_days``. Increasing in mean and in sd."""
    if math.isinf(cover_days):
        return 0.0
    if sd <= 0:
        return max(mean - cover_days, 0.0)
    z = (mean - cover_days) / sd
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * math.erfc(-z / math.sqrt(2))  # (not 1 + erf: that cancels far in the tail)
    return max(sd * pdf + (mean - cover_days) * cdf, 0.0)


@dataclass(frozen=True)
class Risk:
    """What is expected of a supplier for an item: lead time (learned, else promised) and
    the share of delivered units accepted at inspection."""

    lead_time_mean: float
    lead_time_sd: float
    accepted_share: float
    lead_time_source: str  # "learned" or "promised"


@dataclass(frozen=True)
class Need:
    """What is to be bought: quantity, forecast demand per day, and the days the usable
    stock on hand lasts; ``criticality`` sets the shortage multiplier."""

    sku: str
    quantity: float
    demand_per_day: float
    cover_days: float
    criticality: str


@dataclass(frozen=True)
class Costing:
    quantity: float
    unit_price: float
    price: float
    late_days: float
    lateness: float
    quality: float
    total: float

    def as_dict(self) -> dict[str, float]:
        return {"quantity": self.quantity, "unit_price": self.unit_price, "price": self.price,
                "expected_late_days": self.late_days, "lateness": self.lateness,
                "quality": self.quality, "total": self.total}


def expected_cost(offer: Offer, risk: Risk, need: Need,
                  multipliers: dict[str, float] | None = None) -> Costing:
    """The expected total cost of buying ``need`` on ``offer`` (module docstring), at the
    order quantity of least total among ``order_sizes``: within a price break the total grows
    with the quantity, so the least over every quantity the offer allows is at one of them."""
    mult = (multipliers or DEFAULT_SHORTAGE_MULTIPLIERS).get(need.criticality, 1.0)
    late = expected_late_days(risk.lead_time_mean, risk.lead_time_sd, need.cover_days)
    rejected = 1.0 - min(max(risk.accepted_share, 0.0), 1.0)
    best: Costing | None = None
    for qty in order_sizes(offer, need.quantity):
        each = unit_price(offer, qty)
        price = each * qty
        lateness = late * need.demand_per_day * each * mult
        quality = rejected * price
        costing = Costing(qty, each, price, late, lateness, quality, price + lateness + quality)
        if best is None or costing.total < best.total:
            best = costing
    assert best is not None
    return best


@dataclass
class Candidate:
    """One supplier considered for a need, with why it was or was not eligible."""

    offer: Offer
    risk: Risk
    costing: Costing
    certificates: str
    score: float | None
    excluded: str | None = None  # the reason, when the supplier may not be chosen
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"supplier": self.offer.supplier, "source": self.offer.source,
                "reference": self.offer.reference, "promised_lead_time_days": self.offer.lead_time_days,
                "lead_time_mean_days": self.risk.lead_time_mean, "lead_time_sd_days": self.risk.lead_time_sd,
                "lead_time_source": self.risk.lead_time_source, "accepted_share": self.risk.accepted_share,
                "certificates": self.certificates, "supplier_score": self.score,
                "excluded": self.excluded, "flags": list(self.flags), **self.costing.as_dict()}


def choose(candidates: list[Candidate]) -> Candidate | None:
    """The eligible candidate of least expected total cost (ties: contract before quote,
    then supplier id); one whose price is unknown (``no_price``) only when no priced one is
    eligible; None when none is eligible."""
    rank = {"contract": 0, "item_master": 1, "quote": 2}
    eligible = [c for c in candidates if c.excluded is None]
    if not eligible:
        return None
    return min(eligible, key=lambda c: ("no_price" in c.flags, c.costing.total, rank.get(c.offer.source, 3),
                                        c.offer.supplier))


# -- approval, compliance and review rules ----------------------------------------------
def approvals_needed(value: float, second_approval_limit: float) -> int:
    """Two principals approve a requisition above the second-approval limit, one below."""
    return 2 if value > second_approval_limit else 1


def due_by(expected_at: datetime, grace_days: float) -> datetime:
    """The last instant a delivery expected at ``expected_at`` is still on time."""
    return expected_at + timedelta(days=grace_days)


def price_breach(paid: float, contract: float, tolerance: float) -> bool:
    """A unit price above the contract's by more than ``tolerance`` (a share) breaks it."""
    return paid > contract * (1.0 + tolerance)


def lead_time_breach(days: float, promised: float, grace_days: float) -> bool:
    """A delivery taking longer than the promised lead time plus the grace breaks it."""
    return days > promised + grace_days


def review_needed(score: float, peak: float, review_score: float, review_drop: float) -> bool:
    """A supplier needs a review when its score is below the threshold, or has fallen the
    given drop below its peak since the last review."""
    return score < review_score or peak - score >= review_drop


# -- supplier score ------------------------------------------------------------------
SCORE_WEIGHTS = {"on_time": 0.30, "fill": 0.20, "batch_pass": 0.25, "price": 0.15, "recalls": 0.10}


def price_standing(price_ratio: float) -> float:
    """1 when paid at or under contract price, falling to 0 at 20 % over it."""
    return min(max(1.0 - (price_ratio - 1.0) * 5.0, 0.0), 1.0)


def recall_standing(recalls: float) -> float:
    """1 with no recent recall; each (decayed) recall halves what is left."""
    return 0.5 ** max(recalls, 0.0)


def supplier_score(on_time: float, fill: float, batch_pass: float, price_ratio: float,
                   recalls: float) -> float:
    """A supplier's score out of 100: the weighted rates of ``SCORE_WEIGHTS``.

    >>> supplier_score(1.0, 1.0, 1.0, 1.0, 0.0)
    100.0
    >>> supplier_score(0.5, 1.0, 1.0, 1.0, 0.0)
    85.0
    """
    w = SCORE_WEIGHTS
    value = (w["on_time"] * on_time + w["fill"] * fill + w["batch_pass"] * batch_pass
             + w["price"] * price_standing(price_ratio) + w["recalls"] * recall_standing(recalls))
    return round(100.0 * value, 6)
