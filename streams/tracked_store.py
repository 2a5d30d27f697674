"""The event store of a Kafka worker: events, tracking records and parked events
(``streams.parking``) in one transaction.

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
from psycopg.sql import SQL, Identifier

from streams.parking import COLUMNS, ParkedEvent, ParkingChanges, from_row, row
from streams.parking import TABLE as PARKED
from streams.store import EventStore, created_concurrently

_INSERT_PARKED = "INSERT INTO {table} (" + COLUMNS + ") VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
_DELETE_PARKED = "DELETE FROM {table} WHERE partition = %s AND position = %s"
_SELECT_PARKED = "SELECT " + COLUMNS + " FROM {table} WHERE partition = ANY(%s) {keys} ORDER BY key, partition, position"
_SUMMARY_PARKED = ("SELECT key, partition, max(needed), count(*) FROM {table} WHERE partition = ANY(%s) "
                   "GROUP BY key, partition")


def _sqlite(statement: str) -> str:
    """A statement of the above for SQLite (one placeholder per value; lists inlined by
    ``_in``)."""
    return statement.replace("{table}", PARKED).replace("%s", "?")


def _in(statement: str, n: int) -> str:
    return statement.replace("= ANY(?)", f"IN ({', '.join(['?'] * n)})", 1)


class PostgresPartitionRecorder(PostgresProcessRecorder):
    """PostgreSQL's process recorder, with a tracking record per topic-partition and the
    parked events (``streams.parking``) in the same transaction."""

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        table = Identifier(datastore.schema, PARKED)
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {0} (partition TEXT NOT NULL, position BIGINT NOT NULL, "
            "key TEXT NOT NULL, needed BIGINT NOT NULL, event BYTEA NOT NULL, principal TEXT NOT NULL, "
            "role TEXT NOT NULL, reply_to TEXT, parked_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
            "PRIMARY KEY (partition, position))").format(table))
        self._insert_parked = SQL(_INSERT_PARKED).format(table=table)
        self._delete_parked = SQL(_DELETE_PARKED).format(table=table)
        self._select_parked = SQL(_SELECT_PARKED).format(table=table, keys=SQL(""))
        self._select_parked_keys = SQL(_SELECT_PARKED).format(table=table, keys=SQL("AND key = ANY(%s)"))
        self._summary_parked = SQL(_SUMMARY_PARKED).format(table=table)

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        for tracking in kwargs.get("trackings") or ():
            self._insert_tracking(curs, tracking)
        parking: ParkingChanges | None = kwargs.get("parking")
        if parking:
            if parking.park:
                curs.executemany(self._insert_parked, [row(e) for e in parking.park])
            if parking.unpark:
                curs.executemany(self._delete_parked, [(e.partition, e.offset) for e in parking.unpark])
        super()._insert_events(curs, stored_events, **kwargs)

    def select_parked(self, partitions: Sequence[str], keys: Sequence[str]) -> list[ParkedEvent]:
        if not partitions:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            if keys:
                curs.execute(self._select_parked_keys, (list(partitions), list(keys)))
            else:
                curs.execute(self._select_parked, (list(partitions),))
            return [from_row(_values(r)) for r in curs.fetchall()]

    def parked_keys(self, partitions: Sequence[str]) -> list[tuple[str, str, int, int]]:
        if not partitions:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._summary_parked, (list(partitions),))
            return [(str(k), str(p), int(n), int(c)) for k, p, n, c in map(_values, curs.fetchall())]


class SQLitePartitionRecorder(SQLiteProcessRecorder):
    """SQLite's process recorder, with a tracking record per topic-partition and the parked
    events (for tests)."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                f"CREATE TABLE IF NOT EXISTS {PARKED} (partition TEXT NOT NULL, position INTEGER NOT NULL, "
                "key TEXT NOT NULL, needed INTEGER NOT NULL, event BLOB NOT NULL, principal TEXT NOT NULL, "
                "role TEXT NOT NULL, reply_to TEXT, PRIMARY KEY (partition, position))"]

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        for tracking in kwargs.get("trackings") or ():
            self._insert_tracking(c, tracking)
        parking: ParkingChanges | None = kwargs.get("parking")
        if parking:
            if parking.park:
                c.executemany(_sqlite(_INSERT_PARKED), [row(e) for e in parking.park])
            if parking.unpark:
                c.executemany(_sqlite(_DELETE_PARKED), [(e.partition, e.offset) for e in parking.unpark])
        return returning

    def select_parked(self, partitions: Sequence[str], keys: Sequence[str]) -> list[ParkedEvent]:
        if not partitions:
            return []
        statement = _in(_sqlite(_SELECT_PARKED).replace("{keys}", "AND key = ANY(?)" if keys else ""),
                        len(partitions))
        if keys:
            statement = _in(statement, len(keys))
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, [*partitions, *keys])
            return [from_row(tuple(r)) for r in c.fetchall()]

    def parked_keys(self, partitions: Sequence[str]) -> list[tuple[str, str, int, int]]:
        if not partitions:
            return []
        with self.datastore.transaction(commit=False) as c:
            c.execute(_in(_sqlite(_SUMMARY_PARKED), len(partitions)), list(partitions))
            return [(str(k), str(p), int(n), int(cnt)) for k, p, n, cnt in c.fetchall()]


def _values(r: Any) -> tuple[Any, ...]:
    """A row's values in the SELECT's order (the PostgreSQL datastore's rows are dicts)."""
    return tuple(r.values()) if isinstance(r, dict) else tuple(r)


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

    def parked(self, partitions: Iterable[str], keys: Iterable[str] = ()) -> list[ParkedEvent]:
        """The events parked from ``partitions`` (of ``keys``, when given), each key's in the
        order they came (``streams.parking``)."""
        recorder = self.recorder
        assert isinstance(recorder, PostgresPartitionRecorder | SQLitePartitionRecorder)
        return recorder.select_parked(sorted(partitions), sorted(keys))

    def parked_keys(self, partitions: Iterable[str]) -> list[tuple[str, str, int, int]]:
        """Of the keys with events parked from ``partitions``: (key, partition, the highest
        reference offset they wait for, how many)."""
        recorder = self.recorder
        assert isinstance(recorder, PostgresPartitionRecorder | SQLitePartitionRecorder)
        return recorder.parked_keys(sorted(partitions))

    def record_position(self, name: str, position: int) -> None:
        """Record a position alone (a relay's, after it published up to it)."""
        self.tracking.insert_tracking(Tracking(name, position))


__all__ = ["PostgresPartitionRecorder", "SQLitePartitionRecorder", "Tracking", "TrackedEventStore"]
