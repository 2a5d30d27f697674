"""The baseline: a plain ``eventsourcing`` aggregate and application over the same SQLite
settings and orjson transcoder as ours, with no validation, no de-duplication and no hash
chain. Appending is what the library's own examples do: trigger an event on an aggregate,
then ``save`` the aggregates of a batch in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from eventsourcing.domain import BaseAggregate, CanInitAggregate, CanMutateAggregate

from streams.store import EventStore


class RawStore(EventStore):
    name = "raw"


class RawAggregate(BaseAggregate[str]):
    @dataclass(frozen=True)
    class Event(CanMutateAggregate[str]):
        originator_id: str
        originator_version: int
        timestamp: datetime

        def apply(self, aggregate: Any) -> None:
            pass

    @dataclass(frozen=True)
    class Opened(Event, CanInitAggregate[str]):
        originator_topic: str
        name: str

    @dataclass(frozen=True)
    class Appended(Event):
        event: dict[str, Any]
        pad: str

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def open(cls, name: str, at: datetime) -> Self:
        return cls._create(cls.Opened, id=f"raw:{name}", name=name, timestamp=at)

    def append(self, event: dict[str, Any], pad: str, at: datetime) -> None:
        self.trigger_event(self.Appended, event=event, pad=pad, timestamp=at)
