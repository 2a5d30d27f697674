"""GS1 EPCIS 2.0 capture over HTTP (``POST /epcis/capture``, issue 17 item 3) on the embedded
service: a document's receiving and consuming events move the stock of the location
registered with the read point's GLN; a document sent again is answered as duplicates (by
eventID, and by GS1's canonical event hash when it has none); a document with one event that
would be refused stores nothing but the refusal; the samples written by others are each
answered 2xx or 4xx, never 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from .support import (
    GTIN_EACH,
    SITE,
    SKU,
    Service,
    future_expiry,
    now,
    post_events,
    setup_master,
    statuses,
    stock_point,
)

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).parent / "epcis_samples"
GLN_W9 = "urn:epc:id:sgln:0614141.00777.0"
LGTIN = "urn:epc:class:lgtin:9501101.002091.{lot}"  # GTIN_EACH's lots as EPC classes


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp("epcis") / "data"
    data.mkdir()
    service = Service(data).start()
    try:
        with service.client("admin") as admin:
            setup_master({"admin": admin}, now() - timedelta(days=2))
            assert statuses(post_events(admin, [{"event_id": "loc-w9", "type": "location_registered",
                                                 "occurred_at": (now() - timedelta(days=2)).isoformat(),
                                                 "location": "W9", "site": SITE, "gln": GLN_W9}])) == ["accepted"]
        yield service
    finally:
        service.stop()


def doc(*events: dict[str, Any]) -> dict[str, Any]:
    return {"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
            "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": now().isoformat(),
            "epcisBody": {"eventList": list(events)}}


def event(step: str, epc_class: str, quantity: float, event_id: str | None, minutes_ago: int,
          where: str = GLN_W9, **extra: Any) -> dict[str, Any]:
    out = {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": step,
           "eventTime": (now() - timedelta(minutes=minutes_ago)).isoformat(), "eventTimeZoneOffset": "+00:00",
           "bizLocation": {"id": where}, "quantityList": [{"epcClass": epc_class, "quantity": quantity}], **extra}
    if event_id is not None:
        out["eventID"] = event_id
    return out


def on_hand(svc: Service) -> float:
    with svc.client("buyer") as buyer:
        return float(stock_point(buyer, SKU, "W9")["on_hand"])


def test_receiving_and_consuming_move_the_stock_and_a_resend_is_a_duplicate(svc: Service) -> None:
    expiry = future_expiry()
    first = doc(event("receiving", f"https://id.gs1.org/01/{GTIN_EACH}/10/LE1", 30, "urn:uuid:rcv-1", 30,
                      ilmd={"cbvmda:itemExpirationDate": expiry}),
                event("consuming", LGTIN.format(lot="LE1"), 2, "urn:uuid:use-1", 20))
    with svc.client("scanner") as scanner:
        r = scanner.post("/epcis/capture", json=first)
        assert r.status_code == 201, r.text
        assert [o["status"] for x in r.json()["results"] for o in x["outcomes"]] == ["accepted", "accepted"]
        assert on_hand(svc) == 28
        again = scanner.post("/epcis/capture", json=first)
        assert again.status_code == 200, again.text
        assert {o["status"] for x in again.json()["results"] for o in x["outcomes"]} == {"duplicate"}
        assert on_hand(svc) == 28


def test_a_document_with_one_refused_event_stores_nothing_but_the_refusal(svc: Service) -> None:
    good = event("consuming", LGTIN.format(lot="LE1"), 1, "urn:uuid:use-2", 10)
    with svc.client("scanner") as scanner:
        before = on_hand(svc)
        unmapped = scanner.post("/epcis/capture", json=doc(good, event("receiving", LGTIN.format(lot="X"), 5,
                                                                         "urn:uuid:rcv-x", 9,
                                                                         where="urn:epc:id:sgln:0614141.00999.0")))
        assert unmapped.status_code == 422, unmapped.text
        body = unmapped.json()
        assert body["code"] == "unknown_location" and [e["index"] for e in body["events"]] == [1]
        expired = scanner.post("/epcis/capture", json=doc(good, event("consuming", LGTIN.format(lot="OLD"), 1,
                                                                        "urn:uuid:use-old", 8,
                                                                        ilmd={"cbvmda:itemExpirationDate": "2020-01-31"})))
        assert expired.status_code == 422, expired.text
        assert expired.json()["code"] == "expired_lot" and [e["index"] for e in expired.json()["events"]] == [1]
        assert on_hand(svc) == before  # the good event beside them was not stored
        alone = scanner.post("/epcis/capture", json=doc(good))
        assert alone.status_code == 201 and on_hand(svc) == before - 1


def test_events_without_an_event_id_are_named_by_their_canonical_hash(svc: Service) -> None:
    nameless = doc(event("receiving", LGTIN.format(lot="LH"), 4, None, 5), event("consuming", LGTIN.format(lot="LH"),
                                                                                  1, None, 4))
    with svc.client("scanner") as scanner:
        before = on_hand(svc)
        assert scanner.post("/epcis/capture", json=nameless).status_code == 201
        again = scanner.post("/epcis/capture", json=nameless)
        assert again.status_code == 200 and {o["status"] for x in again.json()["results"] for o in x["outcomes"]} \
            == {"duplicate"}
        assert [x["eventID"].startswith("ni:///sha-256;") for x in again.json()["results"]] == [True, True]
        assert on_hand(svc) == before + 3


def test_samples_written_by_others_and_bad_documents_get_protocol_answers(svc: Service) -> None:
    with svc.client("scanner") as scanner:
        for path in sorted(SAMPLES.glob("*.jsonld")):
            r = scanner.post("/epcis/capture", content=path.read_bytes(), headers={"Content-Type": "application/ld+json"})
            assert r.status_code in (200, 201, 400, 422), (path.name, r.status_code, r.text)
            if r.status_code >= 400:
                assert r.json()["code"] and r.json()["detail"], (path.name, r.text)
        for body, content in ((b"{not json", "application/json"), (json.dumps({"type": "EPCISDocument",
                              "schemaVersion": "1.2", "epcisBody": {}}).encode(), "application/json"),
                              (b'"a string"', "application/json")):
            r = scanner.post("/epcis/capture", content=body, headers={"Content-Type": content})
            assert r.status_code == 400 and r.json()["code"] == "malformed_body", r.text
    with svc.client("auditor") as auditor:
        assert auditor.post("/epcis/capture", json=doc()).status_code == 403


def test_a_lots_trace_comes_back_in_epcis_form_and_says_what_v1_trace_says(svc: Service) -> None:
    """``GET /epcis/events``: the trace of lot LE1 (received and used by the tests above) as an
    EPCISQueryDocument, the same movements as ``/v1/trace`` in the same order; named as EPCIS
    names it or as we do; narrowed by business step and time; sent back, refused, not counted
    twice."""
    from urllib.parse import quote

    from domain.epc import epc_item, place_key, place_uri

    with svc.client("buyer") as buyer:
        r = buyer.get("/epcis/events", params={"MATCH_anyEPCClass": LGTIN.format(lot="LE1")})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/ld+json") and r.headers["GS1-EPCIS-Version"] == "2.0.0"
        got = r.json()
        assert got["type"] == "EPCISQueryDocument" and got["schemaVersion"] == "2.0"
        events = got["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        ours = buyer.get("/v1/trace", params={"sku": SKU, "lot": "LE1"}).json()["events"]
        moves = [row for row in ours if row["what"] in ("receipt", "usage")]
        assert [e["eventID"] for e in events] == [f"urn:replenish:event:{quote(row['event_id'], safe='')}" for row in moves]
        assert [e["bizStep"] for e in events] == ["receiving"] + ["dispensing"] * (len(moves) - 1)
        assert [e["quantityList"][0]["quantity"] for e in events] == [abs(row["balance_change"]) for row in moves]
        assert {epc_item(e["quantityList"][0]["epcClass"])[0]["lot"] for e in events} == {"LE1"}
        assert {e["bizLocation"]["id"] for e in events} == {place_uri(place_key(GLN_W9) or "")}
        assert events[0]["ilmd"]["cbvmda:lotNumber"] == "LE1" and events[0]["ilmd"]["cbvmda:itemExpirationDate"]
        same = buyer.get("/epcis/events", params={"sku": SKU, "lot": "LE1"}).json()
        assert same["epcisBody"] == got["epcisBody"]
        used = buyer.get("/epcis/events", params={"sku": SKU, "lot": "LE1", "EQ_bizStep": "dispensing"}).json()
        assert used["epcisBody"]["queryResults"]["resultsBody"]["eventList"] == events[1:]
        later = buyer.get("/epcis/events", params={"sku": SKU, "lot": "LE1", "GE_eventTime": now().isoformat()}).json()
        assert later["epcisBody"]["queryResults"]["resultsBody"]["eventList"] == []
        assert buyer.get("/epcis/events", params={"sku": SKU, "lot": "NOPE"}).status_code == 404
        for bad in ({"sku": SKU}, {"MATCH_anyEPCClass": "urn:epc:id:sscc:0614141.1234567890"},
                    {"sku": SKU, "lot": "LE1", "GE_eventTime": "yesterday"},
                    {"MATCH_anyEPCClass": "https://[x/01/09501101020917/10/LE1"},
                    {"MATCH_anyEPCClass": LGTIN.format(lot="LE1"), "sku": SKU}):
            answer = buyer.get("/epcis/events", params=bad)
            assert answer.status_code == 400 and answer.json()["code"] == "malformed", (bad, answer.text)
    with svc.client("scanner") as scanner:
        assert scanner.get("/epcis/events", params={"sku": SKU, "lot": "LE1"}).status_code == 403
        before = on_hand(svc)
        back = scanner.post("/epcis/capture", json=doc(*events))
        assert back.status_code == 422 and back.json()["code"] == "malformed", back.text
        assert "stored already" in back.json()["events"][0]["errors"][0]["message"]
        assert on_hand(svc) == before
