"""A Kafka worker's metrics port (``REPLENISH_METRICS_PORT``, issue 16 section 3), scraped after
a known workload and read with ``prometheus_client.parser``: exact counts of events by outcome
and refusal code, the dead letter, the batches, and each partition's lag back at 0; and its
JSON logs (``REPLENISH_LOG_FORMAT=json``)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .distributed_world import KEYS, Deployment, free_port, master_data, stock, wait_for

PORT = free_port()
RECEIPTS = 20


@pytest.fixture
def deployment_settings() -> dict[str, str]:
    return {"REPLENISH_METRICS_PORT": str(PORT)}


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{PORT}/metrics", timeout=5).raise_for_status().text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_worker_serves_its_counts_and_each_partitions_lag(deployment: Deployment) -> None:
    d = deployment
    worker = d.start_worker()
    worker.wait_assigned()
    d.produce(master_data(), principal="gw-erp")
    wait_for(lambda: {e["event_id"] for e in master_data()} <= d.stored_ids(), 60, "the master data")
    events: list[dict[str, Any]] = [stock(f"r-{i}", "receipt", "W1", 1) for i in range(RECEIPTS)]
    events.append(dict(stock("u-unknown", "usage", "W1", 1), sku="NOT-AN-ITEM"))
    d.produce(events)
    d.produce_raw(d.topics.events, b"not json", "W1", [])
    d.producer.flush(30)
    ids = {e["event_id"] for e in events}

    def settled() -> dict[Any, float] | None:
        got = scrape()
        lags = [v for (name, _), v in got.items() if name == "replenish_consumer_lag"]
        done = ids <= d.stored_ids() and got.get(("replenish_dead_letters_total", ()), 0) == 1
        return got if done and lags and not any(lags) else None

    got = wait_for(settled, 60, f"the workload to be stored and the lag to reach 0\n{d.logs()}")
    accepted = got[("replenish_events_total", (("code", "none"), ("outcome", "accepted")))]
    assert accepted == len(master_data()) + RECEIPTS
    assert got[("replenish_events_total", (("code", "unknown_item"), ("outcome", "rejected")))] == 1
    assert got[("replenish_batch_events_sum", ())] == len(master_data()) + RECEIPTS + 1
    partitions = {dict(labels)["partition"] for (name, labels) in got
                  if name == "replenish_consumer_position" and dict(labels)["topic"] == d.topics.events}
    assert len(partitions) == len(d.high_watermarks(d.topics.events))  # one worker holds them all
    assert got[("replenish_store_position", ())] >= len(master_data()) + RECEIPTS


def json_records(log: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_a_workers_json_log_lines_carry_the_partition_offset_and_event_id(deployment: Deployment) -> None:
    """``REPLENISH_LOG_FORMAT=json`` on a worker: its log records (Faust's own included) are JSON
    lines, a dead letter's carries its partition, offset and event id, and no key is logged."""
    d = deployment
    d.env["REPLENISH_LOG_FORMAT"] = "json"
    worker = d.start_worker()
    wait_for(lambda: any(r["message"].startswith("assigned [") for r in json_records(worker.log())), 60,
             f"the worker to be assigned partitions\n{worker.log()[-3000:]}")
    d.produce_raw(d.topics.events, b"not json", "W1", [])
    d.produce_raw(d.topics.events, orjson.dumps(stock("dl-1", "usage", "W1", 1)), "W1", [])  # no principal
    d.producer.flush(30)

    def dead() -> list[dict[str, Any]] | None:
        found = [r for r in json_records(worker.log()) if r["message"].startswith("dead letter")]
        return found if len(found) == 2 else None

    first, second = wait_for(dead, 60, f"two dead letters in the log\n{worker.log()[-3000:]}")
    assert first["partition"] == second["partition"] and first["partition"].startswith(d.topics.events)
    assert second["offset"] == first["offset"] + 1
    assert "event_id" not in first and second["event_id"] == "dl-1"
    assert {"ts", "level", "logger", "message"} <= first.keys() and first["level"] == "warning"
    assert len(json_records(worker.log())) >= 5
    assert not any(key in worker.log() for key in KEYS.values())
