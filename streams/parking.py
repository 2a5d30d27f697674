"""Events parked until the reference data sent before them is stored (issue 14, item 5;
README, "Causal order across topics").

On the distributed profile master data (items, locations, suppliers) travel on the reference
topic and stock events on the events topic; nothing orders the two. The API stamps each event
with the reference topic's end offset when it produced it (``REFERENCE_OFFSET``), and a
worker judges it only once the store holds the reference topic up to there. Past a bounded
wait (``REPLENISH_REFERENCE_WAIT_SECONDS``) the events of a Kafka key (a stock point's
``sku@location``) that still wait are parked, in order, and so is every later event of that
key until they resume; the partition's other keys go on.

A parked event is a row of ``replenish_parked``, beside the events and tracking tables of
the worker's store (``streams.tracked_store``), written in the same transaction as the
batch's events and the tracking record that moves the consumer past it, so it is stored
exactly when its offset counts as consumed; and deleted in the same transaction as the
events its resumption stores, so it is decided once. It is kept pseudonymised (no case id in
clear; a case's key is replaced by its pseudonym)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TABLE = "replenish_parked"


@dataclass(frozen=True)
class ParkedEvent:
    partition: str  # the tracking name of the Kafka partition it came from (topic-partition)
    offset: int
    key: str  # whose events wait together (a stock point's sku@location; a case's pseudonym)
    needed: int  # the reference topic's end offset it was sent after
    event: bytes  # the event, pseudonymised, as JSON
    principal: str
    role: str
    reply_to: str | None = None  # the API request waiting for its outcome, if one was


@dataclass(frozen=True)
class ParkingChanges:
    """What a batch parks and what it resumes, stored in the batch's transaction."""

    park: Sequence[ParkedEvent] = ()
    unpark: Sequence[ParkedEvent] = ()

    def __bool__(self) -> bool:
        return bool(self.park or self.unpark)


def row(e: ParkedEvent) -> tuple[str, int, str, int, bytes, str, str, str | None]:
    """The columns of ``TABLE`` in order (partition, position, key, needed, event, principal,
    role, reply_to)."""
    return (e.partition, e.offset, e.key, e.needed, e.event, e.principal, e.role, e.reply_to)


def from_row(r: Sequence[object]) -> ParkedEvent:
    partition, position, key, needed, event, principal, role, reply_to = r
    return ParkedEvent(str(partition), int(position), str(key), int(needed),  # type: ignore[call-overload]
                       bytes(event), str(principal), str(role),  # type: ignore[call-overload]
                       None if reply_to is None else str(reply_to))


COLUMNS = "partition, position, key, needed, event, principal, role, reply_to"

__all__ = ["COLUMNS", "TABLE", "ParkedEvent", "ParkingChanges", "from_row", "row"]
