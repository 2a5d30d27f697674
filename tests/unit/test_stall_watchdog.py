"""A worker's liveness check (``streams.liveness.StallWatch`` and
``streams.kafka_app.StallWatchdog``) with a clock of its own: a partition with lag and no
progress for the stall time is stalled; the worker rejoins its group first, and exits for its
supervisor when that did not help; a store that is down is not a stall."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.kafka_app import STALL_EXIT_CODE, StallWatchdog
from streams.liveness import StallWatch
from streams.metrics import WorkerMetrics

TP = ("replenish.events.v1", 0)
TP2 = ("replenish.events.v1", 1)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_partition_with_lag_and_no_progress_is_stalled_after_the_stall_time() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    watch.observe(TP, position=5, end=9)
    clock.t += 29.9
    watch.observe(TP, position=5, end=9)
    assert watch.stalled() == []
    clock.t += 0.2
    assert watch.stalled() == [TP]
    assert watch.lag(TP) == 4


def test_a_partition_without_lag_is_never_stalled_however_long_it_is_idle() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    for _ in range(10):
        watch.observe(TP, position=9, end=9)
        clock.t += 60
    assert watch.stalled() == []
    # messages arrive: the clock starts from the last moment it had none
    watch.observe(TP, position=9, end=12)
    clock.t += 29
    assert watch.stalled() == []


def test_a_revoked_partition_is_forgotten_and_starts_afresh_when_assigned_again() -> None:
    clock = Clock()
    watch = StallWatch(10, clock)
    watch.observe(TP, 0, 5)
    clock.t += 11
    assert watch.stalled() == [TP]
    watch.keep_only([TP2])
    assert watch.stalled() == []
    watch.observe(TP, 0, 5)
    assert watch.stalled() == []


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.floats(0, 20)), max_size=40))
def test_stalled_means_lag_and_an_unmoved_position_for_the_whole_stall_time(
        steps: list[tuple[int, int, float]]) -> None:
    """Against a reference written from the definition: the position has been the same, with
    lag at every observation, for at least ``stall_s`` up to now."""
    clock = Clock()
    watch = StallWatch(15, clock)
    history: list[tuple[float, int, int]] = []
    position = 0
    for advance, lag, wait in steps:
        position += advance
        watch.observe(TP, position, position + lag)
        history.append((clock.t, position, lag))
        clock.t += wait
    if not history:
        assert watch.stalled() == []
        return
    _, last_position, last_lag = history[-1]
    since = history[-1][0]
    for t, pos, lag in reversed(history):
        if pos != last_position or lag == 0:
            break
        since = t
    expected = last_lag > 0 and clock.t - since >= 15
    assert (watch.stalled() == [TP]) == expected


class FakeWorker:
    def __init__(self) -> None:
        self.assigned = {TP, TP2}
        self.next_offset = {TP: 0, TP2: 0}
        self.store_failing_since: float | None = None
        self.config = SimpleNamespace(bootstrap="unused:9092", group_id="g")
        self.metrics: WorkerMetrics | None = None


def watchdog(worker: FakeWorker, clock: Clock, ends: dict[Any, int]) -> tuple[StallWatchdog, list[str]]:
    acted: list[str] = []
    dog = StallWatchdog(worker, 30, watermarks=lambda tp: (0, ends[tp]),  # type: ignore[arg-type]
                        rejoin=lambda: acted.append("rejoin"),
                        exit=lambda code: acted.append(f"exit {code}"), clock=clock)
    return dog, acted


def test_a_stall_makes_the_worker_rejoin_then_exit_for_its_supervisor_if_it_persists() -> None:
    clock, worker = Clock(), FakeWorker()
    ends = {TP: 10, TP2: 0}
    dog, acted = watchdog(worker, clock, ends)
    assert dog.check() == []
    clock.t += 31
    assert dog.check() == [TP]
    assert acted == ["rejoin"] and dog.stalls == 1 and dog.rejoins == 1
    clock.t += 15
    assert dog.check() == []  # the clock started again after the rejoin
    clock.t += 16
    assert dog.check() == [TP]
    assert acted == ["rejoin", f"exit {STALL_EXIT_CODE}"] and dog.stalls == 2


def test_progress_after_a_rejoin_ends_the_stall_and_a_later_one_gets_a_rejoin_again() -> None:
    clock, worker = Clock(), FakeWorker()
    ends = {TP: 100, TP2: 0}
    dog, acted = watchdog(worker, clock, ends)
    dog.check()
    clock.t += 31
    dog.check()
    assert acted == ["rejoin"]
    for _ in range(5):  # the rejoin helped: the partition drains
        clock.t += 20
        worker.next_offset[TP] += 2
        assert dog.check() == []
    clock.t += 31
    assert dog.check() == [TP]
    assert acted == ["rejoin", "rejoin"]


def test_partitions_waiting_while_the_store_fails_are_not_a_stall() -> None:
    clock, worker = Clock(), FakeWorker()
    dog, acted = watchdog(worker, clock, {TP: 10, TP2: 10})
    worker.store_failing_since = clock.t
    dog.check()
    clock.t += 100
    assert dog.check() == [TP, TP2]
    assert acted == [] and dog.stalls == 0


def test_a_partition_never_consumed_is_judged_from_the_start_of_its_log() -> None:
    clock, worker = Clock(), FakeWorker()
    del worker.next_offset[TP2]  # assigned, no tracking record, no batch yet
    dog, acted = watchdog(worker, clock, {TP: 0, TP2: 3})
    dog.check()
    clock.t += 31
    assert dog.check() == [TP2]
    assert acted == ["rejoin"]


def test_the_stall_time_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StallWatch(0, Clock())


def test_the_metrics_port_reads_each_partitions_lag_and_the_stalls_and_rejoins_counted() -> None:
    """What ``REPLENISH_METRICS_PORT`` serves, read back with ``prometheus_client.parser``: the
    lag and position of each partition the watchdog observed (a revoked one drops out), and
    the stall and rejoin it acted on."""
    from prometheus_client.parser import text_string_to_metric_families

    def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = worker.metrics.render().decode()  # type: ignore[union-attr]
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    clock, worker = Clock(), FakeWorker()
    worker.metrics = WorkerMetrics()
    worker.next_offset = {TP: 4, TP2: 7}
    dog, acted = watchdog(worker, clock, {TP: 10, TP2: 7})
    dog.check()
    got = samples()
    part = (("partition", str(TP[1])), ("topic", TP[0]))
    part2 = (("partition", str(TP2[1])), ("topic", TP2[0]))
    assert got[("replenish_consumer_lag", part)] == 6 and got[("replenish_consumer_lag", part2)] == 0
    assert got[("replenish_consumer_position", part)] == 4 and got[("replenish_consumer_position", part2)] == 7
    assert got[("replenish_worker_stalls_total", ())] == 0
    clock.t += 31
    dog.check()
    worker.assigned = {TP}  # TP2 revoked
    dog.check()
    got = samples()
    assert acted == ["rejoin"]
    assert got[("replenish_worker_stalls_total", ())] == 1 and got[("replenish_worker_rejoins_total", ())] == 1
    assert ("replenish_consumer_lag", part2) not in got and got[("replenish_consumer_lag", part)] == 6
