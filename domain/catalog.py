"""Master data: items, locations and suppliers, each effective-dated.

Registering an item, location or supplier again is an update that takes effect from its
``occurred_at``; an event is judged against the version in force at its own ``occurred_at``
(or the first version, for history older than the first registration).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from domain.gtin import normalise_gtin

T = TypeVar("T")

CRITICALITIES = ("critical", "high", "normal")
# Base units that measure rather than count: an item in one of them may move in fractions
# (``divisible`` defaults to true); any other base unit counts whole pieces.
MEASURE_UNITS = frozenset({"ml", "l", "cl", "dl", "ul", "g", "kg", "mg", "m", "cm", "mm"})


def divisible_by_default(base_unit: str) -> bool:
    return base_unit.strip().lower() in MEASURE_UNITS


@dataclass(frozen=True)
class Item:
    sku: str
    gtin: str | None
    gtins: dict[str, str]
    description: str
    base_unit: str
    units: dict[str, float]
    pack_size: float
    criticality: str
    lead_time_days: float | None
    supplier: str | None
    unit_cost: float | None
    currency: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    divisible: bool = False  # moves in fractions of its base unit (``ml``, ``g``...)

    def factor(self, unit: str | None) -> float | None:
        """Base units in one ``unit`` (None when the item has no such unit)."""
        if unit is None or unit == self.base_unit:
            return 1.0
        return self.units.get(unit)


@dataclass(frozen=True)
class Location:
    location: str
    site: str
    name: str
    kind: str
    timezone: str
    restocked_from: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    gln: str | None = None  # the place's GLN (``domain.epc.place_key``): how EPCIS names it


@dataclass(frozen=True)
class Supplier:
    supplier: str
    name: str
    extra: dict[str, Any] = field(default_factory=dict)


class Versions(Generic[T]):
    """Versions of one master record, ordered by the instant they take effect."""

    __slots__ = ("_starts", "_values")

    def __init__(self) -> None:
        self._starts: list[datetime] = []
        self._values: list[T] = []

    def add(self, effective_from: datetime, value: T) -> None:
        i = bisect.bisect_right(self._starts, effective_from)
        self._starts.insert(i, effective_from)
        self._values.insert(i, value)

    def at(self, t: datetime) -> T:
        values = self._values
        if len(values) == 1:  # (most records are never re-registered)
            return values[0]
        i = bisect.bisect_right(self._starts, t)
        return values[max(i - 1, 0)]

    def latest(self) -> T:
        return self._values[-1]

    def __bool__(self) -> bool:
        return bool(self._values)


@dataclass
class Catalog:
    items: dict[str, Versions[Item]] = field(default_factory=dict)
    locations: dict[str, Versions[Location]] = field(default_factory=dict)
    suppliers: dict[str, Versions[Supplier]] = field(default_factory=dict)
    # GTIN-14 -> (sku, packaging unit: the base unit or a key of Item.units)
    by_gtin: dict[str, tuple[str, str]] = field(default_factory=dict)
    by_gln: dict[str, str] = field(default_factory=dict)  # place key (domain.epc) -> location id

    def register_item(self, item: Item, effective_from: datetime) -> None:
        self.items.setdefault(item.sku, Versions()).add(effective_from, item)
        if item.gtin:
            self.by_gtin[normalise_gtin(item.gtin)] = (item.sku, item.base_unit)
        for level, gtin in item.gtins.items():
            self.by_gtin[normalise_gtin(gtin)] = (item.sku, level)

    def register_location(self, location: Location, effective_from: datetime) -> None:
        versions = self.locations.setdefault(location.location, Versions())
        before = versions.latest().gln if versions else None
        versions.add(effective_from, location)
        now = versions.latest().gln
        if before and before != now and self.by_gln.get(before) == location.location:
            del self.by_gln[before]  # (the place's GLN changed)
        if now:
            self.by_gln[now] = location.location

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A model pickled before GLNs were kept (a snapshot of an earlier version) has no
        ``by_gln``: made from its locations."""
        self.__dict__.update(state)
        if "by_gln" not in state:
            self.by_gln = {}
            for name, versions in self.locations.items():
                gln = getattr(versions.latest(), "gln", None)
                if gln:
                    self.by_gln[gln] = name

    def resolve_gln(self, key: str) -> str | None:
        """The location a place key (``domain.epc.place_key``) names, if one registered it."""
        return self.by_gln.get(key)

    def register_supplier(self, supplier: Supplier, effective_from: datetime) -> None:
        self.suppliers.setdefault(supplier.supplier, Versions()).add(effective_from, supplier)

    def item(self, sku: str, at: datetime) -> Item | None:
        versions = self.items.get(sku)
        return versions.at(at) if versions else None

    def supplier(self, supplier: str, at: datetime) -> Supplier | None:
        versions = self.suppliers.get(supplier)
        return versions.at(at) if versions else None

    def location(self, location: str, at: datetime) -> Location | None:
        versions = self.locations.get(location)
        return versions.at(at) if versions else None

    def resolve_gtin(self, gtin: str) -> tuple[str, str] | None:
        return self.by_gtin.get(normalise_gtin(gtin))
