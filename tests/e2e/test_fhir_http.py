"""FHIR R4 over HTTP (issue 17, item 2): a case booked as an Appointment, a delivery as a
SupplyDelivery, the case's use as a Procedure, then a recall of the lot: the same stock, alerts
and trace as the same scenario in our own JSON. And every FHIR R4 sample others wrote
(``tests/e2e/fhir_samples``) is taken or refused with a clear reason, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.fhir import GTIN_SYSTEM, REFUSAL_SYSTEM, SKU_SYSTEM

from .support import (
    GTIN_EACH,
    SKU,
    Service,
    future_expiry,
    iso,
    now,
    post_events,
    setup_master,
    statuses,
)

pytestmark = pytest.mark.e2e

SAMPLES = Path(__file__).parent / "fhir_samples"
OR = "OR2"
FHIR = "application/fhir+json"


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    """Two fresh services: the scenario over FHIR on one, in our JSON on the other."""
    made = []
    try:
        for name in ("fhir", "json"):
            (tmp_path / name).mkdir()
            made.append(Service(tmp_path / name).start())
        yield made[0], made[1]
    finally:
        for s in made:
            s.stop()


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service with the master data, for the tests that need no twin."""
    data = tmp_path_factory.mktemp("fhir") / "data"
    data.mkdir()
    svc = Service(data).start()
    try:
        _master(svc)
        yield svc
    finally:
        svc.stop()


def _master(svc: Service) -> None:
    clients = {role: svc.client(role) for role in ("admin",)}
    setup_master(clients, now() - timedelta(days=2), locations=("W3", OR))
    clients["admin"].close()


def _fhir_scenario(t: Any, expiry: str) -> list[tuple[str, dict[str, Any]]]:
    device = {"resourceType": "Device", "id": "dev1", "udiCarrier": [{"deviceIdentifier": GTIN_EACH}],
              "lotNumber": "LOT-F1", "expirationDate": expiry}
    return [
        ("Appointment", {"resourceType": "Appointment", "identifier": [{"system": "urn:oris:case", "value": "C-77"}],
                         "status": "booked", "created": iso(t), "serviceType": [{"coding": [{"system": "urn:oris:proc", "code": "HIP"}]}],
                         "start": iso(t + timedelta(hours=2)), "end": iso(t + timedelta(hours=4)),
                         "participant": [{"actor": {"reference": f"Location/{OR}"}, "status": "accepted"},
                                         {"actor": {"reference": "Patient/p1"}, "status": "accepted"}]}),
        ("SupplyDelivery", {"resourceType": "SupplyDelivery", "identifier": [{"value": "DESADV-1"}],
                            "status": "completed", "contained": [device],
                            "suppliedItem": {"quantity": {"value": 10}, "itemReference": {"reference": "#dev1"}},
                            "occurrenceDateTime": iso(t - timedelta(hours=1)),
                            "destination": {"reference": f"Location/{OR}"}}),
        ("Procedure", {"resourceType": "Procedure", "identifier": [{"system": "urn:oris:case", "value": "C-77"}],
                       "status": "completed", "subject": {"reference": "Patient/p1"},
                       "performedDateTime": iso(t - timedelta(minutes=30)), "location": {"reference": f"Location/{OR}"},
                       "contained": [device],
                       "focalDevice": [{"action": {"coding": [{"system": "http://hl7.org/fhir/device-action",
                                                               "code": "implanted"}]},
                                        "manipulated": {"reference": "#dev1"}}],
                       "usedCode": [{"coding": [{"system": SKU_SYSTEM, "code": SKU}]}]}),
    ]


def _json_scenario(t: Any, expiry: str) -> list[dict[str, Any]]:
    """The same, as our events (the case id as the FHIR mapping names it: system|value)."""
    case = "C-77"
    return [
        {"event_id": "j-sched", "type": "surgery_scheduled", "occurred_at": iso(t), "case_id": case,
         "procedure": "HIP", "location": OR, "scheduled_for": iso(t + timedelta(hours=2))},
        {"event_id": "j-rcv", "type": "receipt", "occurred_at": iso(t - timedelta(hours=1)), "location": OR,
         "gtin": GTIN_EACH, "lot": "LOT-F1", "expiry": expiry, "quantity": 10},
        {"event_id": "j-use1", "type": "usage", "occurred_at": iso(t - timedelta(minutes=30)), "location": OR,
         "gtin": GTIN_EACH, "lot": "LOT-F1", "expiry": expiry, "quantity": 1, "case_id": case},
        {"event_id": "j-use2", "type": "usage", "occurred_at": iso(t - timedelta(minutes=30)), "location": OR,
         "sku": SKU, "quantity": 1, "case_id": case},
    ]


