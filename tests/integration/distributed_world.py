"""Support for the distributed profile's integration tests: one deployment per test (its own
PostgreSQL database and topic prefix on the real broker), workers and the API as real
``replenish`` subprocesses, a gateway producing with ``confluent-kafka``, and readers of the
topics and of the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from domain.aggregates import StockPoint
from streams.processor import Processor
from streams.store import EventStore, postgres_env
from streams.topics import PRINCIPAL, Topics, route
from streams.tracked_store import TrackedEventStore

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "replenish"
if not BIN.exists():
    BIN = ROOT / ".venv" / "bin" / "replenish"

CASE_ID_KEY = "it-case-id-key-not-a-real-secret"
KEYS = {"scanner": "it-scanner-key-1", "buyer": "it-buyer-key-2", "auditor": "it-auditor-key-3",
        "admin": "it-admin-key-4"}
GATEWAYS = {"gw-ward": "scanner", "gw-erp": "admin"}
SITE = "H1"
SKU = "GLV"
LOCATIONS = [f"W{i}" for i in range(1, 7)]
LONG_AGO = "2025-01-01T00:00:00+00:00"
T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def iso(t: datetime) -> str:
    return t.isoformat()


def master_data() -> list[dict[str, Any]]:
    item = {"event_id": "item-glv", "type": "item_registered", "occurred_at": LONG_AGO, "sku": SKU,
            "base_unit": "each", "lead_time_days": 2, "criticality": "high"}
    return [item, *[{"event_id": f"loc-{loc}", "type": "location_registered", "occurred_at": LONG_AGO,
                     "location": loc, "site": SITE} for loc in LOCATIONS]]


def stock(event_id: str, type_: str, location: str, quantity: float, lot: str = "L1",
          at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": type_, "site": SITE, "location": location, "sku": SKU,
            "lot": lot, "quantity": quantity,
            "occurred_at": iso(at or datetime.now(UTC) - timedelta(minutes=1)), **extra}


class Process:
    """One ``replenish`` subprocess with its log."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        log = log_path.open("wb")
        self.proc = subprocess.Popen([str(BIN), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=log_path.parent, start_new_session=True)
        log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye to the group, no flush, nothing."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


class Worker(Process):
    def wait_assigned(self, timeout: float = 60, partitions: int | None = None) -> None:
        """Until the worker has an assignment (with ``partitions`` of the events topic)."""
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"the worker exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            lines = [ln for ln in self.log().splitlines() if "] assigned [" in ln]
            return bool(lines) and (partitions is None or self.events_partitions(lines[-1]) == partitions)
        wait_for(ready, timeout, f"{self.log_path.name} to be assigned partitions")

    @staticmethod
    def events_partitions(line: str) -> int:
        return line.count("replenish.events.v1'")


class Api(Process):
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        super().__init__(["serve", "--host", "127.0.0.1", "--port", str(self.port)], env, log_path)

    def wait_ready(self, timeout: float = 60) -> Api:
        def up() -> bool:
            if not self.alive():
                raise AssertionError(f"the API exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
        wait_for(up, timeout, "the API to answer /healthz", every=0.1)
        return self

    def client(self, role: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {KEYS[role]}"}, timeout=30)


class Deployment:
    """A distributed deployment of its own on the shared servers."""

    def __init__(self, bootstrap: str, dsn: str, tmp: Path, kafka: dict[str, str] | None = None,
                 **settings: str) -> None:
        self.bootstrap, self.dsn, self.tmp = bootstrap, dsn, tmp
        # librdkafka's settings for the test's own clients (a secured broker's SASL and TLS).
        self.kafka = {"bootstrap.servers": bootstrap, **(kafka or {})}
        self.topics = Topics(f"it{uuid.uuid4().hex[:10]}.")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REPLENISH_")}
        self.env.update({
            "REPLENISH_PROFILE": "distributed", "REPLENISH_KAFKA_BOOTSTRAP": bootstrap,
            "REPLENISH_POSTGRES_DSN": dsn, "REPLENISH_KAFKA_TOPIC_PREFIX": self.topics.prefix,
            "REPLENISH_API_KEYS": ",".join(f"{key}:{role}:it-{role}" for role, key in KEYS.items()),
            "REPLENISH_GATEWAYS": ",".join(f"{name}:{role}" for name, role in GATEWAYS.items()),
            "REPLENISH_CASE_ID_KEY": CASE_ID_KEY, "REPLENISH_KAFKA_SESSION_TIMEOUT_SECONDS": "6",
            "REPLENISH_WORKER_BATCH": "500", "REPLENISH_DATA_DIR": str(tmp / "data"),
            "REPLENISH_WORKER_GROUP": f"{self.topics.prefix}replenish-worker",
            "REPLENISH_WORKER_STALL_SECONDS": "15",
            **settings})
        self.processes: list[Process] = []
        self._producer: Producer | None = None
        self._n = 0
        self._stores: list[EventStore] = []  # opened for the test's reads; closed with the deployment

    # -- processes ----------------------------------------------------------------------
    def start_worker(self, relay: bool = True) -> Worker:
        self._n += 1
        args = ["worker"] + ([] if relay else ["--no-relay"])
        worker = Worker(args, self.env, self.tmp / f"worker-{self._n}.log")
        self.processes.append(worker)
        return worker

    def close(self) -> None:
        """Kill the processes and delete the deployment's topics (the broker outlives tests)."""
        for p in self.processes:
            p.kill()
        for store in self._stores:  # (left to the collector, a pool may be closed from its own thread)
            store.close()
        self._stores.clear()
        if self._producer is not None:
            self._producer.flush(10)
        delete_topics(self.kafka, self.topics.prefix)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-3000:]}" for p in self.processes)

    # -- a gateway ----------------------------------------------------------------------
    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.kafka | {"acks": "all",
                                       "enable.idempotence": True, "linger.ms": 2,
                                       "partitioner": "murmur2_random"})
        return self._producer

    def produce(self, events: Iterable[dict[str, Any]], principal: str = "gw-ward", flush: bool = True) -> None:
        """Produce events as a gateway does: routed by ``streams.topics.route``, the principal
        in a header."""
        for e in events:
            topic, key = route(e, self.topics, lambda _gtin: None)
            self.produce_raw(topic, orjson.dumps(e), key, [(PRINCIPAL, principal.encode())])
        if flush:
            assert self.producer.flush(30) == 0

    def produce_raw(self, topic: str, value: bytes | None, key: str | None,
                    headers: list[tuple[str, bytes]]) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key.encode() if key else None, headers=headers)
                return
            except BufferError:
                self.producer.poll(0.05)

    # -- reading ------------------------------------------------------------------------
    def read_topic(self, topic: str, at_least: int, timeout: float = 30) -> list[Any]:
        """Every message of a topic from its start, once there are ``at_least``."""
        consumer = Consumer(self.kafka | {"group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False})
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
            messages: list[Any] = []
            deadline = time.monotonic() + timeout
            while len(messages) < at_least and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    messages.append(msg)
            end = time.monotonic() + 0.5  # and whatever follows right after
            while time.monotonic() < end:
                msg = consumer.poll(0.1)
                if msg is not None and msg.error() is None:
                    messages.append(msg)
            return messages
        finally:
            consumer.close()

    def store(self) -> EventStore:
        """A store over the deployment's database, closed with the deployment."""
        store = EventStore(env=postgres_env(self.dsn))
        self._stores.append(store)
        return store

    def processor(self) -> Processor:
        """A model rebuilt from the store now."""
        return Processor(self.store(), CASE_ID_KEY.encode())

    def stored_ids(self) -> set[str]:
        """The ids of every event stored now (a model rebuilt and closed again: for polling)."""
        store = EventStore(env=postgres_env(self.dsn))
        try:
            return set(Processor(store, CASE_ID_KEY.encode()).ledger.seen)
        finally:
            store.close()

    def stored_position(self) -> int:
        """The id of the last stored event now (what ``processor().position`` is, without
        rebuilding a model; for polling)."""
        store = EventStore(env=postgres_env(self.dsn))
        try:
            return int(store.recorder.max_notification_id() or 0)
        finally:
            store.close()

    def positions(self, names: list[str]) -> dict[str, int]:
        store = TrackedEventStore(postgres_env(self.dsn))
        try:
            return store.positions(names)
        finally:
            store.close()

    def committed(self, topic: str) -> dict[int, int | None]:
        """The workers' group's offsets committed to Kafka (the next offset to read)."""
        group = self.env["REPLENISH_WORKER_GROUP"]
        consumer = Consumer(self.kafka | {"group.id": group, "enable.auto.commit": False})
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}
        finally:
            consumer.close()

    def high_watermarks(self, topic: str) -> dict[int, int]:
        consumer = Consumer(self.kafka | {"group.id": f"reader-{uuid.uuid4().hex}"})
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in partitions}
        finally:
            consumer.close()


def recorded_counts(store: EventStore) -> dict[str, int]:
    """How many times each event id was recorded as a stock fact (transfers' sides aside)."""
    counts: dict[str, int] = {}
    topic_suffix = "StockPoint.Recorded"
    for n in store.notifications():
        if n.topic.endswith(topic_suffix):
            e = orjson.loads(n.state)["event"]
            if e["type"] != "implied_transfer":
                counts[e["event_id"]] = counts.get(e["event_id"], 0) + 1
    return counts


def on_hand(processor: Processor, location: str) -> float:
    sp = processor.ledger.stock_point(SKU, location)
    return 0.0 if sp is None else sum(sp.lots.values())


__all__ = ["StockPoint"]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def delete_topics(kafka: str | dict[str, str], prefix: str) -> None:
    """Delete the topics of ``prefix`` (``kafka``: bootstrap servers, or librdkafka's settings)."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient(kafka if isinstance(kafka, dict) else {"bootstrap.servers": kafka})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result(timeout=30)
