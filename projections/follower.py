"""The projection follower: reads the event store's notification log in batches, writes the
rows of each batch, and only then records its position, in ClickHouse.

A batch is handed to the engine as stored (ids, streams, topics and the JSON states) and
flattened there (``writer``). Before a batch it records the range it is about to write
(``pending_from``..``pending_to``) with the position so far; the next batch's record, or the
final one, says it is done. A restart that finds a pending range re-reads exactly that range
and writes, table by table, only what is missing (each table's insert is one block: all of it
is there, or none), then moves the position on. So a crash between the inserts and the
position update neither skips nor duplicates rows, and the materialized views (daily sums)
count each event once. After the batches, the summary tables the KPIs read are brought up to
date for what changed (``summaries``).

It takes the notifications rather than the store, so ``projections`` does not depend on
``streams``: ``follower.catch_up(store.notifications)``. The states must be the store's plain
JSON (its orjson transcoder, no compression or cipher); a ``decode`` given instead (the
store's ``mapper.to_domain_event``) is used to write them again as JSON.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from projections import summaries
from projections.schema import SOURCE_TABLES, drop_all, migrate
from projections.writer import Writer

log = logging.getLogger(__name__)

Decoder = Callable[[Any], Any]
Reader = Callable[[int], Iterable[Any]]


def json_state(notification: Any) -> dict[str, Any]:
    """Decode a notification whose state is plain JSON (the store's orjson transcoder with no
    compression or cipher). As the follower's ``decode`` it means: take the state as stored."""
    return orjson.loads(notification.state)


_ENVELOPE = ("originator_id", "originator_version")


def _state_from(decode: Decoder) -> Callable[[Any], bytes]:
    """The JSON state of a notification: as stored, or written again from ``decode``'s result
    (a domain event or a dict of its fields)."""
    def encode(notification: Any) -> bytes:
        decoded = decode(notification)
        body = decoded if isinstance(decoded, dict) else vars(decoded)
        return orjson.dumps({k: v for k, v in body.items() if k not in _ENVELOPE}, default=str)
    return encode


def _raw_state(notification: Any) -> bytes:
    return notification.state


@dataclass(frozen=True)
class Position:
    """Where the follower is: every notification up to ``position`` is written; when
    ``pending_to`` is set, the batch ``pending_from``..``pending_to`` may be partly written."""

    position: int = 0
    pending_from: int = 0
    pending_to: int = 0
    seq: int = 0


