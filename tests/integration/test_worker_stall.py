"""A worker that holds partitions with messages waiting and stores nothing (here: its store
writes wait on a lock that a stray session holds) sees it within the stall time, logs it
with every thread's stack, rejoins its group, and, still stalled, exits with code 75 for its
supervisor; a worker started in its place stores every event once."""

from __future__ import annotations

import psycopg
import pytest

from streams.kafka_app import STALL_EXIT_CODE

from .distributed_world import Deployment, master_data, recorded_counts, stock, wait_for

STALL_S = 4


@pytest.fixture
def deployment_settings() -> dict[str, str]:
    return {"REPLENISH_WORKER_STALL_SECONDS": str(STALL_S)}


def test_a_stalled_worker_rejoins_then_exits_for_its_supervisor_and_nothing_is_lost(
        deployment: Deployment) -> None:
    d = deployment
    first = d.start_worker()
    first.wait_assigned()
    d.produce(master_data(), principal="gw-erp")
    wait_for(lambda: {e["event_id"] for e in master_data()} <= d.stored_ids(), 60, "the master data")

    with psycopg.connect(d.dsn) as blocker:
        table = blocker.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE '%events' "
                                "ORDER BY tablename LIMIT 1").fetchone()
        assert table is not None
        blocker.execute(f'LOCK TABLE "{table[0]}" IN ACCESS EXCLUSIVE MODE')  # held until rollback
        events = [stock(f"u-{i}", "receipt", "W1", 1) for i in range(20)]
        d.produce(events)
        wait_for(lambda: not first.alive(), 6 * STALL_S + 30, "the stalled worker to exit")
        blocker.rollback()

    assert first.proc.returncode == STALL_EXIT_CODE
    log = first.log()
    assert "STALL 1: partitions with lag and nothing stored" in log
    assert "leaving and rejoining the consumer group" in log
    assert f"still stalled after rejoining; exiting with code {STALL_EXIT_CODE}" in log
    # The stacks show where it waited: a worker thread in the database, inside a batch's store
    # or inside the idle turn's follow of the log (whichever reached the locked table first).
    stacks = log.split("Thread 0x")[1:]
    waiting = [s for s in stacks if "psycopg" in s and ("in _store" in s or "in _follow_and_flag" in s)]
    assert waiting, "no thread's stack waits in the store:\n" + "\n".join(
        s[:3000] for s in stacks) if stacks else f"no stacks in the log:\n{log[-5000:]}"

    d.start_worker().wait_assigned()
    ids = {e["event_id"] for e in events}
    wait_for(lambda: ids <= d.stored_ids(), 60, f"the events to be stored\n{d.logs()}")
    counts = recorded_counts(d.store())
    assert all(counts[i] == 1 for i in ids)
