"""GS1 EPCIS 2.0 capture's mapping (``streams.epcis``) and identifiers (``domain.epc``): the
samples written by others (tests/e2e/epcis_samples) are each mapped or refused with our code
and a reason, never a failure; identifiers in URN and Digital Link form name the same item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.epc import epc_item, place_key
from streams import epcis

SAMPLES = Path(__file__).resolve().parents[1] / "e2e" / "epcis_samples"
W1 = place_key("urn:epc:id:sgln:0012345.11111.0")
CS = place_key("urn:epc:id:sgln:0614141.00888.0")


def mapped(name: str, places: dict[str, str] | None = None) -> list[epcis.Mapped]:
    doc = json.loads((SAMPLES / name).read_text())
    events, why = epcis.document_events(doc)
    assert events is not None, why
    ids = [e.get("eventID") or f"hash-{i}" for i, e in enumerate(events)]
    return epcis.map_document(events, ids, (places or {}).get)


def codes(m: epcis.Mapped) -> list[str]:
    return [p.code for p in m.problems]


def test_urn_and_digital_link_name_the_same_items_and_places() -> None:
    assert epc_item("urn:epc:class:lgtin:0614141.712345.998877")[0] == \
        epc_item("https://id.gs1.org/01/70614141123451/10/998877")[0] == {"gtin": "70614141123451", "lot": "998877"}
    assert epc_item("urn:epc:id:sgtin:0614141.812345.6789")[0] == {"gtin": "80614141123458", "serial": "6789"}
    assert epc_item("urn:epc:id:sgtin:0614141.812345.A%2FB")[0] == {"gtin": "80614141123458", "serial": "A/B"}
    assert place_key("urn:epc:id:sgln:0614141.12345.0") == place_key("https://id.gs1.org/414/0614141123452") \
        == place_key("0614141123452") == "0614141123452"
    assert place_key("https://example.org/414/0614141123452/254/dock") == "0614141123452/dock"
    assert place_key("0614141123453") is None and place_key("geo:48.1,11.5") is None  # a bad check digit; a point
    for other in ("urn:epc:id:sscc:0614141.1234567890", "urn:epc:id:grai:0614141.12345.400",
                  "urn:epc:id:gsrn:0614141.1234567890", "urn:epc:idpat:sgtin:0614141.812345.*.x"):
        item, why = epc_item(other)
        assert item is None and why


def test_the_standards_receiving_event_becomes_a_receipt_and_its_shipping_one_is_refused_clearly() -> None:
    shipping, receiving = mapped("gs1-Example_9.6.1-ObjectEvent.jsonld", {W1: "W1"})
    assert codes(shipping) == ["unknown_location"] and "both must be our locations" in shipping.problems[0].message
    (receipt,) = receiving.events
    assert (receipt["type"], receipt["location"], receipt["gtin"], receipt["serial"], receipt["quantity"],
            receipt["po_id"]) == ("receipt", "W1", "10614141073464", "2018", 1.0, "12345678")
    assert receipt["occurred_at"] == "2005-04-04T20:33:31.116-06:00"
    assert receipt["event_id"].startswith("epcis-") and receipt["event_id"].endswith("-0")
    (unknown,) = mapped("gs1-Example_9.6.1-ObjectEvent.jsonld")[1:]
    assert codes(unknown) == ["unknown_location"]


def test_every_sample_is_mapped_or_refused_with_our_code() -> None:
    expected = {
        "gs1-Example_9.6.2-ObjectEvent.jsonld": [["unknown_unit"]],  # 200 KGM
        "gs1-Example_9.6.2-ObjectEventWithDigitalLink.jsonld": [["unknown_unit"]],
        "gs1-Example_9.6.4-TransformationEvent.jsonld": [["malformed"]],
        "gs1-transaction_event_all_possible_fields.jsonld": [["malformed"]],  # an error declaration
        "gs1-Example-TransactionEvents-2020_07_03y.jsonld": [["malformed"], ["malformed"]],  # user-defined step
    }
    for path in sorted(SAMPLES.glob("*.jsonld")):
        found = mapped(path.name, {W1: "W1", CS: "CS"})
        for m in found:
            assert m.events or m.problems or m.note, (path.name, m.index)
            assert all(p.code in ("malformed", "missing_field", "unknown_item", "unknown_location", "unknown_unit",
                                  "invalid_quantity") and p.message for p in m.problems)
        if path.name in expected:
            assert [codes(m) for m in found] == expected[path.name], path.name
    various = mapped("hashgen-epcisDocWithVariousEventTypes.jsonld")
    assert various[2].note == "an inspection (in_progress) moves no stock" and not various[2].events


def test_an_event_of_units_in_a_lot_with_its_expiry_in_the_ilmd() -> None:
    ev = {"type": "ObjectEvent", "action": "ADD", "bizStep": "https://ref.gs1.org/cbv/BizStep-receiving",
          "eventTime": "2026-12-01T08:00:00.1415Z", "bizLocation": {"id": "urn:replenish:location:CS"},
          "quantityList": [{"epcClass": "urn:epc:class:lgtin:0614141.712345.L7", "quantity": 12},
                           {"epcClass": "https://id.gs1.org/01/70614141123451", "quantity": 3, "uom": "EA"}],
          "ilmd": {"cbvmda:lotNumber": "L9", "cbvmda:itemExpirationDate": "2028-01-31"},
          "bizTransactionList": [{"type": "urn:epcglobal:cbv:btt:po", "bizTransaction": "urn:epcglobal:cbv:bt:0614141000005:PO-7"}]}
    m = epcis.map_event(0, ev, "E-1", {}.get)
    assert m.problems == []
    assert [(e["lot"], e["quantity"], e["expiry"], e["location"], e["po_id"]) for e in m.events] == [
        ("L7", 12.0, "2028-01-31", "CS", "PO-7"), ("L9", 3.0, "2028-01-31", "CS", "PO-7")]
    consumed = dict(ev, bizStep="consuming", ilmd=None, quantityList=[{"epcClass": "urn:epc:class:lgtin:0614141.712345.L7",
                                                                       "quantity": 2}])
    (use,) = epcis.map_event(1, consumed, "E-2", {}.get).events
    assert (use["type"], use["quantity"], "po_id" in use) == ("usage", 2.0, False)
    damaged = dict(consumed, bizStep="inspecting", disposition="damaged")
    assert epcis.map_event(2, damaged, "E-3", {}.get).events[0]["type"] == "waste"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                                       max_size=4), max_leaves=12)
keys = st.sampled_from(["type", "action", "bizStep", "eventTime", "bizLocation", "readPoint", "epcList",
                        "quantityList", "ilmd", "sourceList", "destinationList", "disposition", "errorDeclaration",
                        "bizTransactionList"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, json_values | st.sampled_from(["ObjectEvent", "ADD", "receiving", "shipping",
                                                            "2026-01-01T00:00:00Z"]), max_size=10) | json_values)
def test_any_event_is_mapped_or_refused_never_a_failure(ev: Any) -> None:
    m = epcis.map_event(0, ev, "E", {"0012345111112": "W1"}.get)
    assert [bool(m.events), bool(m.problems), m.note is not None].count(True) == 1
    for e in m.events:
        assert e["event_id"].startswith("epcis-") and e["quantity"] > 0


def test_a_document_without_event_ids_is_named_by_gs1s_canonical_hash() -> None:
    doc = json.loads((SAMPLES / "hashgen-TimeStampRoundOff.jsonld").read_text())
    for ev in doc["epcisBody"]["eventList"]:
        ev.pop("eventID", None)
    hashes, why = epcis.canonical_hashes(doc)
    assert why is None and hashes is not None and len(hashes) == 3
    assert all(h.startswith("ni:///sha-256;") for h in hashes) and len(set(hashes)) == 3
    assert epcis.canonical_hashes(doc)[0] == hashes  # the same document, the same names
    bad = json.loads((SAMPLES / "gs1-Example-TransactionEvents-2020_07_03y.jsonld").read_text())
    none, reason = epcis.canonical_hashes(bad)  # a context the package cannot read: a reason, not a failure
    assert none is None and reason


def test_locations_are_found_by_gln_and_a_model_pickled_before_glns_finds_them_too() -> None:
    """A location registered with a GLN is found by it (and no longer by an earlier one);
    a catalog pickled by an earlier version (a snapshot, without ``by_gln``) is given one."""
    import pickle
    from datetime import UTC, datetime

    from domain.catalog import Catalog, Location

    catalog = Catalog()
    day = datetime(2025, 1, 1, tzinfo=UTC)
    catalog.register_location(Location("W1", "H1", "W1", "ward", "UTC", None, gln="0614141123452"), day)
    catalog.register_location(Location("W1", "H1", "W1", "ward", "UTC", None, gln="0614141000005"),
                              day.replace(month=2))
    assert catalog.resolve_gln("0614141000005") == "W1" and catalog.resolve_gln("0614141123452") is None
    older = pickle.loads(pickle.dumps(catalog))
    del older.__dict__["by_gln"]
    revived = pickle.loads(pickle.dumps(older))
    assert revived.resolve_gln("0614141000005") == "W1"


BASE = {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping", "eventTime": "2026-01-01T00:00:00Z",
        "bizLocation": {"id": "urn:replenish:location:W1"}, "readPoint": {"id": "urn:replenish:location:W1"},
        "epcList": ["urn:epc:id:sgtin:0614141.812345.6789"],
        "quantityList": [{"epcClass": "urn:epc:class:lgtin:0614141.712345.L1", "quantity": 2}],
        "sourceList": [{"type": "location", "source": "urn:replenish:location:W1"}],
        "destinationList": [{"type": "location", "destination": "urn:replenish:location:W2"}],
        "bizTransactionList": [{"type": "po", "bizTransaction": "PO-1"}], "ilmd": {"cbvmda:lotNumber": "L2"}}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(BASE)), json_values, st.sampled_from(["shipping", "receiving", "consuming"]))
def test_an_otherwise_good_event_with_one_field_of_any_shape_is_mapped_or_refused(name: str, value: Any,
                                                                                  step: str) -> None:
    m = epcis.map_event(0, {**BASE, "bizStep": step, name: value}, "E", {}.get)
    assert [bool(m.events), bool(m.problems), m.note is not None].count(True) == 1


def test_a_gln_names_one_place_a_second_location_claiming_it_is_refused() -> None:
    """EPCIS events are placed by GLN: a location registered with another location's GLN
    (last one winning before) is refused with the owner named; the owner registered again
    without it frees the GLN."""
    from unit_world import ADMIN, World

    from domain import codes as c

    w = World()
    gln = "urn:epc:id:sgln:0614141.12345.0"
    assert w.one(w.location("W7", gln=gln), by=ADMIN).status == c.ACCEPTED
    assert w.one(w.location("W7", gln="https://id.gs1.org/414/0614141123452"), by=ADMIN).status == c.ACCEPTED
    taken = w.one(w.location("W8", gln="https://id.gs1.org/414/0614141123452"), by=ADMIN)
    assert taken.status == c.REJECTED and taken.errors[0]["field"] == "gln"
    assert taken.errors[0]["code"] == c.MALFORMED and "'W7'" in taken.errors[0]["message"]
    assert w.p.ledger.catalog.resolve_gln(place_key(gln) or "") == "W7"
    assert w.one(w.location("W7"), by=ADMIN).status == c.ACCEPTED  # W7 gives it up
    assert w.one(w.location("W8", gln=gln), by=ADMIN).status == c.ACCEPTED
    assert w.p.ledger.catalog.resolve_gln(place_key(gln) or "") == "W8"


def test_each_movement_of_a_trace_becomes_its_epcis_event_and_the_rest_is_counted_out() -> None:
    rows = [
        {"what": "receipt", "event_id": "r1", "occurred_at": "2026-03-01T08:00:00+01:00",
         "recorded_at": "2026-03-01T07:00:01+00:00", "location": "CS", "balance_change": 10.0, "po_id": "PO 7"},
        {"what": "transfer_out", "event_id": "t1", "occurred_at": "2026-03-02T08:00:00+00:00",
         "recorded_at": "2026-03-02T08:00:01+00:00", "location": "CS", "balance_change": -4.0,
         "from_location": "CS", "to_location": "W1"},
        {"what": "transfer_in", "event_id": "t1", "occurred_at": "2026-03-02T08:00:00+00:00",
         "recorded_at": "2026-03-02T08:00:01+00:00", "location": "W1", "balance_change": 4.0,
         "from_location": "CS", "to_location": "W1"},
        {"what": "usage", "event_id": "u1", "occurred_at": "2026-03-03T08:00:00+00:00",
         "recorded_at": "2026-03-03T08:00:01+00:00", "location": "W1", "balance_change": -1.0, "case_id": "pc-1"},
        {"what": "return", "event_id": "b1", "occurred_at": "2026-03-03T09:00:00+00:00",
         "recorded_at": "2026-03-03T09:00:01+00:00", "location": "W1", "balance_change": 1.0},
        {"what": "waste", "event_id": "w1", "occurred_at": "2026-03-04T08:00:00+00:00",
         "recorded_at": "2026-03-04T08:00:01+00:00", "location": "W1", "balance_change": -2.0},
        {"what": "stock_count", "event_id": "c1", "occurred_at": "2026-03-05T08:00:00+00:00",
         "recorded_at": "2026-03-05T08:00:01+00:00", "location": "W1", "quantity": 2.0, "balance_change": 0.0},
        {"what": "refused", "event_id": "x1", "occurred_at": "2026-03-05T09:00:00+00:00",
         "recorded_at": "2026-03-05T09:00:01+00:00", "location": "W1", "codes": ["recalled_lot"]},
        {"what": "alert:recalled_lot_scanned", "event_id": "x1", "occurred_at": "2026-03-05T09:00:00+00:00",
         "recorded_at": "2026-03-05T09:00:01+00:00", "location": "W1"},
    ]
    trace = {"sku": "SUT", "lot": "L/1", "serial": None, "events": rows}
    where = {"CS": "https://id.gs1.org/414/0614141123452", "W1": "urn:replenish:location:W1"}.__getitem__
    events, skipped = epcis.trace_events(trace, "09501101020917", where, expiry="2027-01-31")
    assert skipped == 2
    steps = [(e["bizStep"], e.get("disposition"), e["quantityList"][0]["quantity"]) for e in events]
    assert steps == [("receiving", "in_progress", 10.0), ("shipping", "in_transit", 4.0),
                     ("receiving", "in_progress", 4.0), ("dispensing", "dispensed", 1.0),
                     ("stocking", "available", 1.0), ("destroying", "destroyed", 2.0), ("cycle_counting", None, 2.0)]
    assert {epc_item(e["quantityList"][0]["epcClass"])[0]["lot"] for e in events} == {"L/1"}
    assert events[0]["eventTimeZoneOffset"] == "+01:00" and events[0]["bizLocation"]["id"] == where("CS")
    assert events[0]["ilmd"] == {"cbvmda:lotNumber": "L/1", "cbvmda:itemExpirationDate": "2027-01-31"}
    assert events[0]["bizTransactionList"] == [{"type": "po", "bizTransaction": "urn:replenish:po:PO%207"}]
    # Read back by the capture (under another eventID): the same place, lot, quantity and order.
    (back,) = epcis.map_event(0, events[0], "urn:uuid:elsewhere", {"0614141123452": "CS"}.get).events
    assert (back["type"], back["location"], back["lot"], back["quantity"], back["po_id"]) == \
        ("receipt", "CS", "L/1", 10.0, "PO 7")
    assert events[1]["sourceList"] == [{"type": "location", "source": where("CS")}]
    assert events[1]["destinationList"] == [{"type": "location", "destination": where("W1")}]
    assert events[3]["replenish:caseId"] == "pc-1"
    # No GTIN: our own URIs; a serialised unit: an EPC list, not a quantity.
    unit = {"sku": "IMPL", "lot": None, "serial": "S1", "events": rows[:1]}
    (alone,), _ = epcis.trace_events(unit, None, where)
    assert alone["epcList"] == ["urn:replenish:item:IMPL:serial:S1"] and "quantityList" not in alone
    doc = epcis.query_document(events, "2026-03-06T00:00:00+00:00", skipped)
    assert doc["type"] == "EPCISQueryDocument" and doc["replenish:linesNotInEPCISForm"] == 2
    assert doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"] == events


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.builds(lambda host, rest: f"https://{host}/01/{rest}", st.text(max_size=20),
                                                 st.text(max_size=40))))
def test_any_text_as_an_epc_or_a_place_gets_an_answer_never_an_exception(uri: str) -> None:
    """What a query or a document names (``MATCH_anyEPCClass``, a read point) is read or
    refused with a reason: ``urlparse`` raises on some text (an unbalanced '[' in the host)."""
    found, why = epc_item(uri)
    assert (found is None) != (why is None)
    key = place_key(uri)
    assert key is None or isinstance(key, str)
