"""The Faust agent's translation loop (``streams.kafka_app.PartitionWorker``) without a broker:
batches of messages in, events and tracking records stored, outcomes and dead letters out.
The same loop against the real broker is in tests/integration/test_distributed_workers.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from unit_world import KEY, World

from domain import codes as c
from streams.kafka_app import PartitionWorker, WorkerConfig
from streams.processor import Processor
from streams.store import sqlite_env
from streams.topics import PRINCIPAL, REASON, REPLY_TO, Topics
from streams.tracked_store import TrackedEventStore

TOPICS = Topics()


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: Any,
                   timestamp: Any, headers: Any) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, list(headers or ())))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def on(self, topic: str) -> list[Any]:
        return [s for s in self.sent if s[0] == topic]


class FakeApp:
    """Faust's app as the worker uses it (its producer, for dead letters), and the outcomes'
    producer beside it: both record what they were given."""

    def __init__(self) -> None:
        self.producer = FakeProducer()

    async def maybe_start_producer(self) -> FakeProducer:
        return self.producer

    def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.producer.sent.append((topic, key, value, headers))

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass


def message(offset: int, value: Any, principal: str | None = "gw", partition: int = 0,
            reply: str | None = None) -> Any:
    headers = ([(PRINCIPAL, principal.encode())] if principal else []) + (
        [(REPLY_TO, reply.encode())] if reply else [])
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return SimpleNamespace(message=SimpleNamespace(topic=TOPICS.events, partition=partition,
                                                   offset=offset, key=b"k", value=raw, headers=headers))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(store=TrackedEventStore(sqlite_env(str(tmp_path / "events.sqlite"))))


def worker_for(world: World) -> tuple[PartitionWorker, FakeApp]:
    app = FakeApp()
    config = WorkerConfig("kafka:9092", TOPICS, {"gw": "scanner", "erp": "admin"}, events_partitions=6)
    return PartitionWorker(world.p, config, app, app), app  # type: ignore[arg-type]


def test_a_batch_is_stored_with_its_offsets_and_a_redelivered_one_only_answers_again(world: World) -> None:
    worker, app = worker_for(world)
    batch = [message(0, world.receipt(5), reply="r0"), message(1, world.usage(2), partition=1),
             message(2, world.usage(1, location="NOWHERE"))]
    asyncio.run(worker.handle(batch))
    store = world.p.store
    assert isinstance(store, TrackedEventStore)
    assert store.positions([f"{TOPICS.events}-0", f"{TOPICS.events}-1"]) == {
        f"{TOPICS.events}-0": 2, f"{TOPICS.events}-1": 1}
    assert world.lots() == {"L1": 3.0}
    outcomes = [orjson.loads(v) for _, _, v, _ in app.producer.on(TOPICS.outcomes)]
    assert [(o["status"], o["offset"], o["reply_to"]) for o in outcomes] == [
        ("accepted", 0, "r0"), ("accepted", 1, None), ("rejected", 2, None)]
    assert app.producer.on(TOPICS.outcomes)[0][1] == b"r0"  # keyed by the reply id it waits on

    stored = len(world.stored())
    fresh, _ = worker_for(world)  # a new worker, as after a crash: Kafka gives the batch again
    asyncio.run(fresh.handle(batch))
    assert len(world.stored()) == stored and world.lots() == {"L1": 3.0}
    again = [orjson.loads(v) for _, _, v, _ in fresh.app.producer.on(TOPICS.outcomes)]  # type: ignore[attr-defined]
    assert [(o["event_id"], o["status"]) for o in again] == [(o["event_id"], o["status"]) for o in outcomes]


def test_what_is_not_an_event_goes_to_the_dead_letter_topic_and_the_position_moves_past_it(world: World) -> None:
    worker, app = worker_for(world)
    asyncio.run(worker.handle([message(0, b"{oops"), message(1, world.receipt(1), principal=None),
                               message(2, world.receipt(1), principal="eve"), message(3, world.receipt(2))]))
    dead = app.producer.on(TOPICS.dead_letter)
    reasons = [dict(h)[REASON].decode() for *_, h in dead]
    assert [r.split(":")[0] for r in reasons] == ["not JSON", "no 'principal' header", "unknown principal 'eve'"]
    assert dead[0][2] == b"{oops"
    assert world.p.store.positions([f"{TOPICS.events}-0"]) == {f"{TOPICS.events}-0": 3}  # type: ignore[attr-defined]
    assert world.lots() == {"L1": 2.0}


def test_a_message_the_processor_fails_on_is_set_aside_and_the_rest_stored(world: World,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    worker, app = worker_for(world)
    real = Processor.process

    def process(self: Processor, items: Any, tracking: Any = ()) -> Any:
        if any(isinstance(e, dict) and e.get("note") == "boom" for e, _ in items):
            raise ValueError("a bug meets an odd event")
        return real(self, items, tracking)

    monkeypatch.setattr(Processor, "process", process)
    asyncio.run(worker.handle([message(0, world.receipt(4)), message(1, dict(world.usage(1), note="boom")),
                               message(2, world.usage(1))]))
    assert world.lots() == {"L1": 3.0}
    (dead,) = app.producer.on(TOPICS.dead_letter)
    assert dict(dead[3])[REASON].decode() == "the processor failed on it: ValueError: a bug meets an odd event"
    assert world.p.store.positions([f"{TOPICS.events}-0"]) == {f"{TOPICS.events}-0": 2}  # type: ignore[attr-defined]


def test_a_gateway_applies_the_role_its_principal_has(world: World) -> None:
    worker, app = worker_for(world)
    item = world.item(sku="MASK")
    asyncio.run(worker.handle([message(0, item), message(1, dict(item, event_id="x2"), principal="erp")]))
    outcomes = [orjson.loads(v) for _, _, v, _ in app.producer.on(TOPICS.outcomes)]
    assert [o["status"] for o in outcomes] == ["rejected", "accepted"]
    assert outcomes[0]["errors"][0]["code"] == c.FORBIDDEN_TYPE
    assert world.p.event_outcome("x2")["recorded_by"] == "erp"


def test_processors_of_two_workers_share_the_store(tmp_path: Path) -> None:
    store_path = str(tmp_path / "events.sqlite")
    w = World(store=TrackedEventStore(sqlite_env(store_path)))
    other = Processor(TrackedEventStore(sqlite_env(store_path)), KEY, clock=lambda: w.now)
    worker, _ = worker_for(w)
    second = PartitionWorker(other, worker.config, FakeApp(), FakeApp())  # type: ignore[arg-type]
    asyncio.run(worker.handle([message(0, w.receipt(5))]))
    asyncio.run(second.handle([message(0, w.usage(2), partition=3)]))  # follows the log first
    asyncio.run(worker.handle([message(1, w.usage(1))]))
    assert w.lots() == {"L1": 2.0}
    other.follow()
    assert other.state_digest() == w.p.state_digest()
