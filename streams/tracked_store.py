"""The event store of a Kafka worker: events and tracking records in one transaction.

A worker consumes several topic-partitions at once, so one batch carries one tracking record
per topic-partition (``application_name`` ``<topic>-<partition>``, ``notification_id`` the
last offset consumed). ``eventsourcing``'s process recorders write one tracking record with
the events; the recorders here write any number, in the same transaction. A tracking record
only moves forward (the library's single-row tracking refuses an offset at or below the
stored one), so a batch that was already stored cannot be stored again: the whole
transaction fails and nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eventsourcing.persistence import ProcessRecorder, StoredEvent, Tracking
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder
from eventsourcing.utils import get_topic

from streams.store import EventStore, created_concurrently


class PostgresPartitionRecorder(PostgresProcessRecorder):
    """PostgreSQL's process recorder, with a tracking record per topic-partition."""

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        for tracking in kwargs.get("trackings") or ():
            self._insert_tracking(curs, tracking)
        super()._insert_events(curs, stored_events, **kwargs)


class SQLitePartitionRecorder(SQLiteProcessRecorder):
    """SQLite's process recorder, with a tracking record per topic-partition (for tests)."""

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        for tracking in kwargs.get("trackings") or ():
            self._insert_tracking(c, tracking)
        return returning


_RECORDERS = {
    "eventsourcing.postgres": PostgresPartitionRecorder,
    "eventsourcing.sqlite": SQLitePartitionRecorder,
}


class TrackedEventStore(EventStore):
    """The event store with tracking records (PostgreSQL; SQLite for tests): the same tables as
    ``EventStore`` (its events table, and the tracking table beside it)."""

    name = EventStore.name

    def __init__(self, env: Mapping[str, str]) -> None:
        recorder = _RECORDERS.get(env.get("PERSISTENCE_MODULE", ""))
        if recorder is None:
            raise ValueError("a tracked event store needs PERSISTENCE_MODULE eventsourcing.postgres "
                             f"(or eventsourcing.sqlite), not {env.get('PERSISTENCE_MODULE')!r}")
        super().__init__(env={**env, "PROCESS_RECORDER_TOPIC": get_topic(recorder)})

    def construct_recorder(self) -> ProcessRecorder:  # type: ignore[override]
        return created_concurrently(self.factory.process_recorder)

    @property
    def tracking(self) -> ProcessRecorder:
        recorder = self.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder

    def positions(self, names: Iterable[str]) -> dict[str, int]:
        """The last position recorded under each name (absent when none is)."""
        found = {}
        for name in names:
            position = self.tracking.max_tracking_id(name)
            if position is not None:
                found[name] = position
        return found

    def record_position(self, name: str, position: int) -> None:
        """Record a position alone (a relay's, after it published up to it)."""
        self.tracking.insert_tracking(Tracking(name, position))


__all__ = ["PostgresPartitionRecorder", "SQLitePartitionRecorder", "Tracking", "TrackedEventStore"]
