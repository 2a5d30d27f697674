"""FHIR R4 resources to our events (``streams.fhir``): every resource that validates maps to
events or to the reasons it cannot, never an exception; the same resource maps to the same
event ids (so a resend is a duplicate); the samples others wrote are each taken or refused
with a reason."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import fhir

SAMPLES = Path(__file__).resolve().parents[1] / "e2e" / "fhir_samples"

codings = st.lists(st.fixed_dictionaries({
    "system": st.sampled_from([fhir.GTIN_SYSTEM, fhir.SKU_SYSTEM, "http://snomed.info/sct"]),
    "code": st.text(alphabet="0123456789AB-", min_size=1, max_size=14)}), max_size=3)
concept = st.fixed_dictionaries({"coding": codings})
ref = st.one_of(st.just({"reference": "#d1"}), st.just({"display": "a device"}), st.just({"reference": "Device/zz"}),
                st.builds(lambda s: {"reference": f"Location/{s}"}, st.text(alphabet="AB12", min_size=1, max_size=4)))
when = st.sampled_from(["2026-11-01", "2026-11-01T10:00:00Z", "2026-11-01T10:00:00+02:00"])
device = st.fixed_dictionaries({"resourceType": st.just("Device"), "id": st.just("d1")}, optional={
    "lotNumber": st.text(alphabet="LOT0123", min_size=1, max_size=6),
    "serialNumber": st.text(alphabet="SN0123", min_size=1, max_size=6),
    "expirationDate": st.just("2027-01-01"),
    "udiCarrier": st.lists(st.fixed_dictionaries({"deviceIdentifier": st.text(alphabet="0123456789", min_size=1,
                                                                                max_size=14)}), max_size=2),
    "type": concept})
identifier = st.lists(st.fixed_dictionaries({"value": st.text(alphabet="C-0123", min_size=1, max_size=8)},
                                            optional={"system": st.just("urn:oris:case")}), max_size=2)
delivery = st.fixed_dictionaries(
    {"resourceType": st.just("SupplyDelivery"), "status": st.sampled_from(["completed", "in-progress", "abandoned"])},
    optional={"suppliedItem": st.fixed_dictionaries({}, optional={
        "quantity": st.fixed_dictionaries({"value": st.integers(1, 100)}), "itemCodeableConcept": concept,
        "itemReference": ref}), "destination": ref, "occurrenceDateTime": when,
        "contained": st.lists(device, max_size=1), "identifier": identifier})
procedure = st.fixed_dictionaries(
    {"resourceType": st.just("Procedure"), "status": st.sampled_from(["completed", "in-progress", "preparation"]),
     "subject": st.just({"reference": "Patient/p"})},
    optional={"location": ref, "performedDateTime": when, "contained": st.lists(device, max_size=1),
              "identifier": identifier, "usedCode": st.lists(concept, max_size=2),
              "usedReference": st.lists(ref, max_size=2),
              "focalDevice": st.lists(st.fixed_dictionaries({"manipulated": ref}), max_size=2)})
use_statement = st.fixed_dictionaries(
    {"resourceType": st.just("DeviceUseStatement"), "status": st.sampled_from(["active", "completed", "stopped"]),
     "subject": st.just({"reference": "Patient/p"}), "device": ref},
    optional={"timingDateTime": when, "contained": st.lists(device, max_size=1),
              "extension": st.lists(st.fixed_dictionaries({"url": st.just(fhir.LOCATION_EXTENSION),
                                                           "valueReference": ref}), max_size=1)})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(resource=st.one_of(delivery, procedure, use_statement))
def test_a_valid_resource_maps_to_events_or_reasons_and_the_same_ids_again(resource: dict) -> None:
    if fhir.validate(resource) is not None:
        return  # (the route answers 400 before mapping)
    mapped = fhir.map_resource(resource)
    assert bool(mapped.events) != bool(mapped.problems)
    for problem in mapped.problems:
        assert problem.code in ("malformed", "missing_field", "unknown_item", "unknown_location")
        assert len(problem.message) > 15
    for event in mapped.events:
        assert event["type"] in ("receipt", "usage")
        assert event["location"] and event["occurred_at"] and (event.get("sku") or event.get("gtin"))
        assert event["quantity"] >= 1
        assert "subject" not in event and "Patient" not in json.dumps(event)
    again = fhir.map_resource(resource)
    assert [e["event_id"] for e in again.events] == [e["event_id"] for e in mapped.events]


ours = st.lists(st.fixed_dictionaries({"system": st.sampled_from([fhir.GTIN_SYSTEM, fhir.SKU_SYSTEM]),
                                       "code": st.text(alphabet="0123456789", min_size=14, max_size=14)}),
               min_size=1, max_size=2)
location = st.builds(lambda s: {"reference": f"Location/{s}"}, st.text(alphabet="ABW12", min_size=1, max_size=4))
good_delivery = st.fixed_dictionaries({
    "resourceType": st.just("SupplyDelivery"), "status": st.just("completed"), "identifier": identifier,
    "suppliedItem": st.fixed_dictionaries({"quantity": st.fixed_dictionaries({"value": st.integers(1, 500)}),
                                           "itemCodeableConcept": st.fixed_dictionaries({"coding": ours})}),
    "destination": location, "occurrenceDateTime": when})
good_procedure = st.fixed_dictionaries({
    "resourceType": st.just("Procedure"), "status": st.sampled_from(["completed", "in-progress"]),
    "subject": st.just({"reference": "Patient/p"}), "identifier": identifier, "location": location,
    "performedDateTime": when, "usedCode": st.lists(st.fixed_dictionaries({"coding": ours}), min_size=1, max_size=4)})


@settings(max_examples=200)
@given(resource=st.one_of(good_delivery, good_procedure))
def test_a_complete_resource_is_one_event_per_item_with_its_fields(resource: dict) -> None:
    assert fhir.validate(resource) is None
    mapped = fhir.map_resource(resource)
    assert not mapped.problems
    lines = resource.get("usedCode") or [resource.get("suppliedItem", {}).get("itemCodeableConcept")]
    assert len(mapped.events) == len(lines)
    for event, line in zip(mapped.events, lines, strict=True):
        first = line["coding"][0]
        assert event.get("gtin" if first["system"] == fhir.GTIN_SYSTEM else "sku") == first["code"]
        assert event["location"] == (resource.get("destination") or resource.get("location"))["reference"][9:]
    assert len({e["event_id"] for e in mapped.events}) == len(mapped.events)


def test_every_sample_written_by_others_validates_and_maps_without_failing() -> None:
    names = sorted(SAMPLES.glob("*.json"))
    assert len(names) == 11
    for path in names:
        resource = json.loads(path.read_text())
        assert fhir.validate(resource) is None, path.name
        mapped = fhir.map_resource(resource)
        assert mapped.events or mapped.problems, path.name


def test_a_delivery_of_a_contained_device_is_a_receipt_of_its_gtin_lot_and_expiry() -> None:
    resource = {"resourceType": "SupplyDelivery", "status": "completed", "identifier": [{"value": "D1"}],
                "contained": [{"resourceType": "Device", "id": "d", "udiCarrier": [{"deviceIdentifier": "9501101020917"}],
                               "lotNumber": "L7", "expirationDate": "2027-03-31", "serialNumber": "S1"}],
                "suppliedItem": {"quantity": {"value": 4}, "itemReference": {"reference": "#d"}},
                "occurrenceDateTime": "2026-11-30T08:00:00+01:00", "destination": {"reference": "Location/W3"}}
    (event,) = fhir.map_resource(resource).events
    assert {k: event[k] for k in ("type", "gtin", "lot", "expiry", "serial", "quantity", "location")} == {
        "type": "receipt", "gtin": "09501101020917", "lot": "L7", "expiry": "2027-03-31", "serial": "S1",
        "quantity": 4, "location": "W3"}
    assert event["occurred_at"] == "2026-11-30T08:00:00+01:00"


def test_a_removed_device_is_not_a_use_and_the_case_comes_from_the_identifier() -> None:
    resource = {"resourceType": "Procedure", "status": "completed", "subject": {"reference": "Patient/p"},
                "identifier": [{"system": "urn:oris:case", "value": "C-9"}], "performedDateTime": "2026-11-30",
                "location": {"reference": "Location/OR1"},
                "focalDevice": [{"action": {"coding": [{"code": "removed"}]}, "manipulated": {"reference": "#x"}}],
                "usedCode": [{"coding": [{"system": fhir.SKU_SYSTEM, "code": "SUT-1"}]}]}
    (event,) = fhir.map_resource(resource).events
    assert event["sku"] == "SUT-1" and event["case_id"] == "C-9" and event["type"] == "usage"


def test_a_procedure_sent_again_with_a_device_added_keeps_the_ids_of_what_it_had() -> None:
    base = {"resourceType": "Procedure", "status": "in-progress", "subject": {"reference": "Patient/p"},
            "identifier": [{"value": "C-1"}], "performedDateTime": "2026-11-30", "location": {"reference": "Location/OR1"},
            "usedCode": [{"coding": [{"system": fhir.SKU_SYSTEM, "code": "A"}]}]}
    first = {e["sku"]: e["event_id"] for e in fhir.map_resource(base).events}
    device = {"resourceType": "Device", "id": "b", "identifier": [{"system": fhir.SKU_SYSTEM, "value": "B"}]}
    later = dict(base, status="completed", contained=[device], usedReference=[{"reference": "#b"}])
    second = {e["sku"]: e["event_id"] for e in fhir.map_resource(later).events}
    assert second["A"] == first["A"] and second["B"] not in first.values()


def test_booked_cancelled_and_booked_again_are_three_events_and_a_resend_is_the_same() -> None:
    appt = {"resourceType": "Appointment", "identifier": [{"value": "C-5"}], "status": "booked",
            "start": "2026-12-10T08:00:00Z", "end": "2026-12-10T10:00:00Z",
            "serviceType": [{"coding": [{"code": "HIP"}]}],
            "participant": [{"actor": {"reference": "Location/OR1"}, "status": "accepted"}]}
    versions = [dict(appt, meta={"lastUpdated": "2026-12-01T09:00:00Z"}),
                dict(appt, status="cancelled", meta={"lastUpdated": "2026-12-02T09:00:00Z"}),
                dict(appt, meta={"lastUpdated": "2026-12-03T09:00:00Z"})]
    ids = [fhir.map_resource(v).events[0]["event_id"] for v in versions]
    assert len(set(ids)) == 3
    assert [fhir.map_resource(v).events[0]["event_id"] for v in versions] == ids
    assert [fhir.map_resource(v).events[0]["type"] for v in versions] == [
        "surgery_scheduled", "surgery_cancelled", "surgery_scheduled"]
    with_reason = dict(versions[0], serviceType=[], reasonCode=[{"coding": [{"code": "I49.01"}]}])
    mapped = fhir.map_resource(with_reason)
    assert not mapped.events and "I49.01" not in json.dumps([p.message for p in mapped.problems])


def test_a_bundle_entry_that_did_not_validate_is_never_read_for_another() -> None:
    bad = {"resourceType": "Device", "id": "d", "udiCarrier": ["abc"]}
    good = {"resourceType": "Procedure", "status": "completed", "subject": {"reference": "Patient/p"},
            "performedDateTime": "2026-11-30", "location": {"reference": "Location/OR1"},
            "usedReference": [{"reference": "Device/d"}]}
    entries = [{"resource": bad}, {"resource": good}]
    valid = [e for e in entries if fhir.validate(e["resource"]) is None]
    assert valid == [{"resource": good}]
    mapped = fhir.map_resource(good, fhir.bundle_index(valid))
    assert not mapped.events and mapped.problems[0].code == "unknown_item"
