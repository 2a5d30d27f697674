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
