"""Snapshots on the distributed profile (issue 15, item 1): workers write the write model's
snapshots to ``replenish_snapshots`` in the store's database, a worker starts from the newest
valid one plus the log after it, and a row that fails its checksum is ignored, with a log line
that says why."""

from __future__ import annotations

import psycopg
import pytest

from streams.snapshots import TABLE

from .distributed_world import (
    LOCATIONS,
    SKU,
    Api,
    Deployment,
    master_data,
    on_hand,
    stock,
    wait_for,
)


@pytest.fixture
def deployment_settings() -> dict[str, str]:
    return {"REPLENISH_SNAPSHOT_EVERY_EVENTS": "50"}


def rows(d: Deployment) -> list[int]:
    with psycopg.connect(d.dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()
        if exists is None or exists[0] is None:
            return []
        return [r[0] for r in conn.execute(f"SELECT position FROM {TABLE} ORDER BY position")]


def test_a_worker_starts_from_the_newest_valid_snapshot_and_ignores_a_corrupt_one(deployment: Deployment) -> None:
    d = deployment
    first = d.start_worker()
    first.wait_assigned()
    d.produce(master_data(), principal="gw-erp")
    # (a gateway's events carry no reference offset: they wait for nothing, so the master data
    # must be stored before them, as in the other distributed tests)
    wait_for(lambda: {e["event_id"] for e in master_data()} <= d.stored_ids(), 60, "the master data to be stored")
    events = [stock(f"r-{loc}-{i}", "receipt", loc, 5) for loc in LOCATIONS for i in range(20)]
    d.produce(events)
    wait_for(lambda: {e["event_id"] for e in events} <= d.stored_ids(), 60, "the events to be stored")
    wait_for(lambda: rows(d), 60, f"a snapshot row\n{d.logs()}", every=0.5)
    first.stop()

    second = d.start_worker()
    second.wait_assigned()
    assert "from snapshot snapshot-" in second.log() and "and the log after it" in second.log()
    more = [stock(f"u-{loc}", "usage", loc, 2) for loc in LOCATIONS]
    d.produce(more)
    wait_for(lambda: {e["event_id"] for e in more} <= d.stored_ids(), 60, "the later events to be stored")
    second.stop()

    p = d.processor()  # a full replay agrees with what the worker started from a snapshot stored
    assert {loc: on_hand(p, loc) for loc in LOCATIONS} == dict.fromkeys(LOCATIONS, 98.0)

    # The API's model starts from the workers' newest snapshot too, and reads the same stock.
    api = Api(d.env, d.tmp / "api-snapshot.log")
    d.processes.append(api)
    api.wait_ready()
    assert "API: the model rebuilt up to position" in api.log() and "from snapshot snapshot-" in api.log(), \
        api.log()[-3000:]
    with api.client("auditor") as auditor:
        read = {loc: sum(lot["quantity"] for lot in auditor.get(f"/v1/stock-points/{SKU}/{loc}").json()["lots"])
                for loc in LOCATIONS}
    assert read == dict.fromkeys(LOCATIONS, 98.0)
    api.stop()

    with psycopg.connect(d.dsn, autocommit=True) as conn:  # every row corrupted: none is used
        conn.execute(f"UPDATE {TABLE} SET data = set_byte(data, length(data) / 2, "
                     f"(get_byte(data, length(data) / 2) + 1) % 256)")  # one byte of each row changed
    third = d.start_worker()
    third.wait_assigned()
    assert "ignored: its checksum does not match" in third.log()
    assert "from the whole log" in third.log()
