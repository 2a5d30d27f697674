"""The event store's contract, written once and run against each backend.

As the ``eventsourcing`` library tests its recorders, one abstract class holds the tests and
each backend is a subclass that says how to open a fresh, empty store and how to reach its
table underneath (to tamper with a stored row as an attacker with database access would).
The subclasses live in ``test_event_store_contract.py``; this class is not collected itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from domain.intake import Principal
from streams.processor import BatchResult, Processor, verify_store
from streams.store import EventStore

KEY = b"k" * 32
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=365)
ADMIN = Principal("admin-ana", "admin")
SCANNER = Principal("scanner-7", "scanner")
SKU = "GLOVE-M"


def fixed_clock() -> datetime:
    return NOW


def _at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def master_data() -> list[tuple[dict[str, Any], Principal]]:
    item = {"event_id": "item-1", "type": "item_registered", "occurred_at": LONG_AGO.isoformat(),
            "sku": SKU, "gtin": "09501101020917", "gtins": {"box": "09501101020924"},
            "description": "Nitrile gloves, M", "base_unit": "each", "units": {"box": 10},
            "criticality": "high", "lead_time_days": 3}
    locations: list[dict[str, Any]] = [
        {"event_id": f"loc-{loc}", "type": "location_registered", "occurred_at": LONG_AGO.isoformat(),
         "location": loc, "site": "H1", "name": loc, "kind": kind, "timezone": "Europe/Paris", **extra}
        for loc, kind, extra in (("CS", "central_store", {}), ("W1", "ward", {"restocked_from": "CS"}))
    ]
    return [(e, ADMIN) for e in (item, *locations)]


def stock(event_id: str, type_: str, quantity: float, lot: str, minutes_ago: float,
          location: str = "W1", **extra: Any) -> tuple[dict[str, Any], Principal]:
    return ({"event_id": event_id, "type": type_, "occurred_at": _at(minutes_ago), "site": "H1",
             "location": location, "sku": SKU, "lot": lot, "quantity": quantity, **extra}, SCANNER)


def scans() -> list[tuple[dict[str, Any], Principal]]:
    """Receipts, usages and a count over two lots and two stock points; then a recall of one
    lot (an admin's) and a bedside scan of that lot, which is refused (and the refusal stored)."""
    return [
        stock("rcv-1", "receipt", 20, "L1", 60, expiry="2027-06-30"),
        stock("rcv-2", "receipt", 10, "L2", 58, expiry="2027-09-30"),
        stock("rcv-3", "receipt", 30, "L1", 57, location="CS", expiry="2027-06-30"),
        stock("use-1", "usage", 2, "L1", 50),
        stock("use-2", "usage", 3, "L2", 45),
        stock("use-3", "usage", 5, "L1", 44, location="CS"),
        stock("cnt-1", "stock_count", 17, "L1", 40),
        ({"event_id": "recall-1", "type": "recall_issued", "occurred_at": _at(30), "sku": SKU,
          "lots": ["L2"], "reference": "RC-1", "recall_class": "I"}, ADMIN),
        stock("use-4", "usage", 1, "L2", 20),
        stock("use-5", "usage", 1, "L1", 10),
    ]


class EventStoreContract(ABC):
    """Tests every event store backend must pass. Subclasses open the backend."""

    env: dict[str, str]

    # -- what a backend provides -------------------------------------------------------
    @abstractmethod
    def open_backend(self, request: pytest.FixtureRequest) -> dict[str, str]:
        """Prepare a fresh, empty backend for one test; return the store's ``env``."""

    @abstractmethod
    def update_stored_state(self, stream: str, version: int, state: bytes) -> int:
        """Overwrite the ``state`` column of one stored row underneath the store (as SQL
        would); return the number of rows changed."""

    def close_backend(self) -> None:  # noqa: B027 - optional hook
        """Clean up after one test (the fixture that made the backend may do it instead)."""

    # -- harness -----------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _backend(self, request: pytest.FixtureRequest) -> Iterator[None]:
        self._stores: list[EventStore] = []
        self.env = self.open_backend(request)
        try:
            yield
        finally:
            for store in self._stores:
                store.close()
            self.close_backend()

    def open_store(self) -> EventStore:
        store = EventStore(env=self.env)
        self._stores.append(store)
        return store

    def processor(self) -> Processor:
        return Processor(self.open_store(), KEY, clock=fixed_clock)

    @staticmethod
    def stored_event_ids(store: EventStore) -> list[str]:
        """The ``event_id`` of every stored input event (recorded, registered or refused)."""
        ids = []
        for n in store.notifications():
            event = orjson.loads(n.state).get("event")
            if isinstance(event, dict) and "event_id" in event:
                ids.append(event["event_id"])
        return ids

    def fill(self, p: Processor) -> BatchResult:
        seeded = p.process(master_data())
        assert [o.status for o in seeded.outcomes] == ["accepted"] * 3, seeded.outcomes
        result = p.process(scans())
        statuses = {o.event_id: o.status for o in result.outcomes}
        assert statuses["use-4"] == "rejected", result.outcomes  # a recalled lot at the bedside
        assert sum(s == "accepted" for s in statuses.values()) == 9, result.outcomes
        return result

    # -- the contract ------------------------------------------------------------------
    def test_accepted_events_are_stored_once_across_a_resent_batch(self) -> None:
        p = self.processor()
        first = self.fill(p)
        accepted = {o.event_id for o in first.outcomes if o.status == "accepted" and o.event_id}
        accepted |= {e["event_id"] for e, _ in master_data()}
        stored_before = sum(1 for _ in p.store.notifications())
        assert first.stored > 0

        again = p.process(scans())  # the same batch, re-sent
        assert again.stored == 0
        assert {o.event_id: o.status for o in again.outcomes} == {
            o.event_id: ("duplicate" if o.status == "accepted" else o.status) for o in first.outcomes}

        # A restarted processor on the same store knows them too; a mixed batch stores only the new.
        restarted = self.processor()
        mixed = restarted.process([*scans()[:3], stock("use-6", "usage", 1, "L1", 5)])
        assert [o.status for o in mixed.outcomes] == ["duplicate"] * 3 + ["accepted"]

        ids = self.stored_event_ids(self.open_store())
        for event_id in accepted | {"use-6"}:
            assert ids.count(event_id) == 1, (event_id, ids.count(event_id))
        assert ids.count("use-4") == 1  # the refusal is stored once as well
        assert sum(1 for _ in self.open_store().notifications()) == stored_before + mixed.stored

    def test_a_fresh_processor_rebuilds_the_same_state(self) -> None:
        live = self.processor()
        self.fill(live)
        digest = live.state_digest()
        views = {loc: live.stock_point_view(SKU, loc) for loc in ("W1", "CS")}
        assert views["W1"] is not None and views["W1"]["on_hand"] > 0

        rebuilt = self.processor()  # new store object, new connection, replay from the log
        assert rebuilt.state_digest() == digest
        assert {loc: rebuilt.stock_point_view(SKU, loc) for loc in ("W1", "CS")} == views
        assert rebuilt.alerts() == live.alerts()

    def test_verify_store_names_the_stream_and_version_of_a_tampered_row(self) -> None:
        p = self.processor()
        self.fill(p)
        checked, broken = verify_store(p.store)
        assert broken is None
        assert checked == sum(1 for _ in p.store.notifications())

        # Lower the quantity of the stored usage "use-1" (a thief hiding a loss), keeping valid JSON.
        target = next(n for n in p.store.notifications()
                      if (orjson.loads(n.state).get("event") or {}).get("event_id") == "use-1")
        state = orjson.loads(target.state)
        state["event"]["quantity"] = 1
        assert self.update_stored_state(str(target.originator_id), target.originator_version,
                                        orjson.dumps(state)) == 1

        checked, broken = verify_store(self.open_store())
        assert broken is not None
        assert (broken.stream, broken.version) == (target.originator_id, target.originator_version)
        assert broken.stream == "sp:GLOVE-M@W1"
        assert "hash" in broken.reason
