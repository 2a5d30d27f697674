"""The distributed profile's Faust app: its topics and its one agent, a translation loop that
hands batches of Kafka messages to the same ``Processor`` as the embedded runner.

Exactly-once effect: each batch's events and one tracking record per topic-partition (the last
offset consumed) are stored in one PostgreSQL transaction; on assignment the consumer seeks
to the offset after each tracking record, and a message at or below it (redelivered after a
crash) is skipped, its outcome published again. Kafka's committed offsets are only a hint.

Workers share one store and each follows its notification log before every batch (and when
idle), so what another worker stored (master data, recalls, lots, its stock points) is known
here too: a partition that changes hands needs no other rebuild than that. A worker writes
for the stock points of its partitions; writes that reach another worker's streams (a
transfer's source, a recall's flags) are kept consistent by the store itself (one version of
a stream is stored once): a batch that loses such a race fails whole, the model is rebuilt
from the store and the batch is tried again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import faust
import orjson
from eventsourcing.persistence import PersistenceError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, EventT

from domain import codes as c
from domain.events import check_identifiers, pseudonymise, pseudonymise_event
from domain.intake import Outcome, Principal
from streams.liveness import StallWatch
from streams.metrics import WorkerMetrics
from streams.outcome_log import log_alerts, log_refusals
from streams.parking import ParkedEvent, ParkingChanges
from streams.processor import BatchResult, Processor
from streams.topics import (
    PRINCIPAL,
    REASON,
    REFERENCE_OFFSET,
    REPLY_TO,
    KafkaAccess,
    Topics,
    bootstrap_of,
    kafka_config,
    partition_of,
    stock_point_key,
)
from streams.tracked_store import TrackedEventStore, Tracking

log = logging.getLogger(__name__)
T = TypeVar("T")
TopicPartition = tuple[str, int]
Headers = list[tuple[str, str | bytes | None]]


OVERDUE_CHECK_SECONDS = 30.0  # how often a worker decides again the stock points waiting on orders
RESUME_CHUNKS = 10  # transactions of parked events a worker resumes at a time (streams.parking)
METRICS_REFRESH_SECONDS = 1.0  # how often, when idle, a worker reads its model's gauges (open alerts, snapshot age)


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap: KafkaAccess | str  # (a string: plain text to those servers)
    topics: Topics
    roles: Mapping[str, str]  # principal name -> role (API keys' principals and gateways)
    events_partitions: int
    group_id: str = "replenish-worker"
    batch_max: int = 1000
    batch_within_s: float = 0.02
    session_timeout_s: float = 10.0
    idle_follow_s: float = 0.25
    stall_s: float = 30.0  # a partition with lag and nothing stored for this long is stalled
    reference_wait_s: float = 10.0  # how long events wait for the reference data sent before them
    park: bool = False  # past that wait, park a key's events until it comes (streams.parking)
    datadir: Path = field(default_factory=lambda: Path("data") / "faust")


@dataclass
class Consumed:
    """One Kafka message, as the worker needs it."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name and v is not None:
                return v.decode(errors="replace")
        return None


@dataclass
class Parsed:
    message: Consumed
    event: dict[str, Any] | None = None
    principal: Principal | None = None
    reason: str | None = None  # why it is not an event (dead letter)


def tracking_name(tp: TopicPartition) -> str:
    return f"{tp[0]}-{tp[1]}"


@dataclass
class _Waiting:
    """A key's parked events: the reference offset they wait for, how many, and the partition."""

    needed: int
    count: int
    partition: str


class OutcomeSink:
    """Publishes outcomes through librdkafka (``confluent-kafka``: a few microseconds a message,
    where Faust's aiokafka producer takes tens), without waiting for their delivery."""

    def __init__(self, bootstrap: KafkaAccess | str) -> None:
        from confluent_kafka import Producer
        self._producer = Producer(kafka_config(bootstrap) | {"acks": "all", "linger.ms": 2,
                                   "partitioner": "murmur2_random", "delivery.report.only.error": True})

    def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        try:
            self._producer.produce(topic, value, key, headers=headers)
        except BufferError:  # the local queue is full: wait a moment for deliveries, once
            self._producer.poll(0.1)
            self._producer.produce(topic, value, key, headers=headers)

    def poll(self) -> None:
        self._producer.poll(0)

    def close(self) -> None:
        self._producer.flush(10)


