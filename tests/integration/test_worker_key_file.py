"""A worker follows ``REPLENISH_API_KEYS_FILE`` as the API does (issue 16, section 2): a key
added to the file makes its principal known to the worker at once (the API takes the request
and the worker must not refuse what it produced), a key taken out of the file makes its
principal's later messages refused, and no key ever reaches the worker's log."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streams.topics import PRINCIPAL, REASON

from .distributed_world import SKU, Deployment, master_data, stock, wait_for

FILE_KEY = "it-file-admin-key-0123456789"
LATE_KEY = "it-late-scanner-key-9876543210"


@pytest.fixture
def deployment_settings(tmp_path: Path) -> dict[str, str]:
    keys = tmp_path / "api-keys"
    keys.write_text(f"{FILE_KEY} admin file-admin\n")
    return {"REPLENISH_API_KEYS_FILE": str(keys)}


def test_a_worker_follows_the_principals_of_the_api_key_file(deployment: Deployment) -> None:
    d = deployment
    keys = Path(d.env["REPLENISH_API_KEYS_FILE"])
    worker = d.start_worker()
    worker.wait_assigned()
    d.produce(master_data(), principal="file-admin")  # a principal that only the file names
    wait_for(lambda: {e["event_id"] for e in master_data()} <= d.stored_ids(), 60, f"the master data\n{d.logs()}")

    keys.write_text(f"{FILE_KEY} admin file-admin\n{LATE_KEY} scanner late-scanner\n")
    d.produce([stock("late-1", "receipt", "W1", 5)], principal="late-scanner")  # before any watch turn
    wait_for(lambda: "late-1" in d.stored_ids(), 60, f"late-1 to be stored\n{d.logs()}")

    def reads() -> int:
        return worker.log().count("re-read: ")

    wait_for(lambda: reads() >= 1, 30, "the watcher to see the key added")
    seen = reads()
    keys.write_text(f"{FILE_KEY} admin file-admin\n# late-scanner's key withdrawn\n")
    wait_for(lambda: reads() > seen, 30, "the watcher to see the key withdrawn")
    d.produce_raw(d.topics.events, orjson.dumps(stock("late-2", "usage", "W1", 1)), f"{SKU}@W1",
                  [(PRINCIPAL, b"late-scanner")])
    d.produce([stock("after", "usage", "W1", 1)])
    (dead,) = d.read_topic(d.topics.dead_letter, 1)
    assert dict(dead.headers())[REASON].decode().startswith("unknown principal 'late-scanner'")
    wait_for(lambda: "after" in d.stored_ids(), 60, "the event after it")
    assert "late-2" not in d.stored_ids()
    log = worker.log()
    assert FILE_KEY not in log and LATE_KEY not in log
