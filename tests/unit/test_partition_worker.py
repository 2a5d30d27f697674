"""The Faust agent's translation loop (``streams.kafka_app.PartitionWorker``) without a broker:
batches of messages in, events and tracking records stored, outcomes and dead letters out.
The same loop against the real broker is in tests/integration/test_distributed_workers.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta
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
from streams.topics import PRINCIPAL, REASON, REFERENCE_OFFSET, REPLY_TO, Topics
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


def fail_on_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """The processor fails on any call that holds an event noted "boom" (a bug meeting an odd
    event)."""
    real = Processor.process

    def process(self: Processor, items: Any, tracking: Any = (), **kw: Any) -> Any:
        if any(isinstance(e, dict) and e.get("note") == "boom" for e, _ in items):
            raise ValueError("a bug meets an odd event")
        return real(self, items, tracking, **kw)

    monkeypatch.setattr(Processor, "process", process)


def test_a_message_the_processor_fails_on_is_set_aside_and_the_rest_stored(world: World,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    worker, app = worker_for(world)
    fail_on_boom(monkeypatch)
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


def test_a_principal_added_to_the_key_file_is_known_at_once_and_one_removed_is_refused(world: World) -> None:
    """The worker follows the API key file's principals (``set_roles`` from the file watcher);
    a message naming a principal it does not know yet makes it read them again (at most once a
    second) before it refuses: a key added to the file and used before the watcher saw it."""
    worker, app = worker_for(world)
    on_file = {"gw": "scanner", "erp": "admin", "new-gw": "scanner"}
    reads: list[int] = []
    worker.reload_roles = lambda: reads.append(1) or on_file
    asyncio.run(worker.handle([message(0, world.receipt(4), principal="new-gw")]))
    assert reads == [1] and world.lots() == {"L1": 4.0} and app.producer.on(TOPICS.dead_letter) == []
    worker.set_roles({"gw": "scanner"})  # new-gw's key taken out of the file
    worker.reload_roles = lambda: reads.append(2) or {"gw": "scanner"}
    worker.roles_retry_s = 0.0  # (as a second later)
    asyncio.run(worker.handle([message(1, world.usage(1), principal="new-gw"),
                               message(2, world.usage(1), principal="eve")]))
    reasons = [dict(h)[REASON].decode() for *_, h in app.producer.on(TOPICS.dead_letter)]
    assert [r.split(":")[0] for r in reasons] == ["unknown principal 'new-gw'", "unknown principal 'eve'"]
    assert world.lots() == {"L1": 4.0} and reads == [1, 2, 2]


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


def keyed(topic: str, offset: int, value: Any, key: str, principal: str = "gw",
          reference_end: int | None = None) -> Any:
    headers = [(PRINCIPAL, principal.encode())] + (
        [(REFERENCE_OFFSET, str(reference_end).encode())] if reference_end is not None else [])
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=0, offset=offset, key=key.encode(),
                                                   value=orjson.dumps(value), headers=headers))


def test_events_sent_after_reference_data_not_yet_stored_are_parked_by_key_and_resume_in_order(
        world: World) -> None:
    """A new item's receipt and use, sent after its item_registered (the reference topic's end
    offset 1 in their header), reach a worker before it: past the wait they are parked (not
    refused), with one ``reference_wait`` alert; another key's event in the same batch is
    decided at once; a later event of the parked key parks behind them; once the reference
    data is stored they are decided in the order they came and the alert is resolved."""
    worker, _, store = parking_worker(world)

    def parked(key: str) -> list[int]:
        return [e.offset for e in store.parked([f"{TOPICS.events}-0"], [key])]
    new = "NEWP@" + "WARD-3"
    receipt = dict(world.receipt(6), sku="NEWP")
    use = dict(world.usage(2), sku="NEWP")
    later = dict(world.usage(1), sku="NEWP")
    other = world.receipt(4)
    asyncio.run(worker.handle([keyed(TOPICS.events, 0, receipt, new, reference_end=1),
                               keyed(TOPICS.events, 1, other, "GLV@WARD-3", reference_end=0),
                               keyed(TOPICS.events, 2, use, new, reference_end=1)]))
    assert world.lots() == {"L1": 4.0}  # the other key's receipt was decided
    assert world.p.event_outcome(receipt["event_id"]) is None  # parked: neither stored nor refused
    assert parked(new) == [0, 2]
    assert world.p.store.positions([f"{TOPICS.events}-0"]) == {f"{TOPICS.events}-0": 2}  # type: ignore[attr-defined]
    (alert,) = [a for a in world.p.alerts() if a["kind"] == c.ALERT_REFERENCE_WAIT]
    assert alert["status"] == "open" and alert["key"] == new and alert["parked"] == 2
    assert (alert["sku"], alert["location"]) == ("NEWP", "WARD-3")

    asyncio.run(worker.handle([keyed(TOPICS.events, 3, later, new)]))  # no header: parked behind
    assert parked(new) == [0, 2, 3]

    asyncio.run(worker.handle([keyed(TOPICS.reference, 0, world.item(sku="NEWP"), "NEWP", principal="erp")]))
    asyncio.run(worker.housekeeping())  # (idle: the parked keys whose reference data is stored resume)
    assert parked(new) == [] and worker.parked == {}
    assert world.lots("NEWP") == {"L1": 3.0}
    assert [world.p.event_outcome(e["event_id"])["status"] for e in (receipt, use, later)] == ["accepted"] * 3
    stored = [state["event"].get("event_id") for *_, state in world.stored() if isinstance(state.get("event"), dict)]
    assert stored.index(receipt["event_id"]) < stored.index(use["event_id"]) < stored.index(later["event_id"])
    (alert,) = [a for a in world.p.alerts() if a["kind"] == c.ALERT_REFERENCE_WAIT]
    assert alert["status"] == "resolved"
    again = Processor(world.store, KEY, clock=lambda: world.now)  # replay equals live
    assert again.state_digest() == world.p.state_digest()

    # The same key waiting again later is a new alert (the first stays resolved).
    world.now += timedelta(hours=1)
    asyncio.run(worker.handle([keyed(TOPICS.events, 4, dict(world.usage(1), sku="NEWP"), new, reference_end=2)]))
    alerts = [a for a in world.p.alerts() if a["kind"] == c.ALERT_REFERENCE_WAIT]
    assert sorted(a["status"] for a in alerts) == ["open", "resolved"] and len({a["id"] for a in alerts}) == 2


def parking_worker(world: World) -> tuple[PartitionWorker, FakeApp, Any]:
    app = FakeApp()
    config = WorkerConfig("kafka:9092", TOPICS, {"gw": "scanner", "erp": "admin"}, events_partitions=6,
                          reference_wait_s=0.01, park=True)
    worker = PartitionWorker(world.p, config, app, app)  # type: ignore[arg-type]
    worker.assigned = {(TOPICS.events, 0), (TOPICS.reference, 0)}
    store = world.p.store
    assert isinstance(store, TrackedEventStore)
    return worker, app, store


def test_a_batch_that_parks_and_fails_to_store_parks_nothing_and_its_retry_keeps_the_order(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parked rows are written in the transaction that tracks their offsets: a batch whose
    store fails leaves none behind (none could be resumed ahead of the batch's earlier event
    of the same key), and the retry parks them once."""
    from streams.store import EventStore, StoreUnavailable
    worker, _, store = parking_worker(world)
    key = "NEWP@WARD-3"
    first = world.receipt(6)  # (decided now: its reference is stored)
    waiting = [dict(world.usage(1), sku="NEWP") for _ in range(2)]
    real, failures = EventStore.append, []

    def append(self: EventStore, events: Any, tracking: Any = (), parking: Any = None) -> Any:
        if parking and not failures:
            failures.append(1)
            assert store.parked([f"{TOPICS.events}-0"]) == []
            raise StoreUnavailable("the database went away")
        return real(self, events, tracking, parking)

    monkeypatch.setattr(EventStore, "append", append)
    asyncio.run(worker.handle([keyed(TOPICS.events, 0, first, "GLV@WARD-3", reference_end=0),
                               *[keyed(TOPICS.events, 1 + i, e, key, reference_end=1) for i, e in enumerate(waiting)]]))
    assert failures == [1]
    assert [e.offset for e in store.parked([f"{TOPICS.events}-0"], [key])] == [1, 2]
    assert world.p.event_outcome(first["event_id"])["status"] == "accepted"  # type: ignore[index]