class PartitionWorker:
    """Turns batches of messages into processor calls, with their tracking records, and
    publishes outcomes and dead letters. Every processor call runs on one thread."""

    def __init__(self, processor: Processor, config: WorkerConfig, app: faust.App,
                 outcomes: OutcomeSink) -> None:
        self.processor = processor
        self.config = config
        self.app = app
        self.outcomes = outcomes
        self.assigned: set[TopicPartition] = set()
        self.next_offset: dict[TopicPartition, int] = {}
        self.stored_batches = 0
        self.store_failing_since: float | None = None  # monotonic time the store last began failing
        self.reference_stored = -1  # the last offset of the reference topic known stored
        self.reference_waits_expired = 0  # batches judged before their reference data were stored
        self._checked_day: Any = None  # the last day the expiry check ran (once assigned)
        self._checked_overdue = 0.0  # when the stock points waiting on orders were last decided again
        self.snapshotter: Any = None  # streams.snapshots.Snapshotter over PgSnapshots, when set
        self.start_note: str | None = None  # how the model was built, logged once assigned
        self.metrics: WorkerMetrics | None = None  # what REPLENISH_METRICS_PORT serves, when set
        self.parked: dict[str, _Waiting] = {}  # key -> what its parked events wait for (streams.parking)
        self._metrics_at = 0.0  # when the model's gauges were last read
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="processor")
        self._lock = asyncio.Lock()
        # Principal name -> role: replaced whole (``set_roles``) when the API key file changes;
        # ``reload_roles`` (when set) reads them afresh, tried once a second at most per name when
        # a message names a principal not known yet (a key added to the file, used before the
        # file watcher saw it).
        self.roles: Mapping[str, str] = config.roles
        self.reload_roles: Callable[[], Mapping[str, str]] | None = None
        self.roles_retry_s = 1.0  # per principal name: one unknown name does not hold up another
        self._roles_read_at: dict[str, float] = {}

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- assignment ---------------------------------------------------------------------
    async def resume_offsets(self, tps: set[Any]) -> dict[Any, int]:
        """The offset after each tracking record of ``tps`` (those that have one)."""
        wanted = {(tp.topic, tp.partition): tp for tp in tps}
        store = self.processor.store
        assert isinstance(store, TrackedEventStore)
        found = await self._run(store.positions, [tracking_name(tp) for tp in wanted])
        offsets = {}
        for key, tp in wanted.items():
            position = found.get(tracking_name(key))
            if position is not None:
                offsets[tp] = position + 1
                self.next_offset[key] = max(self.next_offset.get(key, 0), position + 1)
        return offsets

    async def on_assigned(self, assigned: set[TP]) -> None:
        if self.start_note:  # (logging is set up by now, not yet when the model was built)
            log.info("%s", self.start_note)
            self.start_note = None
        async with self._lock:
            self.assigned = {(tp.topic, tp.partition) for tp in assigned}
            for tp in list(self.next_offset):  # positions are reloaded from the store
                if tp not in self.assigned:
                    del self.next_offset[tp]
            owned = frozenset(p for t, p in self.assigned if t == self.config.topics.events)
            n = self.config.events_partitions

            def owns(sp_id: str) -> bool:
                return partition_of(stock_point_key(sp_id), n) in owned

            self.processor.owns = owns
            if self.config.park:
                await self._load_parked()
            applied, marked = await self._run(self._gained)
            log.info("assigned %s; applied %d events stored elsewhere; %d stock points to check "
                     "against open recalls", sorted(self.assigned), applied, marked)

    def _gained(self) -> tuple[int, int]:
        """On the processor thread: catch up with the log, then check the stock points now
        owned against the open recalls (a previous owner may have stopped before it did)."""
        applied = self.processor.follow()
        return applied, self.processor.recheck_recalls()

    async def on_revoked(self, revoked: set[TP]) -> None:
        async with self._lock:  # after the batch in hand (Faust waits for it too)
            for tp in revoked:
                key = (tp.topic, tp.partition)
                self.assigned.discard(key)
                self.next_offset.pop(key, None)
                name = tracking_name(key)
                for k in [k for k, w in self.parked.items() if w.partition == name]:
                    del self.parked[k]
            self._note_parked()

    # -- batches ------------------------------------------------------------------------
    async def handle(self, events: Sequence[EventT]) -> None:
        """Store one batch, trying again until it is stored: nothing is skipped. (Faust waits
        for the agent's batch before it gives a partition up, and should a batch still be
        stored after its partition moved, the store's versions and tracking records refuse
        what the new owner stored already.)"""
        messages = [Consumed((e.message.topic, e.message.partition), e.message.offset,
                             e.message.key, e.message.value, _header_list(e.message.headers))
                    for e in events]
        if self.parked:  # (keys resumed now wait for their new events' reference data as others do)
            async with self._lock:
                await self._resume_parked()
        await self.wait_for_reference(messages)
        async with self._lock:
            await self._resume_parked()
            await self._store_batch(messages)

    async def wait_for_reference(self, messages: Sequence[Consumed]) -> bool:
        """Until the store holds the reference topic up to the offset each message names
        (``REFERENCE_OFFSET``: the reference data sent before it), for at most
        ``reference_wait_s``; True when it does. The lock is not held meanwhile, so the
        reference data can be stored by this worker's other agent as well as by another
        worker. A message without the header (a gateway's that does not send it) waits for
        nothing. Past the wait the batch is judged as it is, and the log says so."""
        needed = max((_offset(m.header(REFERENCE_OFFSET)) for m in messages
                      if not self.parked or self._wait_key(m) not in self.parked), default=0)
        if needed - 1 <= self.reference_stored:
            return True
        deadline = time.monotonic() + self.config.reference_wait_s
        while True:
            await self._refresh_reference_stored()
            if needed - 1 <= self.reference_stored:
                return True
            if time.monotonic() >= deadline:
                self.reference_waits_expired += 1
                if self.metrics is not None:
                    self.metrics.reference_waits_expired.inc()
                log.warning("a batch of %d events waited %.0f s for the reference data up to offset %d "
                            "(stored up to %d); %s", len(messages), self.config.reference_wait_s, needed - 1,
                            self.reference_stored,
                            "the events still waiting are parked by key" if self.config.park else
                            "judging it now: an event may be refused for a reference not yet stored")
                return False
            await asyncio.sleep(0.05)

    async def _refresh_reference_stored(self) -> None:
        """What the store holds of the reference topic (any worker may have stored it)."""
        name = tracking_name((self.config.topics.reference, 0))
        store = self.processor.store
        assert isinstance(store, TrackedEventStore)
        found = await self._run(store.positions, [name])
        self.reference_stored = max(self.reference_stored, found.get(name, -1))

    # -- parking (streams.parking) ------------------------------------------------------
    def _wait_key(self, m: Consumed) -> str:
        """Whose events wait together: the message's Kafka key (a stock point's
        ``sku@location``), a case's replaced by its pseudonym (its Kafka key is an unkeyed
        hash of the case id, not to be stored)."""
        if not m.key:  # (no key: the partition's keyless messages wait together)
            return f"partition:{tracking_name(m.tp)}"
        key = m.key.decode(errors="replace")
        return pseudonymise(key, self.processor.case_id_key) if key.startswith("case:") else key

    def _held_events_partitions(self) -> list[str]:
        """The tracking names of the events topic's partitions this worker holds (where its
        parked events come from)."""
        return sorted(tracking_name(tp) for tp in self.assigned if tp[0] == self.config.topics.events)

    def _note_parked(self) -> None:
        if self.metrics is not None:
            self.metrics.parked.set(sum(w.count for w in self.parked.values()))

    async def _load_parked(self) -> None:
        """What is parked from the partitions now held (a previous owner's too), read again
        until the store answers: a key's later events must not overtake its parked ones."""
        names = self._held_events_partitions()
        store = self.processor.store
        assert isinstance(store, TrackedEventStore)
        delay = 0.05
        while True:
            try:
                found = await self._run(store.parked_keys, names)
                break
            except PersistenceError:
                if self.store_failing_since is None:
                    self.store_failing_since = time.monotonic()
                log.exception("reading the parked events failed; retrying in %.2f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.parked = {key: _Waiting(needed, n, partition) for key, partition, needed, n in found}
        self._note_parked()
        if self.parked:
            log.warning("%d events of %d keys are parked, waiting for reference data",
                        sum(w.count for w in self.parked.values()), len(self.parked))

    def _to_park(self, parsed: list[Parsed]) -> tuple[list[Parsed], list[ParkedEvent]]:
        """Split a batch into what is decided now and what is parked: an event of the events
        topic whose reference data (``REFERENCE_OFFSET``) is not stored yet, or whose key has
        events parked already (a key's events stay in order). Only with parking configured;
        a message that is not an event (dead letter) or whose identifiers are refused anyway
        is never parked."""
        if not self.config.park:
            return parsed, []
        now_: list[Parsed] = []
        parked: list[ParkedEvent] = []
        waiting = {k: w.needed for k, w in self.parked.items()}
        for p in parsed:
            m = p.message
            key = self._wait_key(m)
            needed = _offset(m.header(REFERENCE_OFFSET))
            if (p.reason is None and p.principal is not None and m.tp[0] == self.config.topics.events
                    and isinstance(p.event, dict) and not check_identifiers(p.event)
                    and (key in waiting or needed - 1 > self.reference_stored)):
                waiting[key] = max(waiting.get(key, 0), needed)
                event = pseudonymise_event(p.event, self.processor.case_id_key)
                parked.append(ParkedEvent(tracking_name(m.tp), m.offset, key, waiting[key], orjson.dumps(event),
                                          p.principal.name, p.principal.role, m.header(REPLY_TO)))
            else:
                now_.append(p)
        return now_, parked

    async def _resume_parked(self) -> None:
        """Resume what is ready (``_release_ready``), outside the batch's own retries: a
        failure here is logged and tried again with the next batch or when idle (meanwhile the
        keys stay parked, so nothing newer of them overtakes)."""
        if not self.config.park or not self.parked:
            return
        try:
            await self._refresh_reference_stored()  # (another worker may have stored it)
            await self._release_ready()
        except Exception:
            log.exception("resuming parked events failed; trying again with the next batch or when idle")

    async def _release_ready(self) -> int:
        """Decide the parked events of every key whose reference data is now stored (of the
        partitions held), in the order they came and before anything newer of the key,
        deleting them from the parked table in the same transaction; returns how many. Keys
        are resumed a few at a time (about ``batch_max`` events a transaction, at most ten
        transactions a call: a long backlog resumes over several calls without holding the
        worker up). A key whose rows are gone was resumed by a previous owner."""
        held = self._held_events_partitions()
        ready = sorted(k for k, w in self.parked.items()
                       if w.partition in held and w.needed - 1 <= self.reference_stored)
        if not ready:
            return 0
        store = self.processor.store
        assert isinstance(store, TrackedEventStore)
        limit = max(self.config.batch_max, 1)
        chunks: list[list[str]] = [[]]
        size = 0
        for k in ready:
            if chunks[-1] and size + self.parked[k].count > limit:
                chunks.append([])
                size = 0
            chunks[-1].append(k)
            size += self.parked[k].count
        done = 0
        for keys in chunks[:RESUME_CHUNKS]:
            rows = await self._run(store.parked, held, keys)
            if rows:
                done += await self._resume_rows(rows)
            for k in keys:
                self.parked.pop(k, None)
        self._note_parked()
        log.info("resumed %d parked events: their reference data is stored", done)
        return done

    async def _resume_rows(self, rows: list[ParkedEvent]) -> int:
        """Decide ``rows`` (whole keys) in one transaction; should the processor fail on
        them, one at a time, an event it fails on going to the dead-letter topic, each key's
        ``reference_wait`` resolved with its last event."""
        items = [self._resumed(r) for r in rows]
        counts = dict(Tally(r.key for r in rows))
        try:
            result = await self._run(self._resume, items, rows, counts)
            self._resumed_outcomes(items, result.outcomes)
            return len(items)
        except PersistenceError:
            raise
        except Exception:
            log.exception("the processor failed on %d resumed events; deciding them one at a time", len(items))
        last = {r.key: i for i, r in enumerate(rows)}
        for i, (item, r) in enumerate(zip(items, rows, strict=True)):
            resolve = {r.key: counts[r.key]} if last[r.key] == i else {}
            try:
                result = await self._run(self._resume, [item], [r], resolve)
                self._resumed_outcomes([item], result.outcomes)
            except PersistenceError:
                raise
            except Exception as exc:
                item.reason = f"the processor failed on it: {type(exc).__name__}: {exc}"
                await (await self._send_dead_letter(item))
                if self.metrics is not None:
                    self.metrics.dead_letters.inc()
                await self._run(self._resume, [], [r], resolve)
        return len(items)

    def _resumed(self, r: ParkedEvent) -> Parsed:
        topic, _, partition = r.partition.rpartition("-")
        headers = [(PRINCIPAL, r.principal.encode())] + ([(REPLY_TO, r.reply_to.encode())] if r.reply_to else [])
        m = Consumed((topic, int(partition)), r.offset, r.key.encode(), r.event, headers)
        return Parsed(m, orjson.loads(r.event), Principal(r.principal, r.role))

    def _resumed_outcomes(self, items: list[Parsed], outcomes: list[Outcome]) -> None:
        if self.metrics is not None:
            self.metrics.observe_outcomes(outcomes)
        self._publish_outcomes(items, outcomes, [])

    def _resume(self, items: list[Parsed], rows: list[ParkedEvent], counts: dict[str, int]) -> BatchResult:
        """On the processor thread: decide resumed events and delete their rows, in one
        transaction."""
        self.processor.follow()
        return self.processor.process([(p.event, p.principal) for p in items], resumed=counts,
                                      parking=ParkingChanges(unpark=rows))

    async def _store_batch(self, messages: list[Consumed]) -> None:
        """The store failing (down, or a conflict with another worker's write) is waited out,
        however long it takes. The processor failing on the batch itself twice, the batch is
        taken one message at a time, and a message it fails on goes to the dead-letter topic
        with the error, rather than stopping its partition for good."""
        delay, failures, poison = 0.05, 0, None
        while True:
            try:
                await self._handle(messages, poison)
                self.store_failing_since = None
                return
            except PersistenceError:
                if self.store_failing_since is None:
                    self.store_failing_since = time.monotonic()
                log.exception("batch of %d messages not stored; retrying in %.2f s", len(messages), delay,
                              extra=_carried(messages[0]))
            except Exception as exc:
                failures += 1
                log.exception("the processor failed on a batch of %d messages", len(messages),
                              extra=_carried(messages[0], event_id=_event_id(messages[0].value)
                                             if len(messages) == 1 else None))
                if failures >= 2 and len(messages) > 1:
                    for m in messages:
                        await self._store_batch([m])
                    return
                if failures >= 2:
                    poison = f"the processor failed on it: {type(exc).__name__}: {exc}"
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            # What is stored is what counts: reload the positions before trying again, and
            # what is parked (a batch may have been stored though its answer was lost, or
            # another worker may have parked events of these partitions meanwhile).
            await self.resume_offsets({TP(t, p) for t, p in {m.tp for m in messages}})
            if self.config.park:
                await self._load_parked()

    async def _handle(self, messages: list[Consumed], poison: str | None = None) -> None:
        unknown = {m.tp for m in messages if m.tp not in self.next_offset}
        if unknown:
            await self.resume_offsets({TP(t, p) for t, p in unknown})
            for tp in unknown:
                self.next_offset.setdefault(tp, 0)
        fresh: list[Consumed] = []
        again: list[Consumed] = []
        for m in messages:
            (fresh if m.offset >= self.next_offset[m.tp] else again).append(m)
        parsed = [self._parse(m) for m in fresh]
        for p in parsed:
            p.reason = p.reason or poison
        parsed, to_park = self._to_park(parsed)  # (parked in the transaction that tracks their offsets)
        dead = [p for p in parsed if p.reason is not None]
        if dead:  # durably on the dead-letter topic before the offsets move past them
            await asyncio.gather(*[await self._send_dead_letter(p) for p in dead])
            if self.metrics is not None:
                self.metrics.dead_letters.inc(len(dead))
        last: dict[TopicPartition, int] = {}
        for m in fresh:
            last[m.tp] = max(last.get(m.tp, -1), m.offset)
        tracking = [Tracking(tracking_name(tp), offset) for tp, offset in sorted(last.items())]
        items = [p for p in parsed if p.reason is None]
        waiting: dict[str, tuple[int, int, int]] = {}
        for e in to_park:
            if e.key not in self.parked:
                n = waiting.get(e.key, (0, 0, 0))[0]
                waiting[e.key] = (n + 1, e.needed - 1, self.reference_stored)
        started = time.perf_counter()
        result, replies = await self._run(self._store, items, tracking, again, waiting, to_park)
        if self.metrics is not None:
            if tracking:
                self.metrics.observe_batch(len(items), time.perf_counter() - started)
            self.metrics.observe_outcomes(result.outcomes)
            self.metrics.stored_position.set(self.processor.position)
        for tp, offset in last.items():
            self.next_offset[tp] = offset + 1
            if tp[0] == self.config.topics.reference:
                self.reference_stored = max(self.reference_stored, offset)
        for e in to_park:
            w = self.parked.get(e.key)
            if w is None:
                self.parked[e.key] = _Waiting(e.needed, 1, e.partition)
            else:
                w.needed, w.count = max(w.needed, e.needed), w.count + 1
        if to_park:
            self._note_parked()
            for key in sorted({e.key for e in to_park}):
                log.warning("parked %d events of %s until their reference data is stored",
                            sum(1 for e in to_park if e.key == key), key,
                            extra={"stock_point": key, "partition": next(e.partition for e in to_park if e.key == key)})
        self.stored_batches += 1
        self._publish_outcomes(items, result.outcomes, replies)
        log_refusals(log, (p.event for p in items), result.outcomes)
        log_alerts(log, result.alerts)

    def _store(self, items: list[Parsed], tracking: list[Tracking], again: list[Consumed],
               waiting: dict[str, tuple[int, int, int]] | None = None, parked: list[ParkedEvent] | None = None,
               ) -> tuple[BatchResult, list[tuple[Consumed, dict[str, Any]]]]:
        """On the processor thread: follow the log, then decide and store the batch, with the
        events it parks (and raise ``reference_wait`` for their keys)."""
        processor = self.processor
        processor.follow()
        batch = [(p.event, p.principal) for p in items if p.principal is not None]
        result = (processor.process(batch, tracking=tracking, waiting=waiting, parking=ParkingChanges(park=parked or []))
                  if tracking else BatchResult([], [], 0))
        replies = []
        for m in again:  # redelivered: its outcome is in the store already
            eid = _event_id(m.value)
            known = processor.event_outcome(eid) if eid is not None else None
            if known is not None:
                replies.append((m, {k: v for k, v in known.items() if k != "recorded_by"}))
        return result, replies

    def _parse(self, m: Consumed) -> Parsed:
        if not m.value:
            return Parsed(m, reason="an empty message is not an event")
        try:
            event = orjson.loads(m.value)
        except orjson.JSONDecodeError as exc:
            return Parsed(m, reason=f"not JSON: {exc}")
        if not isinstance(event, dict):
            return Parsed(m, reason=f"not an event: a JSON {type(event).__name__}; send one JSON "
                                    "object per message")
        name = m.header(PRINCIPAL)
        if not name:
            return Parsed(m, reason=f"no '{PRINCIPAL}' header: a gateway names its principal in it")
        role = self.roles.get(name)
        if role is None and self.reload_roles is not None \
                and time.monotonic() - self._roles_read_at.get(name, -float("inf")) >= self.roles_retry_s:
            if len(self._roles_read_at) > 1000:  # (names that never came: forgotten now and then)
                self._roles_read_at.clear()
            self._roles_read_at[name] = time.monotonic()
            try:
                self.set_roles(self.reload_roles())
            except Exception as exc:  # (its message never holds a key)
                log.warning("the principals were not read again: %s; those in force stay", exc)
            role = self.roles.get(name)
        if role is None:
            return Parsed(m, reason=f"unknown principal {name!r}: name it in REPLENISH_GATEWAYS "
                                    "(or as an API key's principal)")
        return Parsed(m, event, Principal(name, role))

    def set_roles(self, roles: Mapping[str, str]) -> None:
        """The principals' roles from now on (the API key file re-read)."""
        self.roles = dict(roles)

    # -- output -------------------------------------------------------------------------
    async def _send_dead_letter(self, p: Parsed) -> Awaitable[Any]:
        m = p.message
        assert p.reason is not None
        headers = [*m.headers, (REASON, p.reason.encode()), ("source_topic", m.tp[0].encode()),
                   ("source_partition", str(m.tp[1]).encode()), ("source_offset", str(m.offset).encode())]
        producer = await self.app.maybe_start_producer()
        log.warning("dead letter %s@%d: %s", tracking_name(m.tp), m.offset, p.reason,
                    extra=_carried(m, event_id=_event_id(m.value)))
        return await producer.send(self.config.topics.dead_letter, m.key, m.value, None, None, headers)

    def _publish_outcomes(self, items: list[Parsed], outcomes: list[Outcome],
                          replies: list[tuple[Consumed, dict[str, Any]]]) -> None:
        """Each outcome, after its store transaction committed. Not awaited: a lost outcome
        only turns an answer into ``queued``."""
        topic = self.config.topics.outcomes
        pairs = [(p.message, o.as_dict()) for p, o in zip(items, outcomes, strict=True)] + replies
        for m, outcome in pairs:
            reply = m.header(REPLY_TO)
            body = dict(outcome, topic=m.tp[0], partition=m.tp[1], offset=m.offset, reply_to=reply)
            key = reply if reply is not None else str(outcome.get("event_id"))
            headers: Headers = [(REPLY_TO, reply.encode())] if reply is not None else []
            try:
                self.outcomes.send(topic, key.encode(), orjson.dumps(body), headers)
            except Exception:
                log.exception("outcome of %s not published", outcome.get("event_id"),
                              extra=_carried(m, event_id=outcome.get("event_id")))
        self.outcomes.poll()

    async def housekeeping(self) -> None:
        """When idle: follow the log; store the flags of uses of lots whose recall became known
        meanwhile (``Processor.follow``); once a day, the expiry check of the stock points of
        this worker's partitions (``Processor.daily_check``, as the embedded runner does)."""
        if self._lock.locked():
            return
        async with self._lock:
            try:
                await self._resume_parked()
                alerts = await self._run(self._follow_and_flag)
            except Exception:
                log.exception("following the store's log failed")
                return
            if alerts:
                log.info("flagged %d uses of recalled lots stored before their recall was known", alerts)

    def _follow_and_flag(self) -> int:
        processor = self.processor
        processor.follow()
        alerts = len(processor.process([]).alerts) if processor.rechecks_pending else 0
        today = processor.clock().date()
        if self.assigned and today != self._checked_day:
            processor.daily_check()
            self._checked_day = today
        if self.assigned and time.monotonic() - self._checked_overdue >= OVERDUE_CHECK_SECONDS:
            processor.check_overdue()
            self._checked_overdue = time.monotonic()
        snapshotter = self.snapshotter
        if snapshotter is not None and snapshotter.due(processor.position):
            try:
                snapshotter.take(processor)
            except Exception:
                log.exception("writing a snapshot failed; the next turn tries again")
        if self.metrics is not None and time.monotonic() - self._metrics_at >= METRICS_REFRESH_SECONDS:
            self.metrics.refresh_model(processor, snapshotter)
            self._metrics_at = time.monotonic()
        return alerts

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.outcomes.close()


def _header_list(headers: Any) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def _carried(m: Consumed, event_id: Any = None) -> dict[str, Any]:
    """What a log record about message ``m`` carries (``infra.logs``: the JSON logs' fields):
    its partition, offset, and event id when known."""
    carried: dict[str, Any] = {"partition": tracking_name(m.tp), "offset": m.offset}
    if event_id is not None:
        carried["event_id"] = event_id
    return carried


def _offset(text: str | None) -> int:
    return int(text) if text is not None and text.isdigit() else 0


def _event_id(value: bytes | None) -> str | None:
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    eid = event.get("event_id") if isinstance(event, dict) else None
    return str(eid) if isinstance(eid, str | int) and not isinstance(eid, bool) else None


# -- liveness ---------------------------------------------------------------------------
STALL_EXIT_CODE = 75  # EX_TEMPFAIL: a supervisor (systemd, Kubernetes) starts the worker again


class StallWatchdog:
    """A thread that checks, every ``every_s``, that each partition the worker holds stores
    what waits on it (``streams.liveness.StallWatch``, with the partitions' high watermarks
    read by a consumer of its own, outside Faust). On a stall it logs the partitions, their
    lag and every thread's stack, counts it, and asks the consumer to leave and rejoin the
    group (a fresh rebalance and recovery); stalled again within ``stall_s`` of that, it exits
    with ``STALL_EXIT_CODE`` for its supervisor to start it again. A store that is down is
    not a stall (the batch waits it out, and says so).

    The thread is outside the event loop on purpose: a stall may be a loop or a processor
    thread that never returns."""

    def __init__(self, worker: PartitionWorker, stall_s: float, every_s: float = 1.0, *,
                 watermarks: Callable[[TopicPartition], tuple[int, int]] | None = None,
                 rejoin: Callable[[], None] | None = None,
                 exit: Callable[[int], None] = os._exit,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.worker = worker
        self.watch = StallWatch(stall_s, clock)
        self.every_s = every_s
        self.stalls = 0
        self.rejoins = 0
        self._clock = clock
        self._exit = exit
        self._rejoin = rejoin or (lambda: request_rejoin(worker.app))
        self._rejoined_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-watchdog", daemon=True)
        self._consumer: Any = None
        self._watermarks = watermarks or self._kafka_watermarks

    def _kafka_watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        from confluent_kafka import Consumer
        from confluent_kafka import TopicPartition as KafkaTP
        if self._consumer is None:
            self._consumer = Consumer(kafka_config(self.worker.config.bootstrap) | {
                                       "group.id": f"{self.worker.config.group_id}-watchdog",
                                       "enable.auto.commit": False})
        low, high = self._consumer.get_watermark_offsets(KafkaTP(tp[0], tp[1]), timeout=5, cached=False)
        return int(low), int(high)

    def start(self) -> StallWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self._consumer is not None:
            self._consumer.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.check()
            except Exception:
                log.exception("the stall check failed; trying again")

    def check(self) -> list[TopicPartition]:
        """One round: observe every assigned partition, act on the stalled ones."""
        worker = self.worker
        assigned = set(worker.assigned)
        positions = dict(worker.next_offset)
        self.watch.keep_only(assigned)
        seen = {}
        for tp in sorted(assigned):
            low, high = self._watermarks(tp)
            self.watch.observe(tp, positions.get(tp, low), high)
            seen[tp] = (positions.get(tp, low), self.watch.lag(tp))
        if worker.metrics is not None:
            worker.metrics.observe_partitions(seen)
        stalled: list[TopicPartition] = self.watch.stalled()  # type: ignore[assignment]
        now = self._clock()
        if not stalled:
            if self._rejoined_at is not None and now - self._rejoined_at > 2 * self.watch.stall_s:
                self._rejoined_at = None  # healthy again: a later stall gets a rejoin first
            return stalled
        if worker.store_failing_since is not None:
            log.warning("partitions %s wait while the store fails (since %.0f s); not a stall",
                        [tracking_name(tp) for tp in stalled], now - worker.store_failing_since)
            self.watch.restart()
            return stalled
        self.stalls += 1
        if worker.metrics is not None:
            worker.metrics.stalls.inc()
        lags = {tracking_name(tp): self.watch.lag(tp) for tp in stalled}
        log.error("STALL %d: partitions with lag and nothing stored for %.0f s: %s; every thread's "
                  "stack follows", self.stalls, self.watch.stall_s, lags)
        _dump_stacks()
        if self._rejoined_at is None:
            self.rejoins += 1
            if worker.metrics is not None:
                worker.metrics.rejoins.inc()
            self._rejoined_at = now
            log.error("STALL %d: leaving and rejoining the consumer group (rejoin %d)", self.stalls, self.rejoins)
            self._rejoin()
            self.watch.restart()
        else:
            log.critical("STALL %d: still stalled after rejoining; exiting with code %d for the "
                         "supervisor to start the worker again", self.stalls, STALL_EXIT_CODE)
            for handler in logging.getLogger().handlers:
                handler.flush()
            self._exit(STALL_EXIT_CODE)
        return stalled


def request_rejoin(app: faust.App) -> None:
    """Ask the group coordinator of ``app``'s consumer to rejoin (a new rebalance: every member's
    partitions are revoked and assigned again, and Faust's recovery runs afresh). The aiokafka
    consumer lives on Faust's consumer thread, so the request is made on that thread's loop."""
    thread = app.consumer._thread  # type: ignore[attr-defined]
    coordinator = thread._ensure_consumer()._coordinator
    thread.thread_loop.call_soon_threadsafe(coordinator.request_rejoin)


def _dump_stacks() -> None:
    """Every thread's stack, through the log (Faust's workers replace ``sys.stderr``)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame))
        log.error("Thread 0x%x (%s):\n%s", ident, names.get(ident, "?"), stack)


# -- the Faust app ----------------------------------------------------------------------
class _TrackedConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, resuming from the store's tracking records: after each
    assignment Faust seeks to the committed offsets; this seeks on to the tracked ones.

    The aiokafka consumer belongs to Faust's consumer thread and its event loop: both seeks
    run there, in one call, and only for partitions still assigned when it runs (a seek from
    this thread would set that loop's futures from outside it, and a partition revoked in the
    meantime would raise and leave Faust's recovery without resuming the flow)."""

    async def seek_to_committed(self) -> Mapping[Any, int]:
        worker = getattr(self.app, "partition_worker", None)
        if worker is None:
            return await super().seek_to_committed()
        tracked = await worker.resume_offsets(set(self.assignment()))
        thread = self._thread
        committed: dict[Any, int] = await thread.call_thread(_seek_committed_then_tracked, thread, tracked)
        moved = {tp: o for tp, o in tracked.items() if committed.get(tp) == o}
        if moved:
            log.info("resuming from tracking records: %s",
                     {f"{tp.topic}-{tp.partition}": o for tp, o in sorted(moved.items())})
        return committed


async def _seek_committed_then_tracked(thread: Any, tracked: Mapping[Any, int]) -> dict[Any, int]:
    """On the consumer thread: aiokafka's seek to the committed offsets, then to the tracked
    ones of the partitions still assigned."""
    consumer = thread._ensure_consumer()
    if not consumer.assignment():  # revoked meanwhile (aiokafka asserts on an empty one)
        return {}
    committed = dict(await consumer.seek_to_committed())
    assigned = consumer.assignment()
    for tp, offset in tracked.items():
        if tp in assigned:
            consumer.seek(tp, offset)
            committed[tp] = offset
    return committed


class _TrackedTransport(faust_aiokafka.Transport):
    Consumer = _TrackedConsumer


class WorkerApp(faust.App):
    partition_worker: PartitionWorker | None = None
    watchdog: StallWatchdog | None = None

    def _new_transport(self) -> Any:
        return _TrackedTransport(self.conf.broker_consumer, self)


def create_worker_app(processor: Processor, config: WorkerConfig) -> WorkerApp:
    """The worker's Faust app: one agent over the events and reference topics, taking
    batches of up to ``batch_max`` messages (or what came within ``batch_within_s``)."""
    session = max(config.session_timeout_s, 6.0)
    app = WorkerApp(
        config.group_id,
        broker=[f"kafka://{host.strip()}" for host in bootstrap_of(config.bootstrap).split(",") if host.strip()],
        broker_credentials=config.bootstrap.faust_credentials() if isinstance(config.bootstrap, KafkaAccess) else None,
        autodiscover=False,
        web_enabled=False,
        topic_allow_declare=False,  # topics are made by ``streams.topics.ensure_topics``
        topic_disable_leader=True,
        datadir=str(config.datadir),
        broker_session_timeout=session,
        broker_heartbeat_interval=max(session / 6, 0.5),
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=max(config.batch_max, 500),  # so a batch can fill in one fetch
        producer_acks=-1,
        stream_wait_empty=True,
    )
    worker = PartitionWorker(processor, config, app, OutcomeSink(config.bootstrap))
    app.partition_worker = worker
    app.watchdog = StallWatchdog(worker, config.stall_s)
    # Two agents, so that events waiting for reference data (``wait_for_reference``) never
    # hold up the reference data they wait for.
    reference = app.topic(config.topics.reference, key_serializer="raw", value_serializer="raw")
    events = app.topic(config.topics.events, key_serializer="raw", value_serializer="raw")

    @app.agent(reference, name="replenish.reference")
    async def store_reference(stream: Any) -> None:
        async for batch in stream.take_events(config.batch_max, within=config.batch_within_s):
            await worker.handle(batch)

    @app.agent(events, name="replenish.ingest")
    async def ingest(stream: Any) -> None:
        async for batch in stream.take_events(config.batch_max, within=config.batch_within_s):
            await worker.handle(batch)

    @app.task
    async def watch() -> None:  # once the worker runs
        assert app.watchdog is not None
        app.watchdog.start()

    @app.timer(config.idle_follow_s, name="replenish.follow")
    async def follow() -> None:
        await worker.housekeeping()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        await worker.on_assigned(assigned)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await worker.on_revoked(revoked)

    return app


__all__ = ["STALL_EXIT_CODE", "PartitionWorker", "StallWatchdog", "WorkerApp", "WorkerConfig", "c",
           "create_worker_app", "request_rejoin"]
