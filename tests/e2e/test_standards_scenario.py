"""The scenario of issue 17 over the hospital's own standards, against the same in our JSON:
a case booked over HL7 SIU^S12 (python-hl7's MLLP client, over a real socket), a delivery
captured over GS1 EPCIS 2.0, the case's supplies charged over HL7 DFT^P03 (the lot read from
the GS1 element string the OR system scanned), a recall of the delivered lot: the same stock,
alerts and trace as the twin service that got it all as our events; the trace names the case,
pseudonymised, and comes back in EPCIS form too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import hl7
import pytest
from hl7.client import MLLPClient

from .support import (
    GTIN_EACH,
    SKU,
    Service,
    free_port,
    iso,
    now,
    post_events,
    setup_master,
    statuses,
)

pytestmark = pytest.mark.e2e
OR = "OR3"
CASE = "C-91"
LOT = "LOT-S1"
SENDERS = "ORIS@HOSP1:scanner"


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[Service, Service, int]]:
    """Two fresh services: the scenario over HL7 and EPCIS on one (with its MLLP port), in our
    JSON on the other."""
    made = []
    port = free_port()
    try:
        for name, env in (("standards", {"REPLENISH_HL7_PORT": str(port), "REPLENISH_HL7_SENDERS": SENDERS}),
                          ("json", {})):
            (tmp_path / name).mkdir()
            made.append(Service(tmp_path / name, env).start())
        yield made[0], made[1], port
    finally:
        for s in made:
            s.stop()


def hl7_time(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S") + "+0000"


def siu_booking(t: datetime) -> str:
    return "\r".join([
        f"MSH|^~\\&|ORIS|HOSP1|REPLENISH|HOSP1|{hl7_time(t)}||SIU^S12|BOOK-1|P|2.5",
        f"SCH|{CASE}||||||HIP^Hip replacement|||120|min^^^{hl7_time(t + timedelta(hours=2))}",
        "PID|1||PAT-SECRET-9^^^HOSP^MR||ROE^RICHARD",
        "RGS|1",
        f"AIS|1||HIP^Hip replacement|{hl7_time(t + timedelta(hours=2))}",
        f"AIL|1||{OR}^{OR}^^HOSP1",
    ]) + "\r"


def dft_charge(t: datetime, expiry: datetime) -> str:
    scanned = f"(01){GTIN_EACH}(17){expiry.strftime('%y%m%d')}(10){LOT}"
    return "\r".join([
        f"MSH|^~\\&|ORIS|HOSP1|REPLENISH|HOSP1|{hl7_time(t)}||DFT^P03|CHG-1|P|2.5",
        f"EVN|P03|{hl7_time(t)}",
        "PID|1||PAT-SECRET-9^^^HOSP^MR||ROE^RICHARD",
        f"PV1|1|I|{OR}^^^HOSP1|||||||||||||||VISIT-77",
        f"FT1|1|{CASE}||{hl7_time(t)}||CG|{scanned}^Hip implant^GS1|||1||||||{OR}",
    ]) + "\r"


def epcis_delivery(t: datetime, expiry: str) -> dict[str, Any]:
    return {"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
            "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": iso(t),
            "epcisBody": {"eventList": [{
                "type": "ObjectEvent", "action": "OBSERVE", "bizStep": "receiving", "eventID": "urn:uuid:desadv-s1",
                "eventTime": iso(t), "eventTimeZoneOffset": "+00:00",
                "bizLocation": {"id": f"urn:replenish:location:{OR}"},
                "quantityList": [{"epcClass": f"https://id.gs1.org/01/{GTIN_EACH}/10/{LOT}", "quantity": 10}],
                "ilmd": {"cbvmda:itemExpirationDate": expiry}}]}}


def json_scenario(t0: datetime, expiry: str) -> list[dict[str, Any]]:
    """The same, as our events."""
    return [
        {"event_id": "j-book", "type": "surgery_scheduled", "occurred_at": iso(t0), "case_id": CASE,
         "procedure": "HIP", "location": OR, "scheduled_for": iso(t0 + timedelta(hours=2))},
        {"event_id": "j-rcv", "type": "receipt", "occurred_at": iso(t0 + timedelta(minutes=10)), "location": OR,
         "gtin": GTIN_EACH, "lot": LOT, "expiry": expiry, "quantity": 10},
        {"event_id": "j-use", "type": "usage", "occurred_at": iso(t0 + timedelta(minutes=20)), "location": OR,
         "gtin": GTIN_EACH, "lot": LOT, "expiry": expiry, "quantity": 1, "case_id": CASE},
    ]


def recall(t: datetime) -> dict[str, Any]:
    return {"event_id": "recall-s1", "type": "recall_issued", "occurred_at": iso(t), "sku": SKU,
            "lots": [LOT], "reference": "FSCA-S1", "recall_class": "II"}


def state(svc: Service) -> dict[str, Any]:
    with svc.client("auditor") as auditor:
        sp = auditor.get(f"/v1/stock-points/{SKU}/{OR}").json()
        trace = auditor.get("/v1/trace", params={"sku": SKU, "lot": LOT}).json()
        alerts = auditor.get("/v1/alerts").json()["alerts"]
    return {"on_hand": sp["on_hand"], "lots": sp["lots"], "quarantined": sp["quarantined"],
            "reorder_point": sp["reorder_point"],
            "trace": [(r["what"], r.get("location"), r.get("balance_change"), r.get("case_id"))
                      for r in trace["events"] if r["what"] in ("receipt", "usage")],
            "trace_cases": trace["summary"]["cases"], "recalls": trace["summary"]["recalls"],
            "alerts": sorted((a["kind"], str(a["sku"]), str(a["location"]), str(a.get("lot"))) for a in alerts)}


def test_a_case_booked_and_charged_over_hl7_and_supplied_over_epcis_is_the_same_as_in_our_json(
        twins: tuple[Service, Service, int]) -> None:
    standards, ours, port = twins
    t0 = now().replace(microsecond=0) - timedelta(hours=1)
    expiry_day = (t0 + timedelta(days=400)).replace(day=1)
    expiry = expiry_day.date().isoformat()
    for svc in (standards, ours):
        with svc.client("admin") as admin:
            setup_master({"admin": admin}, t0 - timedelta(days=2), ("W3", OR))
    with MLLPClient("127.0.0.1", port) as client:
        booked = hl7.parse(client.send_message(siu_booking(t0)).strip(b"\x0b\x1c\r").decode())
        assert str(booked.segment("MSA")[1]) == "AA", str(booked)
    with standards.client("scanner") as scanner:
        r = scanner.post("/epcis/capture", json=epcis_delivery(t0 + timedelta(minutes=10), expiry))
        assert r.status_code == 201, r.text
    with MLLPClient("127.0.0.1", port) as client:
        charged = hl7.parse(client.send_message(dft_charge(t0 + timedelta(minutes=20), expiry_day))
                            .strip(b"\x0b\x1c\r").decode())
        assert str(charged.segment("MSA")[1]) == "AA", str(charged)
    with ours.client("scanner") as scanner:
        assert set(statuses(post_events(scanner, json_scenario(t0, expiry)))) == {"accepted"}
    for svc in (standards, ours):
        with svc.client("admin") as admin:
            assert statuses(post_events(admin, [recall(t0 + timedelta(minutes=30))])) == ["accepted"]

    over_standards, over_json = state(standards), state(ours)
    assert over_standards == over_json
    # 10 of the lot in, 1 used in the case, the other 9 held by the recall (none usable); the
    # trace names the case, pseudonymised, never in clear, and the patient never reached the store.
    assert over_standards["quarantined"] == 9 and over_standards["on_hand"] == 0
    (case,) = over_standards["trace_cases"]
    assert case.startswith("ps_") and over_standards["recalls"] == ["FSCA-S1"]
    assert ("recall_task", SKU, OR, "None") in over_standards["alerts"]
    with standards.client("auditor") as auditor:
        history = auditor.get(f"/v1/audit/stock-points/{SKU}/{OR}/events").text
        assert CASE not in history and "PAT-SECRET-9" not in history and "ROE" not in history
        pulled = auditor.get("/epcis/events", params={"sku": SKU, "lot": LOT}).json()
    events = pulled["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert [(e["bizStep"], e.get("replenish:caseId")) for e in events] == [("receiving", None), ("dispensing", case)]