@dataclass
class Progress:
    """How far a catch-up or a rebuild got: events written, and (counted by ``rebuild`` at its
    end) the rows of the tables the follower writes."""

    events: int = 0
    rows: int = 0
    batches: int = 0
    position: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class Follower:
    def __init__(self, client: Any, name: str = "projections", batch_size: int = 20_000,
                 writer: Writer | None = None, summaries: bool = True) -> None:
        self.client = client
        self.name = name
        self.summaries = summaries  # bring the KPI summaries up to date after each catch-up
        self.batch_size = batch_size
        self.writer = writer or Writer(client)
        self._seq: int | None = None

    # -- position -----------------------------------------------------------------------
    def read_position(self) -> Position:
        rows = self.client.query(
            "SELECT position, pending_from, pending_to, seq FROM projection_positions "
            "WHERE follower = {name:String} ORDER BY seq DESC LIMIT 1",
            parameters={"name": self.name}).result_rows
        found = Position(*rows[0]) if rows else Position()
        self._seq = found.seq
        return found

    def position(self) -> int:
        return self.read_position().position

    def _save(self, position: int, pending_from: int = 0, pending_to: int = 0) -> None:
        if self._seq is None:
            self.read_position()
        assert self._seq is not None
        self._seq += 1
        self.client.insert(
            "projection_positions",
            [[self.name, position, pending_from, pending_to, self._seq, datetime.now(UTC)]],
            column_names=["follower", "position", "pending_from", "pending_to", "seq", "updated_at"])

    # -- following ------------------------------------------------------------------------
    def catch_up(self, read: Reader, decode: Decoder | None = None,
                 on_batch: Callable[[Progress], None] | None = None) -> Progress:
        """Write everything after the recorded position: ``read(start)`` yields the
        notifications from id ``start`` on, in order (``EventStore.notifications``)."""
        return self.follow(read(self.position() + 1), decode, on_batch)

    def follow(self, notifications: Iterable[Any], decode: Decoder | None = None,
               on_batch: Callable[[Progress], None] | None = None) -> Progress:
        """Write ``notifications`` (in id order, starting right after the recorded position)
        in batches. Each batch is announced (the position so far and the batch's range) before
        its rows are written; the announcement of the next batch, or the final position,
        records it as done. While one batch is written the next is read."""
        started = time.perf_counter()
        state = _raw_state if decode is None or decode is json_state else _state_from(decode)
        progress = Progress()
        pos = self.read_position()
        progress.position = pos.position
        stream: Iterator[Any] = (n for n in notifications if n.id > pos.position)
        if pos.pending_to:
            stream = self._finish_pending(pos, stream, state, progress)
        announced = progress.position  # the end of the last batch handed to the writer
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="projection-writer") as pool:
            writing: Future[None] | None = None
            size = 0
            for batch in _batches(stream, self.batch_size):
                columns = _columns(batch, state)  # overlaps the write of the batch before
                if writing is not None:
                    writing.result()
                    self._advance(progress, size, announced, started, on_batch)
                writing = pool.submit(self._write_batch, announced, batch[0].id, batch[-1].id, columns)
                announced, size = batch[-1].id, len(batch)
            if writing is not None:
                writing.result()
                self._advance(progress, size, announced, started, on_batch)
                self._save(announced)
        if self.summaries:
            summaries.refresh(self.client, progress.position)
        progress.seconds = time.perf_counter() - started
        return progress

    def _write_batch(self, position: int, first: int, last: int, columns: list[list[Any]]) -> None:
        self._save(position, first, last)
        self.writer.write(self.writer.stage(columns))

    def _finish_pending(self, pos: Position, stream: Iterator[Any], state: Callable[[Any], bytes],
                        progress: Progress) -> Iterator[Any]:
        """Write what is missing of the batch a crash interrupted; returns the rest."""
        batch, rest = [], None
        for n in stream:
            if n.id > pos.pending_to:
                rest = n
                break
            batch.append(n)
        if batch and batch[0].id != pos.pending_from:
            raise RuntimeError(f"the interrupted batch starts at notification {pos.pending_from}, "
                               f"but the log given starts at {batch[0].id}")
        self.writer.stage(_columns(batch, state))
        written = self.repair(pos.pending_from, pos.pending_to)
        log.info("projections: finished the interrupted batch %d..%d (%d rows were missing)",
                 pos.pending_from, pos.pending_to, written)
        self._save(pos.pending_to)
        progress.events += len(batch)
        progress.position = pos.pending_to
        return itertools.chain([rest] if rest is not None else [], stream)

    def repair(self, first: int, last: int) -> int:
        """Insert, table by table, the staged rows of notifications ``first``..``last`` that are
        not there: a table holding all of them is left alone, one holding some (an insert split
        in blocks) has them deleted and written again."""
        written = 0
        for table in SOURCE_TABLES:
            expected = self.writer.staged_rows(table)
            present = self.client.query(
                f"SELECT count() FROM {table} WHERE notification_id BETWEEN {{a:UInt64}} AND {{b:UInt64}}",
                parameters={"a": first, "b": last}).result_rows[0][0]
            if present == expected:
                continue
            if present:
                log.warning("projections: %s holds %d of %d rows of %d..%d; rewriting them",
                            table, present, expected, first, last)
                self.client.command(
                    f"ALTER TABLE {table} DELETE WHERE notification_id BETWEEN {first} AND {last}",
                    settings={"mutations_sync": 2})
            self.writer.insert(table)
            written += expected
        return written

    @staticmethod
    def _advance(progress: Progress, events: int, last: int, started: float,
                 on_batch: Callable[[Progress], None] | None) -> None:
        progress.events += events
        progress.batches += 1
        progress.position = last
        progress.seconds = time.perf_counter() - started
        if on_batch is not None:
            on_batch(progress)


def _columns(batch: list[Any], state: Callable[[Any], bytes]) -> list[list[Any]]:
    """A batch of notifications as the stage's columns."""
    return [[n.id for n in batch], [n.originator_id for n in batch],
            [n.originator_version for n in batch], [n.topic for n in batch],
            [state(n) for n in batch]]


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def rebuild(client: Any, read: Reader, decode: Decoder | None = None, batch_size: int = 200_000,
            on_batch: Callable[[Progress], None] | None = None, helpers: Sequence[Any] = ()) -> Progress:
    """Drop every projection table and view of the client's database, create them again and
    write the whole log: the tables a replay gives. ``helpers`` (other connections to the same
    database) let the engine work on several batches' parts at once."""
    drop_all(client)
    migrate(client)
    writer = Writer(client, helpers)
    try:
        progress = Follower(client, batch_size=batch_size, writer=writer).catch_up(read, decode, on_batch)
    finally:
        writer.close()
    progress.rows = count_rows(client)
    return progress


def count_rows(client: Any) -> int:
    """The rows of the tables the follower writes (the views' tables not included)."""
    counts = " + ".join(f"(SELECT count() FROM {table})" for table in SOURCE_TABLES)
    return int(client.query(f"SELECT {counts}").result_rows[0][0])
