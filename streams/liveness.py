"""Liveness of a Kafka worker's partitions: a partition it holds that has messages waiting
(lag) and has stored nothing for ``stall_s`` seconds is stalled.

A stall is what a consumer group cannot see for itself: the worker still heartbeats, so the
group keeps its partitions, while nothing of them is processed (a rebalance whose recovery
never resumed the flow, a processor thread waiting on a lock). The watch only judges; the
worker decides what to do (``streams.kafka_app.StallWatchdog``: rejoin the group, then exit
for its supervisor to restart it).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass


@dataclass
class _Seen:
    position: int  # the next offset to store, as last observed
    since: float  # when the position last moved, or the partition last had no lag


class StallWatch:
    """Per partition, the last stored position and since when it has not moved while the
    partition had lag.

    >>> t = [0.0]
    >>> watch = StallWatch(30, clock=lambda: t[0])
    >>> watch.observe("p0", position=10, end=12)
    >>> t[0] = 29; watch.observe("p0", position=10, end=15); watch.stalled()
    []
    >>> t[0] = 31; watch.observe("p0", position=10, end=15); watch.stalled()
    ['p0']
    >>> watch.observe("p0", position=11, end=15); watch.stalled()  # it moved
    []
    """

    def __init__(self, stall_s: float, clock: Callable[[], float]) -> None:
        if stall_s <= 0:
            raise ValueError("stall_s must be positive")
        self.stall_s = stall_s
        self.clock = clock
        self._seen: dict[Hashable, _Seen] = {}
        self._lag: dict[Hashable, int] = {}

    def observe(self, tp: Hashable, position: int, end: int) -> None:
        """``position``: the next offset the worker will store; ``end``: the partition's high
        watermark (the offset after its last message)."""
        now = self.clock()
        lag = max(end - position, 0)
        seen = self._seen.get(tp)
        if seen is None or seen.position != position or lag == 0 or self._lag.get(tp, 0) == 0:
            self._seen[tp] = _Seen(position, now)  # moved, idle, or messages just arrived
        self._lag[tp] = lag

    def keep_only(self, tps: Iterable[Hashable]) -> None:
        """Forget the partitions not in ``tps`` (revoked); a partition assigned again starts
        afresh."""
        keep = set(tps)
        for tp in [tp for tp in self._seen if tp not in keep]:
            del self._seen[tp]
            self._lag.pop(tp, None)

    def restart(self) -> None:
        """Start every partition's clock again (after the worker acted on a stall)."""
        now = self.clock()
        for seen in self._seen.values():
            seen.since = now

    def stalled(self) -> list[Hashable]:
        """The partitions with lag whose position has not moved for ``stall_s`` seconds."""
        now = self.clock()
        return sorted((tp for tp, seen in self._seen.items()
                       if self._lag.get(tp, 0) > 0 and now - seen.since >= self.stall_s), key=str)

    def lag(self, tp: Hashable) -> int:
        return self._lag.get(tp, 0)


__all__ = ["StallWatch"]
