"""The event store: an ``eventsourcing`` application over SQLite (embedded) or PostgreSQL.

Events are stored as compact JSON (orjson) so that the stored bytes are exactly what the
hash chain of ``domain.chain`` covers. Aggregate ids are text (``sp:...``, ``lot:...``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
from eventsourcing.application import Application
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    InternalError,
    Mapper,
    Notification,
    OperationalError,
    ProgrammingError,
    Recording,
    StoredEvent,
    Tracking,
    TrackingRecorder,
    Transcoder,
)

T = TypeVar("T")


class StoreUnavailable(OperationalError):
    """The store cannot write now (its disk is full, the database is down or unreachable):
    nothing of the batch was stored. An ``OperationalError``, so what retries a store's
    failures (the Kafka worker) retries this too; the API answers it 503 ``store_unavailable``."""


class OrjsonTranscoder(Transcoder):
    """JSON with datetimes as ISO 8601 strings; ``timestamp`` is turned back into a datetime."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)

    def decode(self, data: bytes) -> Any:
        obj = orjson.loads(data)
        ts = obj.get("timestamp") if isinstance(obj, dict) else None
        if isinstance(ts, str):
            obj["timestamp"] = datetime.fromisoformat(ts)
        return obj


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    raise TypeError(f"cannot store {type(obj).__name__} in an event")


class PrecodedMapper(Mapper[str]):
    """A mapper that stores an event made by ``ChainedAggregate.append`` (or ``open``) as the
    bytes encoded when it was made and hashed (the state the transcoder would give, in the
    state's own key order), so each event is encoded once; any other event, or any event when
    the store compresses or encrypts or the event class is versioned, is encoded as usual."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        precoded = getattr(domain_event, "precoded", None)
        if (precoded is None or self.compressor is not None or self.cipher is not None
                or getattr(type(domain_event), "class_version", 1) > 1):
            return super().to_stored_event(domain_event)
        return StoredEvent(originator_id=domain_event.originator_id,
                           originator_version=domain_event.originator_version,
                           topic=precoded[0], state=precoded[1])


class EventStore(Application[str]):
    """The one store of every fact and decision."""

    name = "replenish"

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    def construct_recorder(self) -> Any:
        return created_concurrently(super().construct_recorder)

    def construct_mapper(self) -> Mapper[str]:
        made = super().construct_mapper()  # (the environment's compressor and cipher, if any)
        return PrecodedMapper(made.transcoder, made.compressor, made.cipher)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[str]]:
        """``Application.save``; domain events alone go straight to the event store, in one
        transaction, in the order given. That is all the base class does with them in this
        application (no snapshotting, no aggregate cache, no ``notify`` hook), less its check of
        each object against a runtime ``Protocol``, which costs about 10 µs an event: more than
        inserting the event. (The processor stores its batches with ``append``.)"""
        if objs and not kwargs and all(isinstance(o, CanMutateAggregate) for o in objs):
            return self.events.put(objs)
        return super().save(*objs, **kwargs)

    def append(self, events: Sequence[Any], tracking: Sequence[Tracking] = (),
               parking: Any = None) -> list[int]:
        """Store domain events in one transaction, in the order given; returns their
        notification ids (``save`` less the ``Recording`` objects it makes for each event).

        ``tracking``: positions in other logs (a Kafka topic-partition's last consumed offset)
        recorded in the same transaction, so what was consumed and what it produced are stored
        together or not at all; and ``parking`` (``streams.parking.ParkingChanges``), events
        parked and resumed; only a store with a tracking recorder keeps them
        (``streams.tracked_store.TrackedEventStore``)."""
        if (tracking or parking) and not isinstance(self.recorder, TrackingRecorder):
            raise TypeError(f"{type(self).__name__} keeps no tracking records; "
                            "use streams.tracked_store.TrackedEventStore")
        to_stored = self.mapper.to_stored_event
        stored = [to_stored(e) for e in events]
        try:
            ids = (self.recorder.insert_events(stored, trackings=list(tracking), parking=parking)
                   if tracking or parking else self.recorder.insert_events(stored))
        except StoreUnavailable:
            raise
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(f"the event store cannot write now ({exc}); nothing of this batch "
                                   "was stored") from exc
        return list(ids or ())

    def ping(self) -> int:
        """The last notification id: the store answers (``/readyz``)."""
        return int(self.recorder.max_notification_id() or 0)

    def notifications(self, start: int = 1, batch: int = 10_000) -> Iterator[Notification]:
        """Every stored event in recording order (the notification log), from ``start``."""
        recorder = self.recorder
        while True:
            page = recorder.select_notifications(start=start, limit=batch)
            yield from page
            if len(page) < batch:
                return
            start = page[-1].id + 1

    def stream(self, stream_id: str) -> list[Any]:
        """One stream's events, decoded, in version order."""
        return [self.mapper.to_domain_event(s) for s in self.recorder.select_events(stream_id)]


_CREATED_CONCURRENTLY = ("concurrently updated", "pg_type", "already exists", "__migration__")
ATTEMPTS = 10  # tries of ``created_concurrently``


def created_concurrently(make: Callable[[], T]) -> T:
    """``make()`` (a recorder, which creates its tables when the environment says so), tried
    again when another process created the same tables at the same moment: PostgreSQL's
    ``CREATE ... IF NOT EXISTS`` run by two sessions at once can fail in one of them ("tuple
    concurrently updated", a duplicate key in its catalog), and so can the library's first
    tracking record (``__migration__``), as when two workers start together."""
    for attempt in range(ATTEMPTS):
        try:
            return make()
        except (InternalError, IntegrityError, ProgrammingError) as exc:
            text = str(exc)
            if attempt == ATTEMPTS - 1 or not any(sign in text for sign in _CREATED_CONCURRENTLY):
                raise
            # A random wait: sessions that collided and waited alike collided again (seen once
            # in CI with six stores opened together: five tries, all in step).
            time.sleep(random.uniform(0.02, 0.1) * (attempt + 1))
    raise AssertionError("unreachable")


def sqlite_env(path: str) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": path,
        "SQLITE_LOCK_TIMEOUT": "30",
        "ORIGINATOR_ID_TYPE": "text",
    }


