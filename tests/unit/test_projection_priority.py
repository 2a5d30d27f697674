"""The read side's CPU priority: ``lower_priority`` lowers the calling thread's, and the threads
it starts afterwards inherit it (how the projection engine's threads end up below ingest)."""

from __future__ import annotations

import os
import threading

import pytest

from projections.service import lower_priority

pytestmark = pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are Linux's")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_a_thread_lowers_its_own_priority_and_its_children_inherit_it() -> None:
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child"] = _nice()

    def parent() -> None:
        seen["before"] = _nice()
        lower_priority(4)
        seen["after"] = _nice()
        t = threading.Thread(target=child)
        t.start()
        t.join()
        lower_priority(50)  # never past 19
        seen["capped"] = _nice()

    t = threading.Thread(target=parent)
    t.start()
    t.join()
    assert seen["after"] == min(19, seen["before"] + 4)
    assert seen["child"] == seen["after"]
    assert seen["capped"] == 19
    assert _nice() == seen["before"]  # the caller of the test is untouched


def test_zero_changes_nothing() -> None:
    seen: list[int] = []

    def run() -> None:
        before = _nice()
        lower_priority(0)
        seen.append(_nice() - before)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [0]


def test_the_api_calls_into_the_engine_run_at_the_read_sides_priority() -> None:
    """``ProjectionService.submit`` (how the API's KPI queries, status checks and rebuilds
    reach the engine) runs them on threads at the follower's lowered priority: the engine's
    pools grow threads from the thread that hands them work, and a request's thread would
    start them at ingest's priority (a CI run once found one)."""
    from projections.service import ProjectionService

    service = ProjectionService("chdb://unused", "db", read=lambda start: iter(()), last_id=lambda: 0,
                                niceness=3)
    caller = _nice()
    seen = {service.submit(_nice).result(timeout=10) for _ in range(8)}
    assert seen == {min(19, caller + 3)}
    assert _nice() == caller


def test_stop_ends_the_call_threads_and_a_later_call_gets_new_ones() -> None:
    """``stop`` shuts the pool of engine calls down (its threads end: a stopped service in a
    long-lived process, as tests and the CLI make, leaves none behind); a call after it, as
    when a service is started again, gets a new pool."""
    import threading

    from projections.service import ProjectionService

    service = ProjectionService("chdb://unused", "db", read=lambda start: iter(()), last_id=lambda: 0)
    assert service.submit(lambda: 1).result(timeout=10) == 1
    assert any(t.name.startswith("projections-call") for t in threading.enumerate())
    service.stop()
    assert not any(t.name.startswith("projections-call") for t in threading.enumerate())
    assert service.submit(lambda: 2).result(timeout=10) == 2
    service.stop()
