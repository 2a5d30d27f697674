"""The embedded transport: an in-process asyncio queue in front of the processor.

Requests that arrive together are merged into one processor batch (one store transaction),
and every processor call, reads included, runs on one worker thread, so the in-memory
model is never read while it changes. A caller's answer is ready only once its events are
durably stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from domain.intake import Outcome, Principal
from streams.outcome_log import log_alerts, log_refusals
from streams.processor import Processor

log = logging.getLogger(__name__)
T = TypeVar("T")
DAILY_CHECK_POLL_SECONDS = 600.0  # how often the runner looks whether a new day has begun
TICK_SECONDS = 30.0  # how often the runner submits requisitions whose ordering window closed
AlertListener = Callable[[list[dict[str, Any]]], None]
MAX_QUEUED_EVENTS = 50_000  # events admitted and not yet answered (REPLENISH_MAX_QUEUED_EVENTS)
# The drain rate: measured on batches of at least DRAIN_BATCH_EVENTS (or max_batch) events, a
# queue's (a quiet service's small batches are mostly fixed cost and say little about how fast
# a queue drains; with a short queue the bound does not matter); each such batch of n events
# weighs what came before it by exp(-n / DRAIN_MEMORY_EVENTS): under load, the last few.
DRAIN_BATCH_EVENTS = 1_000
DRAIN_MEMORY_EVENTS = 20_000
ROOM_WAIT_SECONDS = 1.0  # how long a request waits for room before it is turned away


class Overloaded(RuntimeError):
    """The queue has no room for a request's events: nothing of it was taken; send it again
    after ``retry_after`` seconds (the queue's drain time at the rate measured)."""

    def __init__(self, events: int, queued: int, limit: int, retry_after: int) -> None:
        super().__init__(f"{queued:,} events wait to be stored (at most {limit:,}); {events:,} more "
                         f"do not fit: send them again in {retry_after} s")
        self.retry_after = retry_after


class EmbeddedRunner:
    def __init__(self, processor: Processor, max_batch: int = 10_000,
                 max_queued: int = MAX_QUEUED_EVENTS, max_queue_seconds: float | None = None) -> None:
        self.processor = processor
        self.max_batch = max_batch
        self.max_queued = max_queued
        # None: the bound is ``max_queued`` alone (no drain-time bound)
        self.max_queue_seconds = max_queue_seconds
        self.queued = 0  # events admitted and not yet answered
        self.turned_away = 0  # requests answered Overloaded
        # Events stored and seconds taken by a queue's batches, exponentially weighted by the
        # events since (``measure``): their ratio is the drain rate.
        self._drained = [0.0, 0.0]
        self._room = asyncio.Event()
        self.snapshotter: Any = None  # streams.snapshots.Snapshotter: written from the ticks
        self.checkpointer: Any = None  # streams.checkpoints.Checkpointer: made from the ticks
        self.listeners: list[AlertListener] = []
        self.logs_alerts = True  # (the distributed API's are the workers' to log)
        self.metrics: Any = None  # streams.metrics.ServiceMetrics, when the service counts
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="processor")
        # (events with their principal, the future answered, whether all or nothing)
        self._queue: asyncio.Queue[tuple[list[tuple[Any, Principal]], asyncio.Future[Any], bool]] | None = None
        self._held: tuple[list[tuple[Any, Principal]], asyncio.Future[Any], bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._daily: asyncio.Task[None] | None = None
        self.daily_check_seconds = DAILY_CHECK_POLL_SECONDS
        self._ticking: asyncio.Task[None] | None = None
        self.tick_seconds = TICK_SECONDS

    async def start(self) -> None:
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="embedded-runner")
        self._daily = asyncio.create_task(self._daily_checks(), name="daily-expiry-check")
        self._ticking = asyncio.create_task(self._ticks(), name="procurement-tick")

    async def _daily_checks(self) -> None:
        """The expiry check (``Processor.daily_check``): at start, then once each UTC day."""
        loop = asyncio.get_running_loop()
        last_day = None
        while True:
            today = self.processor.clock().date()
            if today != last_day:
                try:
                    result = await loop.run_in_executor(self._executor, self.processor.daily_check)
                    last_day = today
                    self._notify()
                    self._tell(result.alerts)
                except Exception:
                    log.exception("daily expiry check failed; trying again later")
            await asyncio.sleep(self.daily_check_seconds)

    async def stop(self) -> None:
        for task in (self._daily, self._ticking):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, events: list[Any], principal: Principal) -> list[Outcome]:
        """Process ``events`` posted by ``principal``; returns once they are stored. When the
        queue has no room for them (``max_queued`` events admitted and not yet answered), it
        waits up to ``ROOM_WAIT_SECONDS`` for room, then raises ``Overloaded`` having taken
        nothing. (A request is never larger than the bound: at most ``max_batch`` events.)"""
        outcomes: list[Outcome] = await self._enqueue(events, principal, False)
        if self.metrics is not None:
            self.metrics.observe_outcomes(outcomes)
        return outcomes

    async def submit_all_or_nothing(self, events: list[Any], principal: Principal
                                    ) -> tuple[bool, list[Outcome | None]]:
        """Store all of ``events`` or, when one would be refused, only the refusals and
        nothing else (``Processor.process_all_or_nothing``, on the processor's thread in one
        turn, so nothing comes between the check and the storing): (whether all were stored,
        each event's outcome or None when it was not stored). Admitted as ``submit``."""
        stored, outcomes = await self._enqueue(events, principal, True)
        if self.metrics is not None:
            self.metrics.observe_outcomes([o for o in outcomes if o is not None])
        return stored, outcomes

    async def _enqueue(self, events: list[Any], principal: Principal, whole: bool) -> Any:
        assert self._queue is not None, "runner not started"
        n = len(events)
        if self.queued and self.queued + n > self.limit():
            deadline = time.monotonic() + ROOM_WAIT_SECONDS
            while self.queued and self.queued + n > self.limit():
                left = deadline - time.monotonic()
                if left <= 0:
                    self.turned_away += 1
                    if self.metrics is not None:
                        self.metrics.turned_away.inc()
                    raise Overloaded(n, self.queued, self.limit(), self.retry_after(n))
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), left)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queued += n
        self._queue.put_nowait(([(e, principal) for e in events], future, whole))
        try:
            return await future
        finally:
            self.queued -= n
            self._room.set()

    @property
    def drain_rate(self) -> float:
        """Events stored per second, measured over recent batches (0 before any)."""
        events, seconds = self._drained
        return events / seconds if seconds > 0 else 0.0

    def measure(self, events: int, seconds: float) -> None:
        """A batch of ``events`` stored in ``seconds``: it joins the drain rate when it is a
        queue's (``DRAIN_BATCH_EVENTS``)."""
        if events < min(DRAIN_BATCH_EVENTS, self.max_batch):
            return
        keep = math.exp(-events / DRAIN_MEMORY_EVENTS)
        self._drained = [keep * self._drained[0] + events, keep * self._drained[1] + max(seconds, 1e-6)]

    def limit(self) -> int:
        """Events that may wait now: what the measured drain rate stores in
        ``max_queue_seconds`` (so that what is admitted is answered within about that), at
        least ``max_batch`` (the largest request always fits an empty queue's room) and at
        most ``max_queued``; ``max_queued`` before any batch was measured."""
        rate = self.drain_rate
        if self.max_queue_seconds is None or rate <= 0:
            return self.max_queued
        return min(self.max_queued, max(self.max_batch, math.ceil(rate * self.max_queue_seconds)))

    def retry_after(self, n: int) -> int:
        """Whole seconds until ``n`` more events would fit, at the drain rate measured (at
        least 1; 1 before any batch was measured)."""
        excess = self.queued + n - self.limit()
        if self.drain_rate <= 0 or excess <= 0:
            return 1
        return max(1, math.ceil(excess / self.drain_rate))

    async def change_alert(self, alert_id: str, status: str, reason: str,
                           principal: Principal) -> dict[str, Any] | None:
        """Acknowledge or resolve an alert; returns once the change is stored."""
        loop = asyncio.get_running_loop()
        alert = await loop.run_in_executor(
            self._executor, self.processor.change_alert, alert_id, status, reason, principal)
        self._notify()
        return alert

    async def decide_requisition(self, requisition_id: str, approve: bool, reason: str,
                                 principal: Principal) -> dict[str, Any]:
        """Approve or reject a requisition; returns once the decision (and the purchase order
        an approval completes) is stored. Raises ``ApprovalError`` when it may not happen."""
        loop = asyncio.get_running_loop()
        req, alerts = await loop.run_in_executor(
            self._executor, self.processor.decide_requisition, requisition_id, approve, reason, principal)
        self._notify()
        self._tell(alerts)
        return req

    def _tell(self, alerts: list[dict[str, Any]]) -> None:
        """Log the alerts raised and hand them to each listener (webhooks); one failing stops none."""
        if self.logs_alerts:
            log_alerts(log, alerts)
        if alerts:
            for listener in self.listeners:
                try:
                    listener(alerts)
                except Exception:
                    log.exception("alert listener failed")

    async def _ticks(self) -> None:
        """Submit requisitions whose ordering window closed while no event arrived, and decide
        again the stock points that wait on open orders (``Processor.check_overdue``)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_seconds)
            snapshotter = self.snapshotter
            if snapshotter is not None and snapshotter.due(self.processor.position):
                try:
                    await loop.run_in_executor(self._executor, snapshotter.take, self.processor)
                except Exception:
                    log.exception("writing a snapshot failed; the next tick tries again")
            checkpointer = self.checkpointer
            if checkpointer is not None and checkpointer.due(self.processor.position):
                try:
                    await loop.run_in_executor(self._executor, checkpointer.take)
                except Exception:
                    log.exception("making an audit checkpoint failed; the next tick tries again")
            for work in (self.processor.tick, self.processor.check_overdue):
                try:
                    result = await loop.run_in_executor(self._executor, work)
                except Exception:
                    log.exception("%s failed; trying again later", work.__name__)
                    continue
                if result.stored:
                    self._notify()
                    self._tell(result.alerts)

    async def wait_changed(self, timeout: float) -> bool:
        """Wait until a batch has been stored (True) or ``timeout`` seconds passed (False)."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a read of the processor's model on its thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first, self._held = self._held or await self._queue.get(), None
            if first[2]:  # all or nothing: a turn of its own
                await self._run_whole(first)
                continue
            group = [first]
            size = len(first[0])
            while size < self.max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt[2]:
                    self._held = nxt  # (next turn, after this batch)
                    break
                group.append(nxt)
                size += len(nxt[0])
            items = [item for request, _, _ in group for item in request]
            began = time.monotonic()
            try:
                result = await loop.run_in_executor(self._executor, self.processor.process, items)
                took = max(time.monotonic() - began, 1e-6)
                self.measure(len(items), took)
                if self.metrics is not None:
                    self.metrics.observe_batch(len(items), took)
            except Exception as exc:
                log.exception("processor batch failed; nothing of it was stored")
                for _, future, _ in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            log_refusals(log, (raw for raw, _ in items), result.outcomes)
            i = 0
            for request, future, _ in group:
                if not future.done():
                    future.set_result(result.outcomes[i:i + len(request)])
                i += len(request)
            self._notify()
            self._tell(result.alerts)

    async def _run_whole(self, request: tuple[list[tuple[Any, Principal]], asyncio.Future[Any], bool]) -> None:
        items, future, _ = request
        try:
            stored, outcomes, alerts = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.processor.process_all_or_nothing, items)
        except Exception as exc:
            log.exception("processor batch failed; nothing of it was stored")
            if not future.done():
                future.set_exception(exc)
            return
        log_refusals(log, (raw for (raw, _), o in zip(items, outcomes, strict=True) if o is not None),
                     [o for o in outcomes if o is not None])
        if not future.done():
            future.set_result((stored, outcomes))
        self._notify()
        self._tell(alerts)