def memory_env() -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.popo", "ORIGINATOR_ID_TYPE": "text"}


def postgres_env(dsn_or_params: str | Mapping[str, Any], *, schema: str = "") -> dict[str, str]:
    """The ``eventsourcing`` environment for its PostgreSQL recorder.

    ``dsn_or_params`` is a libpq connection string (``postgresql://user:pw@host:port/db`` with
    percent-encoded parts, or ``host=... dbname=...``) or a mapping of the same keywords
    (``dbname``, ``host``, ``port``, ``user``, ``password``). Aggregate ids are text, and the
    tables (events and tracking) are created when the store opens if they are missing
    (``CREATE_TABLE``): the role needs the right to create them in the database or ``schema``
    (an existing schema; the default is ``public``, which the database owner may use).
    """
    if isinstance(dsn_or_params, str):
        from psycopg.conninfo import conninfo_to_dict

        params: dict[str, Any] = dict(conninfo_to_dict(dsn_or_params))
    else:
        params = dict(dsn_or_params)
    missing = [k for k in ("dbname", "host", "user", "password") if not params.get(k)]
    if missing:
        raise ValueError(f"PostgreSQL connection settings lack {', '.join(missing)}")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params["dbname"]),
        "POSTGRES_HOST": str(params["host"]),
        "POSTGRES_PORT": str(params.get("port") or 5432),
        "POSTGRES_USER": str(params["user"]),
        "POSTGRES_PASSWORD": str(params["password"]),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_CONNECT_TIMEOUT": str(params.get("connect_timeout") or 10),
        "CREATE_TABLE": "y",
        "ORIGINATOR_ID_TYPE": "text",
    }