def test_a_resumed_event_the_processor_fails_on_goes_to_the_dead_letter_topic_and_the_rest_resume(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    worker, app, store = parking_worker(world)
    key = "NEWP@WARD-3"
    good, bad = dict(world.receipt(5), sku="NEWP"), dict(world.usage(1), sku="NEWP", note="boom")
    asyncio.run(worker.handle([keyed(TOPICS.events, 0, good, key, reference_end=1),
                               keyed(TOPICS.events, 1, bad, key, reference_end=1)]))
    assert len(store.parked([f"{TOPICS.events}-0"])) == 2
    fail_on_boom(monkeypatch)
    asyncio.run(worker.handle([keyed(TOPICS.reference, 0, world.item(sku="NEWP"), "NEWP", principal="erp")]))
    asyncio.run(worker.housekeeping())
    assert store.parked([f"{TOPICS.events}-0"]) == [] and worker.parked == {}
    assert world.lots("NEWP") == {"L1": 5.0}
    (dead,) = app.producer.on(TOPICS.dead_letter)
    assert orjson.loads(dead[2])["event_id"] == bad["event_id"]
    assert dict(dead[3])[REASON].decode().startswith("the processor failed on it: ValueError")
    (alert,) = [a for a in world.p.alerts() if a["kind"] == c.ALERT_REFERENCE_WAIT]
    assert alert["status"] == "resolved"


def test_a_batch_stored_though_its_answer_was_lost_leaves_its_key_parked_for_the_retry(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store commits a batch that parks a key's events but the answer is lost (the
    connection drops): the retry finds the batch stored and reads the parked rows again, so a
    later event of the key parks behind them instead of overtaking them."""
    from streams.store import EventStore, StoreUnavailable
    worker, _, store = parking_worker(world)
    key = "NEWP@WARD-3"
    receipt = dict(world.receipt(6), sku="NEWP")
    real, lost = EventStore.append, []

    def append(self: EventStore, events: Any, tracking: Any = (), parking: Any = None) -> Any:
        ids = real(self, events, tracking, parking)
        if parking and parking.park and not lost:
            lost.append(1)
            raise StoreUnavailable("the connection dropped before the commit was acknowledged")
        return ids

    monkeypatch.setattr(EventStore, "append", append)
    asyncio.run(worker.handle([keyed(TOPICS.events, 0, receipt, key, reference_end=1)]))
    assert lost == [1] and key in worker.parked
    asyncio.run(worker.handle([keyed(TOPICS.reference, 0, world.item(sku="NEWP"), "NEWP", principal="erp")]))
    later = dict(world.usage(2), sku="NEWP")
    asyncio.run(worker.handle([keyed(TOPICS.events, 1, later, key)]))
    assert [e.offset for e in store.parked([f"{TOPICS.events}-0"])] == []
    assert world.p.event_outcome(later["event_id"])["status"] == "accepted"  # type: ignore[index]
    assert world.lots("NEWP") == {"L1": 4.0}  # the receipt first, then the use
    stored = [state["event"].get("event_id") for *_, state in world.stored() if isinstance(state.get("event"), dict)]
    assert stored.index(receipt["event_id"]) < stored.index(later["event_id"])


def test_keys_of_a_partition_no_longer_held_are_not_resumed_here(world: World) -> None:
    worker, _, store = parking_worker(world)
    key = "NEWP@WARD-3"
    asyncio.run(worker.handle([keyed(TOPICS.events, 0, dict(world.receipt(6), sku="NEWP"), key, reference_end=1)]))
    asyncio.run(worker.handle([keyed(TOPICS.reference, 0, world.item(sku="NEWP"), "NEWP", principal="erp")]))
    worker.assigned = {(TOPICS.reference, 0)}  # the events partition went to another worker
    asyncio.run(worker.housekeeping())
    assert len(store.parked([f"{TOPICS.events}-0"])) == 1  # left for its owner
    (alert,) = [a for a in world.p.alerts() if a["kind"] == c.ALERT_REFERENCE_WAIT]
    assert alert["status"] == "open"
