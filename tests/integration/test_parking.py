"""Events parked until their reference data is stored (``streams.parking``; issue 14, item 5),
on the real broker and database: a new item's events sent after its item_registered (the
header says so) reach the worker before it. Past ``REPLENISH_REFERENCE_WAIT_SECONDS`` they
are parked by key, not refused, with one ``reference_wait`` alert, while another key of the
same partition goes on; a later event of the key parks behind them; the parked events
outlive a worker killed with SIGKILL; when the item arrives they are decided, in order, and
the alert is resolved."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest

from domain import codes as c
from streams.parking import TABLE
from streams.topics import PRINCIPAL, REFERENCE_OFFSET, route

from .distributed_world import LONG_AGO, Deployment, master_data, stock, wait_for

NEW = "NEWP"


@pytest.fixture
def deployment_settings() -> dict[str, str]:
    return {"REPLENISH_REFERENCE_WAIT_SECONDS": "1"}


def send(d: Deployment, event: dict[str, Any], reference_end: int | None) -> None:
    topic, key = route(event, d.topics, lambda _gtin: None)
    headers = [(PRINCIPAL, b"gw-ward")] + (
        [(REFERENCE_OFFSET, str(reference_end).encode())] if reference_end is not None else [])
    d.produce_raw(topic, orjson.dumps(event), key, headers)
    assert d.producer.flush(30) == 0


def parked(d: Deployment) -> list[int]:
    with psycopg.connect(d.dsn) as conn:
        rows = conn.execute(f"SELECT position FROM {TABLE} WHERE key = %s AND partition LIKE %s ORDER BY position",
                            (f"{NEW}@W1", f"{d.topics.prefix}%")).fetchall()
    return [int(r[0]) for r in rows]


def waits(d: Deployment) -> list[dict[str, Any]]:
    return [a for a in d.processor().alerts() if a["kind"] == c.ALERT_REFERENCE_WAIT]


def test_events_waiting_for_their_item_are_parked_and_resume_in_order_after_a_crash(
        deployment: Deployment) -> None:
    d = deployment
    worker = d.start_worker()
    worker.wait_assigned()
    d.produce(master_data(), principal="gw-erp")
    wait_for(lambda: {e["event_id"] for e in master_data()} <= d.stored_ids(), 60, "the master data")
    end = d.high_watermarks(d.topics.reference)[0]  # the item will be the next reference message

    new = [dict(stock(f"new-{i}", "receipt" if i < 2 else "usage", "W1", 1), sku=NEW) for i in range(3)]
    other = stock("other-1", "receipt", "W2", 5)
    for e in new:
        send(d, e, end + 1)
    send(d, other, end)
    wait_for(lambda: "other-1" in d.stored_ids() and len(parked(d)) == 3, 60,
             f"the other key's event to be stored and the new item's to be parked\n{d.logs()}")
    assert not {e["event_id"] for e in new} & d.stored_ids()  # parked: neither stored nor refused
    (alert,) = waits(d)
    assert alert["status"] == "open" and alert["key"] == f"{NEW}@W1" and 1 <= alert["parked"] <= 3  # (the first batch)

    later = dict(stock("new-3", "usage", "W1", 1), sku=NEW)
    send(d, later, None)  # no header: parked behind the others of its key
    wait_for(lambda: len(parked(d)) == 4, 60, f"the later event to park behind\n{d.logs()}")

    worker.kill()  # the parked events are in the database, not in the worker
    d.start_worker().wait_assigned()
    item = {"event_id": "item-newp", "type": "item_registered", "occurred_at": LONG_AGO, "sku": NEW,
            "base_unit": "each", "lead_time_days": 2}
    d.produce([item], principal="gw-erp")
    ids = [e["event_id"] for e in [*new, later]]
    wait_for(lambda: set(ids) <= d.stored_ids() and parked(d) == [], 60,
             f"the parked events to resume\n{d.logs()}")
    p = d.processor()
    assert [p.event_outcome(i)["status"] for i in ids] == ["accepted"] * 4
    stored = [orjson.loads(n.state)["event"]["event_id"] for n in d.store().notifications()
              if n.topic.endswith("StockPoint.Recorded") and n.originator_id == f"sp:{NEW}@W1"]
    assert stored == ids
    (alert,) = waits(d)
    assert alert["status"] == "resolved"