def _recall(t: Any) -> dict[str, Any]:
    return {"event_id": "recall-f1", "type": "recall_issued", "occurred_at": iso(t), "sku": SKU,
            "lots": ["LOT-F1"], "reference": "FSCA-F1", "recall_class": "II"}


def _state(svc: Service) -> dict[str, Any]:
    with svc.client("auditor") as auditor:
        sp = auditor.get(f"/v1/stock-points/{SKU}/{OR}").json()
        trace = auditor.get("/v1/trace", params={"sku": SKU, "lot": "LOT-F1"}).json()
        alerts = auditor.get("/v1/alerts").json()["alerts"]
    return {"on_hand": sp["on_hand"], "lots": sp["lots"], "quarantined": sp["quarantined"],
            "cases": sorted({str(u.get("case_id")) for u in trace.get("uses", trace.get("events", []))
                             if u.get("case_id")}),
            "trace_cases": sorted(str(c) for c in trace.get("cases", [])),
            "alerts": sorted((a["kind"], str(a["sku"]), str(a["location"]), str(a.get("lot"))) for a in alerts)}


def test_a_case_booked_supplied_and_used_over_fhir_is_the_same_as_in_our_json(twins: tuple[Service, Service]):
    over_fhir, over_json = twins
    t, expiry = now(), future_expiry()
    for svc in twins:
        _master(svc)
    with over_fhir.client("scanner") as scanner:
        for kind, resource in _fhir_scenario(t, expiry):
            r = scanner.post(f"/fhir/r4/{kind}", content=json.dumps(resource), headers={"Content-Type": FHIR})
            assert r.status_code == 201, (kind, r.text)
            assert r.headers["content-type"].startswith(FHIR) and r.json()["resourceType"] == "OperationOutcome"
        # The same resources again: nothing stored twice.
        for kind, resource in _fhir_scenario(t, expiry):
            again = scanner.post(f"/fhir/r4/{kind}", json=resource)
            assert again.status_code == 200, again.text
            assert all("duplicate" in i["diagnostics"] for i in again.json()["issue"])
    with over_json.client("scanner") as scanner:
        assert set(statuses(post_events(scanner, _json_scenario(t, expiry)))) == {"accepted"}
    for svc in twins:
        with svc.client("admin") as admin:
            assert statuses(post_events(admin, [_recall(t)])) == ["accepted"]
    fhir_state, json_state = _state(over_fhir), _state(over_json)
    assert fhir_state == json_state
    # 10 of the lot in, one used from it (the implant), 9 held by the recall; the use coded
    # without a lot (usedCode) is one unit of no lot: the books show it below zero.
    assert fhir_state["quarantined"] == 9 and fhir_state["on_hand"] == -1
    # The trace of the recalled lot names the case, pseudonymised (never in clear).
    (case,) = fhir_state["cases"]
    assert case.startswith("ps_")
    with over_fhir.client("auditor") as auditor:
        trace = auditor.get("/v1/trace", params={"sku": SKU, "lot": "LOT-F1"}).text
    assert "C-77" not in trace and case in trace
    assert ("recall_task", SKU, OR, "None") in fhir_state["alerts"]


