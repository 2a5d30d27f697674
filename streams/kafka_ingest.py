"""Ingest on the distributed profile: the API produces each posted event to Kafka and waits
for its outcome; it reads from a model that follows the store's notification log.

``KafkaIngest`` produces with ``confluent-kafka`` (``acks=all``, idempotent), each event a
message that names its principal and a reply id in headers, and waits on the outcomes topic
(every partition, from where it stood at start) for the replies, up to a set time. An event
whose outcome does not come in time is answered ``queued``: it is durably in Kafka (its
delivery was acknowledged by every in-sync replica), not yet in the store.

``DistributedRunner`` gives the API what the embedded runner gives it (submit, reads of the
model on one thread, a change signal, alert changes): its processor never decides events, it
only follows the log that the workers write, so every read route works unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from eventsourcing.persistence import IntegrityError

from domain import codes as c
from domain.events import check_identifiers, pseudonymise_event, redact_identifiers
from domain.intake import Outcome, Principal
from streams.embedded import EmbeddedRunner
from streams.processor import Processor
from streams.topics import (
    PRINCIPAL,
    REFERENCE_OFFSET,
    REPLY_TO,
    KafkaAccess,
    Topics,
    kafka_config,
    route,
)

log = logging.getLogger(__name__)


class IngestUnavailable(RuntimeError):
    """Kafka did not take the events: nothing was queued; sending them again is safe."""


class KafkaIngest:
    """Produces events and collects the outcomes the workers publish for them."""

    def __init__(self, bootstrap: KafkaAccess | str, topics: Topics, wait_s: float = 2.0,
                 delivery_timeout_s: float = 30.0) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self.wait_s, self.delivery_timeout_s = wait_s, delivery_timeout_s
        self.instance = uuid.uuid4().hex[:12]
        self._seq = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: Any = None
        self._consumer: Any = None
        self._offsets: Any = None  # a consumer of its own for the reference topic's end offset
        self._offsets_lock = threading.Lock()

    def ping(self, timeout_s: float = 3.0) -> None:
        """The broker answers (``/readyz``): its metadata within ``timeout_s``."""
        if self._producer is None:
            raise IngestUnavailable("not started")
        self._producer.list_topics(timeout=timeout_s)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        from confluent_kafka import Consumer, Producer, TopicPartition

        self._loop = loop
        self._producer = Producer(kafka_config(self.bootstrap) | {
            "acks": "all", "enable.idempotence": True,
            "linger.ms": 1, "partitioner": "murmur2_random",
            "message.timeout.ms": int(self.delivery_timeout_s * 1000)})
        self._consumer = Consumer(kafka_config(self.bootstrap) | {
            "group.id": f"replenish-api-{self.instance}",
            "enable.auto.commit": False, "fetch.wait.max.ms": 10, "fetch.min.bytes": 1})
        topic = self.topics.outcomes
        metadata = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise IngestUnavailable(f"topic {topic} is missing: start a worker or run `replenish topics`")
        start = [TopicPartition(topic, p, self._high(TopicPartition(topic, p)))  # where each stands now
                 for p in sorted(metadata.partitions)]
        self._consumer.assign(start)
        self._stop.clear()
        self._threads = [threading.Thread(target=self._poll_producer, name="ingest-producer", daemon=True),
                         threading.Thread(target=self._poll_outcomes, name="ingest-outcomes", daemon=True)]
        for t in self._threads:
            t.start()

    def _high(self, partition: Any, wait_s: float = 30.0) -> int:
        """A partition's high watermark. Right after its topic was created the partition may
        have no leader yet (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE): a retriable state,
        waited out for up to ``wait_s`` seconds."""
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + wait_s
        while True:
            try:
                _, high = self._consumer.get_watermark_offsets(partition, timeout=10)
                return int(high)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                retriable = bool(getattr(error, "retriable", lambda: False)()) or getattr(
                    error, "name", lambda: "")() in ("NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE",
                                                     "UNKNOWN_TOPIC_OR_PART")
                if not retriable or time.monotonic() > deadline:
                    raise
                log.warning("partition %s has no leader yet (%s); trying again", partition, error)
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        if self._producer is not None:
            self._producer.flush(10)
        if self._consumer is not None:
            self._consumer.close()
        if self._offsets is not None:
            self._offsets.close()

    async def send(self, messages: list[tuple[str, str | None, bytes]], principal: str) -> list[dict[str, Any] | None]:
        """Produce ``(topic, key, value)`` messages; the outcome of each (None when it did not
        come in time). Raises ``IngestUnavailable`` when Kafka did not acknowledge them all.

        Reference data go first, and are acknowledged before anything else is produced; every
        other message carries the reference topic's end offset then (``REFERENCE_OFFSET``), so
        a worker judges it only once the store holds the reference data sent before it, in the
        same request or earlier, whichever worker stores them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        replies: list[tuple[int, str, asyncio.Future[dict[str, Any]]]] = []
        try:
            reference = [(i, m) for i, m in enumerate(messages) if m[0] == self.topics.reference]
            others = [(i, m) for i, m in enumerate(messages) if m[0] != self.topics.reference]
            headers = [(PRINCIPAL, principal.encode())]
            await self._produce_all(reference, headers, replies, loop)
            if others:
                try:
                    high = await asyncio.to_thread(self._reference_high)
                except Exception as exc:  # (KafkaException: the broker did not answer in time)
                    raise IngestUnavailable(f"the reference topic's end is unknown ({exc}); "
                                            "sending the events again is safe") from exc
                # (acks=all: the end offset already counts the reference data just acknowledged)
                await self._produce_all(others, [*headers, (REFERENCE_OFFSET, str(high).encode())], replies, loop)
            by_index = {i: f for i, _, f in replies}
            pending = [f for f in by_index.values() if not f.done()]
            remaining = deadline - loop.time()
            if pending and remaining > 0:
                await asyncio.wait(pending, timeout=remaining)
            return [by_index[i].result() if by_index[i].done() and not by_index[i].cancelled() else None
                    for i in range(len(messages))]
        finally:
            for _, reply, f in replies:
                self._waiting.pop(reply, None)
                if not f.done():
                    f.cancel()

    async def _produce_all(self, messages: list[tuple[int, tuple[str, str | None, bytes]]],
                           headers: list[tuple[str, bytes]],
                           replies: list[tuple[int, str, asyncio.Future[dict[str, Any]]]],
                           loop: asyncio.AbstractEventLoop) -> None:
        """Produce and wait until Kafka acknowledged each (``IngestUnavailable`` otherwise)."""
        deliveries = []
        for i, (topic, key, value) in messages:
            reply = f"{self.instance}:{next(self._seq)}"
            outcome: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._waiting[reply] = outcome
            replies.append((i, reply, outcome))
            delivered: asyncio.Future[None] = loop.create_future()
            deliveries.append(delivered)
            self._produce(topic, key, value, [*headers, (REPLY_TO, reply.encode())],
                          self._on_delivery(loop, delivered))
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise IngestUnavailable(f"Kafka did not take {len(failed)} of {len(messages)} events "
                                    f"({failed[0]}); nothing is lost by sending them again") from failed[0]

    def _reference_high(self) -> int:
        """The reference topic's end offset now (what every API instance sent before). On a
        consumer of its own: the outcomes consumer's handle is busy polling in its thread (a
        query through it waits for that poll to give way, which it may never do)."""
        from confluent_kafka import Consumer, TopicPartition
        with self._offsets_lock:
            if self._offsets is None:
                self._offsets = Consumer(kafka_config(self.bootstrap) | {
                                          "group.id": f"replenish-api-{self.instance}-offsets",
                                          "enable.auto.commit": False})
            _, high = self._offsets.get_watermark_offsets(TopicPartition(self.topics.reference, 0), timeout=5)
            return int(high)

    def _produce(self, topic: str, key: str | None, value: bytes, headers: list[tuple[str, bytes]],
                 on_delivery: Callable[[Any, Any], None]) -> None:
        from confluent_kafka import KafkaException
        while True:
            try:
                self._producer.produce(topic, value, key.encode() if key is not None else None,
                                       headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)
            except KafkaException as exc:  # e.g. a message larger than the broker takes
                raise IngestUnavailable(f"Kafka refused an event ({exc}); nothing of it is queued") from exc

    @staticmethod
    def _on_delivery(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> Callable[[Any, Any], None]:
        def done(err: Any, _msg: Any) -> None:
            def settle() -> None:
                if future.done():
                    return
                if err is None:
                    future.set_result(None)
                else:
                    future.set_exception(IngestUnavailable(str(err)))
            loop.call_soon_threadsafe(settle)
        return done

    def _poll_producer(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _poll_outcomes(self) -> None:
        assert self._loop is not None
        while not self._stop.is_set():
            try:
                msg = self._consumer.poll(0.05)
            except Exception:
                log.exception("outcomes consumer failed")
                continue
            if msg is None or msg.error() is not None:
                continue
            reply = next((v.decode() for k, v in msg.headers() or () if k == REPLY_TO and v), None)
            if reply is not None and reply.startswith(self.instance):
                self._loop.call_soon_threadsafe(self._resolve, reply, msg.value())

    def _resolve(self, reply: str, value: bytes) -> None:
        future = self._waiting.pop(reply, None)
        if future is not None and not future.done():
            future.set_result(orjson.loads(value))


def _marked_malformed(event: dict[str, Any]) -> dict[str, Any]:
    """An event whose identifiers the worker will refuse (``domain.events.check_identifiers``):
    each bad one replaced, before it is pseudonymised or produced, by its redacted form with a
    NUL after it, so that no megabyte or case id in clear reaches Kafka and the worker still
    refuses the field as ``malformed`` (and stores only its hash)."""
    bad = check_identifiers(event)
    return redact_identifiers(event, bad, mark="\x00") if bad else event


def owns_nothing(stock_point: str) -> bool:
    return False


class DistributedRunner(EmbeddedRunner):
    """The API's runner on the distributed profile (see the module's docstring)."""

    def __init__(self, processor: Processor, ingest: KafkaIngest, follow_every_s: float = 0.1) -> None:
        super().__init__(processor)
        processor.owns = owns_nothing  # it only reads: the workers write for the stock points
        self.logs_alerts = False  # the worker that raised an alert logged it
        self.ingest = ingest
        self.follow_every_s = follow_every_s
        self._following: asyncio.Future[None] | None = None  # the catch-up under way
        self._following_since = 0.0  # when it started (loop time)

    async def start(self) -> None:
        self._changed = asyncio.Event()
        self.ingest.start(asyncio.get_running_loop())
        self._task = asyncio.create_task(self._follow(), name="follow-store")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.ingest.stop()
        self._executor.shutdown(wait=True)

    async def submit(self, events: list[Any], principal: Principal) -> list[Outcome]:
        """Produce the events (reference data to the reference topic, the others keyed by
        stock point) and answer each with its outcome, or ``queued``."""
        # Case and patient identifiers never reach Kafka in clear: pseudonymised here, with the
        # key the intake uses (which keeps a pseudonym as it is).
        key_ = self.processor.case_id_key
        events = [pseudonymise_event(_marked_malformed(e), key_) if isinstance(e, dict) else e for e in events]
        routes = self._routes(events)
        messages = [(topic, key, orjson.dumps(e)) for (topic, key), e in zip(routes, events, strict=True)]
        found = await self.ingest.send(messages, principal.name)
        if any(o is not None for o in found):
            try:
                await self._caught_up()  # a read after this answer sees what it reports
            except Exception:  # the answer stands: the events are stored
                log.exception("following the store's log failed")
        outcomes = []
        for event, o in zip(events, found, strict=True):
            if o is None:
                eid = event.get("event_id") if isinstance(event, dict) else None
                outcomes.append(Outcome(None if eid is None else str(eid), c.QUEUED))
            else:
                outcomes.append(Outcome(o["event_id"], o["status"], o["errors"], o["flags"]))
        if self.metrics is not None:
            self.metrics.observe_outcomes(outcomes)
        return outcomes

    async def submit_all_or_nothing(self, events: list[Any], principal: Principal
                                    ) -> tuple[bool, list[Outcome | None]]:
        """Checked first against this process's model (``Processor.precheck``), then produced:
        all of them, or only those that would be refused (so their refusals are stored, as
        every refusal is) and nothing else; each answered with the refusal the check found
        (the worker's, when it answered in time). The workers judge them again: what changes in
        the store between the check and their turn (a recall stored meanwhile), or what one
        event of the submission changes for another (a lot's expiry its receipt brings), is
        not undone, unlike on the embedded profile."""
        refusals = await self.read(self.processor.precheck, [(e, principal) for e in events])
        if not any(refusals):
            return True, list(await self.submit(events, principal))
        outcomes: list[Outcome | None] = [None] * len(events)
        # An id used twice in the submission for other content is refused here, not produced:
        # alone, a worker would take it.
        within = {i for i, r in enumerate(refusals) if any(e["code"] == c.EVENT_ID_REUSED for e in r)}
        for i in within:
            eid = events[i].get("event_id") if isinstance(events[i], dict) else None
            outcomes[i] = Outcome(None if eid is None else str(eid), c.REJECTED, refusals[i])
        refused = [i for i, r in enumerate(refusals) if r and i not in within]
        found = await self.submit([events[i] for i in refused], principal) if refused else []
        for i, o in zip(refused, found, strict=True):
            outcomes[i] = o if o.status == c.REJECTED else Outcome(o.event_id, c.REJECTED, refusals[i])
        return False, outcomes

    def _routes(self, events: list[Any]) -> list[tuple[str, str | None]]:
        """Topic and key of each event. Runs beside the model's thread: finding an item by its
        GTIN is one dictionary lookup, which the model's changes cannot tear."""
        catalog = self.processor.ledger.catalog

        def resolve(gtin: str) -> str | None:
            found = catalog.resolve_gtin(gtin)
            return found[0] if found else None

        return [route(e, self.ingest.topics, resolve) if isinstance(e, dict)
                else (self.ingest.topics.events, None) for e in events]

    async def change_alert(self, alert_id: str, status: str, reason: str,
                           principal: Principal) -> dict[str, Any] | None:
        """Acknowledge or resolve an alert, stored by this process (the store refuses it, and
        it is tried once more, should the alert's worker have stored on its stock point since)."""
        def change() -> dict[str, Any] | None:
            self.processor.follow()
            return self.processor.change_alert(alert_id, status, reason, principal)

        loop = asyncio.get_running_loop()
        try:
            alert = await loop.run_in_executor(self._executor, change)
        except IntegrityError:
            alert = await loop.run_in_executor(self._executor, change)
        self._notify()
        return alert

    async def _caught_up(self) -> None:
        """Until the model has followed the log from a moment after now. Requests share the
        catch-ups: under load one runs at a time and the next serves everyone who came since."""
        loop = asyncio.get_running_loop()
        asked = loop.time()
        while True:
            running = self._following
            if running is None or running.done():
                self._following_since = loop.time()
                running = self._following = asyncio.ensure_future(self._catch_up())
                await asyncio.shield(running)
                return
            started = self._following_since
            await asyncio.shield(running)  # not done yet: this waits
            if started >= asked:
                return

    async def _catch_up(self) -> None:
        n, raised = await asyncio.get_running_loop().run_in_executor(self._executor, self._apply)
        if n:
            self._notify()
        self._tell(raised)

    def _apply(self) -> tuple[int, list[dict[str, Any]]]:
        feed = self.processor.ledger.alert_feed
        before = len(feed)
        n = self.processor.follow()
        try:  # supplier notices of what was followed (procurement's ``notices`` role)
            n += self.processor.tick().stored
        except IntegrityError:  # another writer got there first: follow, then try again
            n += self.processor.follow()
        feed = self.processor.ledger.alert_feed  # the same list unless the model was rebuilt
        return n, [a for a in feed[before:] if a.get("change") == "raised"]

    async def decide_requisition(self, requisition_id: str, approve: bool, reason: str,
                                 principal: Principal) -> dict[str, Any]:
        """Approve or reject a requisition, stored by this process after following the log
        (tried once more should a worker have stored on it since)."""
        def decide() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            self.processor.follow()
            return self.processor.decide_requisition(requisition_id, approve, reason, principal)

        loop = asyncio.get_running_loop()
        try:
            req, alerts = await loop.run_in_executor(self._executor, decide)
        except IntegrityError:
            req, alerts = await loop.run_in_executor(self._executor, decide)
        self._notify()
        self._tell(alerts)
        return req

    async def _follow(self) -> None:
        while True:
            try:
                await self._caught_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following the store's log failed")
            await asyncio.sleep(self.follow_every_s)
