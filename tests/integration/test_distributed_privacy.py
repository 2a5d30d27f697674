"""Case identifiers never reach Kafka in clear from the API: the distributed API pseudonymises
them before producing, and the stored pseudonym is the embedded profile's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.events import pseudonymise
from domain.intake import Principal
from streams.processor import Processor
from streams.store import EventStore, memory_env

from .distributed_world import CASE_ID_KEY, Deployment, wait_for
from .test_profiles_ingest import _api

CASE = "OR-2026-CASE-0042"


def test_a_case_id_posted_to_the_distributed_api_is_a_pseudonym_on_kafka_and_in_the_store(
        deployment: Deployment) -> None:
    d = deployment
    api = _api(d, "distributed")
    admin, scanner = api.client("admin"), api.client("scanner")
    long_ago = "2025-01-01T00:00:00+00:00"
    master = [{"event_id": "item", "type": "item_registered", "occurred_at": long_ago, "sku": "KIT",
               "base_unit": "each"},
              {"event_id": "loc", "type": "location_registered", "occurred_at": long_ago, "location": "OR1",
               "site": "H1"}]
    assert admin.post("/v1/events", json=master).status_code == 200
    use = {"event_id": "use-1", "type": "usage", "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
           "site": "H1", "location": "OR1", "sku": "KIT", "lot": "K1", "quantity": 1, "case_id": CASE}
    r = scanner.post("/v1/events", json=[use])
    assert r.status_code == 200 and r.json()["results"][0]["status"] in ("accepted", "queued"), r.text

    messages = d.read_topic(d.topics.events, 1)
    assert messages and all(CASE.encode() not in m.value() for m in messages)
    expected = pseudonymise(CASE, CASE_ID_KEY.encode())
    assert any(expected.encode() in m.value() for m in messages)

    def stored() -> bool:
        return any((getattr(e, "event", None) or {}).get("event_id") == "use-1"
                   for e in d.store().stream("sp:KIT@OR1"))

    wait_for(stored, 60, f"the use to be stored\n{d.logs()}", every=0.3)
    cases = [e.event.get("case_id") for e in d.store().stream("sp:KIT@OR1") if getattr(e, "event", None)]
    assert expected in cases and CASE not in cases
    # The embedded profile stores the same pseudonym for the same case.
    embedded = Processor(EventStore(env=memory_env()), CASE_ID_KEY.encode())
    admin_p, scanner_p = Principal("a", "admin"), Principal("s", "scanner")
    embedded.process([(e, admin_p) for e in master])
    embedded.process([(use, scanner_p)])
    assert [e.event.get("case_id") for e in embedded.store.stream("sp:KIT@OR1") if getattr(e, "event", None)] == [expected]
    for c in (admin, scanner):
        c.close()
