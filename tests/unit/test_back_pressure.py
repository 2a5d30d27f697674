"""Back-pressure on the embedded profile: the runner admits at most ``max_queued`` events not
yet answered; a request that does not fit waits up to a second for room, then is turned away
(``Overloaded``, with a Retry-After from the measured drain rate) having taken nothing, and
what was admitted is all stored, once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from unit_world import SCANNER, World

from domain import codes as c
from streams.embedded import EmbeddedRunner, Overloaded


class GatedProcessor:
    """The real processor behind a gate the test opens (a slow disk, a busy CPU)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.gate = threading.Event()

    def process(self, items: list[Any]) -> Any:
        self.gate.wait(10)
        return self.world.p.process(items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.world.p, name)


def test_a_request_without_room_waits_a_second_then_is_turned_away_and_nothing_admitted_is_lost(
        world: World) -> None:
    w = world

    async def scenario() -> tuple[list[Any], EmbeddedRunner]:
        gated = GatedProcessor(w)
        runner = EmbeddedRunner(gated, max_batch=100, max_queued=100)  # type: ignore[arg-type]
        await runner.start()
        try:
            receipts = [[w.receipt(1, lot="L1") for _ in range(40)] for _ in range(3)]
            tasks = [asyncio.create_task(runner.submit(batch, SCANNER)) for batch in receipts]
            await asyncio.sleep(0.1)  # the first two are admitted (80 events), the third waits
            assert runner.queued == 80
            asyncio.get_running_loop().call_later(1.5, gated.gate.set)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            return results, runner
        finally:
            gated.gate.set()
            await runner.stop()

    results, runner = asyncio.run(scenario())
    assert [type(r).__name__ for r in results] == ["list", "list", "Overloaded"]
    refused = results[2]
    assert isinstance(refused, Overloaded) and refused.retry_after >= 1
    assert runner.turned_away == 1 and runner.queued == 0
    stored = [o for r in results[:2] for o in r]  # type: ignore[union-attr]
    assert [o.status for o in stored] == [c.ACCEPTED] * 80
    assert w.lots() == {"L1": 80.0}  # the turned-away request took nothing


def two_requests(w: World, make: Callable[[GatedProcessor], EmbeddedRunner], lot: str, size: int,
                 open_after: float) -> list[Any]:
    """Two requests of ``size`` receipts of ``lot``, the second 50 ms after the first, to a
    runner (``make``) behind a gate that opens ``open_after`` seconds later: each request's
    outcomes, or the exception it was answered with."""

    async def scenario() -> list[Any]:
        gated = GatedProcessor(w)
        runner = make(gated)
        await runner.start()
        try:
            batches = [[w.receipt(1, lot=lot) for _ in range(size)] for _ in range(2)]
            first = asyncio.create_task(runner.submit(batches[0], SCANNER))
            await asyncio.sleep(0.05)
            second = asyncio.create_task(runner.submit(batches[1], SCANNER))
            asyncio.get_running_loop().call_later(open_after, gated.gate.set)
            return list(await asyncio.gather(first, second, return_exceptions=True))
        finally:
            gated.gate.set()
            await runner.stop()

    return asyncio.run(scenario())


def test_a_request_that_finds_room_within_the_wait_is_admitted(world: World) -> None:
    w = world
    results = two_requests(w, lambda gated: EmbeddedRunner(gated, max_batch=100, max_queued=100),  # type: ignore[arg-type]
                           "L2", 60, open_after=0.3)  # room within the second
    assert [len(r) for r in results] == [60, 60]
    assert w.lots() == {"L2": 120.0}


def test_retry_after_is_the_drain_time_of_the_excess_and_at_least_one_second(world: World) -> None:
    runner = EmbeddedRunner(world.p, max_batch=100, max_queued=100)
    runner.queued = 100
    assert runner.retry_after(40) == 1  # nothing measured yet
    runner.measure(100, 10.0)  # 10 events a second
    assert runner.retry_after(40) == 4
    runner.measure(10**7, 10.0)
    assert runner.retry_after(40) == 1


def test_the_bound_follows_the_drain_rate_between_one_largest_request_and_the_setting(world: World) -> None:
    runner = EmbeddedRunner(world.p, max_batch=1_000, max_queued=5_000, max_queue_seconds=2.0)
    assert runner.limit() == 5_000  # nothing measured yet: the setting
    runner.measure(1_000, 1.0)  # 1,000 events a second: two seconds' worth may wait
    assert runner.limit() == 2_000
    for _ in range(100):  # a quiet hour's batches of one event in 5 ms each: no queue's
        runner.measure(1, 0.005)
    assert runner.limit() == 2_000
    runner.measure(100_000, 1.0)  # fast: the setting caps it
    assert runner.limit() == 5_000
    slow = EmbeddedRunner(world.p, max_batch=100, max_queued=5_000, max_queue_seconds=2.0)
    slow.measure(100, 10.0)  # 10 a second: still room for one largest request
    assert slow.limit() == 100
    assert EmbeddedRunner(world.p, max_batch=100, max_queued=5_000).limit() == 5_000  # no drain bound


def test_a_slow_drain_turns_away_what_would_wait_longer_than_the_setting(world: World) -> None:
    w = world

    def make(gated: GatedProcessor) -> EmbeddedRunner:
        runner = EmbeddedRunner(gated, max_batch=50, max_queued=10_000, max_queue_seconds=1.0)  # type: ignore[arg-type]
        runner.measure(50, 1.0)  # 50 events a second measured: 50 may wait
        return runner

    results = two_requests(w, make, "L3", 40, open_after=1.5)
    # 80 events fit the bound of 10,000 but not two seconds' drain: the second is turned away
    assert [type(r).__name__ for r in results] == ["list", "Overloaded"]
    assert w.lots() == {"L3": 40.0}