def test_a_batch_answers_each_entry_and_a_transaction_stores_all_or_nothing(one: Service):
    svc = one
    t, expiry = now(), future_expiry()
    good = _fhir_scenario(t, expiry)[1][1]
    bad = dict(good, identifier=[{"value": "DESADV-2"}], destination={"display": "Loading dock"})
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"resource": good, "request": {"method": "POST", "url": "SupplyDelivery"}},
                        {"resource": bad, "request": {"method": "POST", "url": "SupplyDelivery"}}]}
    with svc.client("scanner") as scanner:
        r = scanner.post("/fhir/r4", json=bundle)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["type"] == "batch-response"
        assert [e["response"]["status"] for e in body["entry"]] == ["201", "422"]
        refused = body["entry"][1]["response"]["outcome"]["issue"][0]
        assert refused["details"]["coding"] == [{"system": REFUSAL_SYSTEM, "code": "unknown_location"}]
        # A refusal of our domain comes with our code: an item unknown here.
        unknown = dict(good, identifier=[{"value": "DESADV-3"}], contained=[],
                       suppliedItem={"quantity": {"value": 1},
                                     "itemCodeableConcept": {"coding": [{"system": GTIN_SYSTEM,
                                                                         "code": "04012345999990"}]}})
        r = scanner.post("/fhir/r4/SupplyDelivery", json=unknown)
        assert r.status_code == 422
        assert {c["code"] for i in r.json()["issue"] for c in i.get("details", {}).get("coding", [])} \
            == {"unknown_item"}

        # A transaction: all or nothing. An entry that cannot be mapped (no location) or one
        # whose event would be refused (an unknown item) fails the whole Bundle, and the good
        # entry beside it is not stored: posted alone afterwards, it is new.
        def entry(resource: dict) -> dict:
            return {"resource": resource, "request": {"method": "POST", "url": "SupplyDelivery"}}

        fresh = [dict(good, identifier=[{"value": f"DESADV-T{k}"}]) for k in range(4)]
        for other, code in ((dict(bad, identifier=[{"value": "DESADV-T9"}]), "unknown_location"),
                            (dict(unknown, identifier=[{"value": "DESADV-T8"}]), "unknown_item")):
            r = scanner.post("/fhir/r4", json={"resourceType": "Bundle", "type": "transaction",
                                               "entry": [entry(fresh[0]), entry(other)]})
            assert r.status_code == 422, r.text
            issues = r.json()["issue"]
            assert [c["code"] for i in issues for c in i.get("details", {}).get("coding", [])] == [code]
            assert issues[0]["expression"][0].startswith("Bundle.entry[1]")
        assert scanner.post("/fhir/r4/SupplyDelivery", json=fresh[0]).status_code == 201
        r = scanner.post("/fhir/r4", json={"resourceType": "Bundle", "type": "transaction",
                                           "entry": [entry(fresh[1]), entry(fresh[2]), entry(fresh[0])]})
        assert r.status_code == 200, r.text
        assert r.json()["type"] == "transaction-response"
        assert [e["response"]["status"] for e in r.json()["entry"]] == ["201", "201", "200"]


def test_metadata_lists_what_is_taken_and_open_requisitions_are_supply_requests(one: Service):
    svc = one
    with svc.client("auditor") as auditor:
        cap = auditor.get("/fhir/r4/metadata").json()
        assert cap["resourceType"] == "CapabilityStatement" and cap["fhirVersion"] == "4.0.1"
        assert {r["type"] for r in cap["rest"][0]["resource"]} == {
            "SupplyDelivery", "Procedure", "DeviceUseStatement", "Appointment", "SupplyRequest"}
        found = auditor.get("/fhir/r4/SupplyRequest").json()
        assert found["resourceType"] == "Bundle" and found["type"] == "searchset"
    with svc.client("scanner") as scanner:  # posting is for posters, reading requisitions for readers
        assert scanner.get("/fhir/r4/SupplyRequest").status_code == 403
    with svc.client("auditor") as auditor:
        assert auditor.post("/fhir/r4/SupplyDelivery", json={}).status_code == 403


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.json")))
def test_each_fhir_sample_written_by_others_is_taken_or_refused_with_a_reason(one: Service, sample: str):
    svc = one
    resource = json.loads((SAMPLES / sample).read_text())
    with svc.client("scanner") as scanner:
        r = scanner.post(f"/fhir/r4/{resource['resourceType']}", json=resource)
    assert r.status_code < 500, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    if r.status_code >= 400:
        errors = [i for i in body["issue"] if i["severity"] == "error"]
        assert errors and all(len(i["diagnostics"]) > 20 for i in errors), body


def test_bad_bodies_get_an_operation_outcome_never_a_5xx(one: Service):
    svc = one
    with svc.client("scanner") as scanner:
        for body, want in ((b"{not json", 400), (b'{"resourceType": "Procedure"}', 400),
                           (b'{"resourceType": "SupplyDelivery", "status": 7}', 400),
                           (b"[1, 2]", 400), (b'{"resourceType": "Bundle", "type": "batch", "entry": 5}', 400),
                           (b"x" * (10 << 20), 400)):
            path = "/fhir/r4" if b"Bundle" in body else "/fhir/r4/SupplyDelivery"
            r = scanner.post(path, content=body, headers={"Content-Type": FHIR})
            assert r.status_code == want, (body[:60], r.status_code, r.text[:300])
            assert r.json()["resourceType"] == "OperationOutcome"
        r = scanner.post("/fhir/r4/Patient", json={"resourceType": "Patient"})
        assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-supported"
