"""Back-pressure on the embedded profile: the runner admits at most ``max_queued`` events not
yet answered; a request that does not fit waits up to a second for room, then is turned away
(``Overloaded``, with a Retry-After from the measured drain rate) having taken nothing, and
what was admitted is all stored, once."""

from __future__ import annotations

import asyncio
import threading
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


def test_a_request_that_finds_room_within_the_wait_is_admitted(world: World) -> None:
    w = world

    async def scenario() -> list[Any]:
        gated = GatedProcessor(w)
        runner = EmbeddedRunner(gated, max_batch=100, max_queued=100)  # type: ignore[arg-type]
        await runner.start()
        try:
            batches = [[w.receipt(1, lot="L2") for _ in range(60)] for _ in range(2)]
            first = asyncio.create_task(runner.submit(batches[0], SCANNER))
            await asyncio.sleep(0.05)
            second = asyncio.create_task(runner.submit(batches[1], SCANNER))
            asyncio.get_running_loop().call_later(0.3, gated.gate.set)  # room within the second
            return list(await asyncio.gather(first, second))
        finally:
            gated.gate.set()
            await runner.stop()

    results = asyncio.run(scenario())
    assert [len(r) for r in results] == [60, 60]
    assert w.lots() == {"L2": 120.0}


def test_retry_after_is_the_drain_time_of_the_excess_and_at_least_one_second(world: World) -> None:
    runner = EmbeddedRunner(world.p, max_batch=100, max_queued=100)
    runner.queued = 100
    assert runner.retry_after(40) == 1  # nothing measured yet
    runner.drain_rate = 10.0
    assert runner.retry_after(40) == 4
    runner.drain_rate = 1e6
    assert runner.retry_after(40) == 1
