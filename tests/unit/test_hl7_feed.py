"""The HL7 v2 reader (``streams.hl7_feed.read``): every real sample of the corpus is mapped or
refused with a reason, never an exception; patient segments never reach an event; any text
gets an ACK."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import hl7
from hypothesis import given
from hypothesis import strategies as st

from streams.hl7_feed import Mapped, ack, parse_senders, read

SAMPLES = Path(__file__).resolve().parents[1] / "e2e" / "hl7_samples"
NOW = datetime(2026, 12, 7, tzinfo=UTC)
SENDERS = parse_senders("SCHApp@GHHSFacility:scanner,BLT_TIE@BLT:scanner,IMMAPP@GHHSFacility:scanner,"
                        "WCDataSend@SENDING_FAC:scanner,GPMS@CTX:scanner")


def test_every_sample_is_mapped_or_refused_with_a_reason_and_no_patient_data_goes_further() -> None:
    files = sorted(SAMPLES.glob("*.hl7"))
    assert len(files) == 12
    mapped = 0
    for f in files:
        raw = f.read_text()
        m = read(raw, SENDERS, NOW)
        assert m.control_id, f.name
        if m.reject is None:
            mapped += 1
            assert m.events, f.name
            for e in m.events:
                assert e["type"] in ("surgery_scheduled", "surgery_cancelled", "usage")
                text = str(e)
                assert "EVERYMAN" not in text and "PATID1234" not in text and "Duck" not in text, f.name
        else:
            assert m.reject, f.name
        hl7.parse(ack(m, None if m.reject else [], NOW))  # every answer is HL7 itself
    assert mapped >= 10


def test_the_room_change_of_s14_moves_the_case_and_s15_cancels_it() -> None:
    book = read((SAMPLES / "siu_s12_ghh_colon_biopsy_book.hl7").read_text(), SENDERS, NOW).events[0]
    moved = read((SAMPLES / "siu_s14_ghh_colon_biopsy_room_change.hl7").read_text(), SENDERS, NOW).events[0]
    cancel = read((SAMPLES / "siu_s15_ghh_colon_biopsy_cancel.hl7").read_text(), SENDERS, NOW).events[0]
    assert (book["case_id"], book["location"], book["procedure"]) == ("12345", "Room01", "76164006")
    assert book["scheduled_for"] == "2021-09-24T09:30:00+02:15"
    assert (moved["case_id"], moved["location"]) == ("12345", "Room02")
    assert (cancel["type"], cancel["case_id"]) == ("surgery_cancelled", "12345")
    again = read((SAMPLES / "siu_s12_ghh_colon_biopsy_book.hl7").read_text(), SENDERS, NOW).events[0]
    assert again["event_id"] == book["event_id"] != moved["event_id"]


@given(st.text(max_size=300))
def test_any_text_is_read_without_an_exception_and_answered(text: str) -> None:
    m = read(text, SENDERS, NOW)
    assert isinstance(m, Mapped)
    answer = ack(m, None if m.reject is not None else [], NOW)
    assert answer.startswith("MSH|^~\\&|REPLENISH|") and "\rMSA|A" in answer


def test_a_sender_from_an_address_not_allowed_is_answered_ar_and_nothing_is_submitted() -> None:
    """REPLENISH_HL7_ALLOW: MLLP has no authentication, so the sender's address is checked
    before anything it sends is read: a connection from elsewhere gets AR, with why, and is
    closed; one from an allowed address is served."""
    import asyncio
    import ipaddress

    from streams.hl7_feed import END, START, Hl7Listener

    submitted: list[object] = []

    async def submit(events: list[object], principal: object) -> list[object]:
        submitted.extend(events)
        return []

    message = (SAMPLES / "siu_s12_ghh_colon_biopsy_book.hl7").read_bytes()

    async def send(allow: tuple[object, ...]) -> bytes:
        listener = Hl7Listener(submit, parse_senders("SCHApp@GHHSFacility:scanner"), "127.0.0.1", 0, allow)
        await listener.start()
        assert listener.server is not None
        port = listener.server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(START + message + END)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(END), 10)
        writer.close()
        await listener.stop()
        return answer

    refused = asyncio.run(send((ipaddress.ip_network("10.99.0.0/16"),)))
    assert b"MSA|AR|" in refused and b"may not send HL7" in refused
    assert submitted == []
    served = asyncio.run(send((ipaddress.ip_network("127.0.0.0/8"),)))
    assert b"may not send HL7" not in served and len(submitted) == 1  # its booking, submitted


def test_ft1_7_takes_our_sku_a_gtin_or_a_whole_gs1_element_string() -> None:
    """A charge's item: our SKU, a GTIN, or what a scanner read off the box (GTIN, expiry,
    lot, serial), which the usual checks read as a scan's barcode."""
    from domain.events import check_envelope

    senders = parse_senders("ORIS@HOSP1:scanner")

    def charge(code: str) -> dict[str, object]:
        raw = "\r".join(["MSH|^~\\&|ORIS|HOSP1|REPLENISH|HOSP1|20261207101500+0000||DFT^P03|C1|P|2.5",
                         "PV1|1|I|OR1^^^HOSP1|||||||||||||||VISIT-1",
                         f"FT1|1|CASE-1||20261207101000+0000||CG|{code}^Gloves^L|||2||||||OR1"]) + "\r"
        (event,) = read(raw, senders, NOW).events
        return event

    assert charge("SUT-2")["sku"] == "SUT-2"
    assert charge("09501101020917")["gtin"] == "09501101020917"
    for code in ("(01)09501101020917(17)271231(10)LOT-7", "0109501101020917172712311" + "0LOT-7",
                 "]d20109501101020917172712311" + "0LOT-7"):
        event = charge(code)
        assert event["barcode"] == code and "sku" not in event and "gtin" not in event
        checked, errors = check_envelope(dict(event), "scanner", NOW.replace(hour=12))
        assert not errors and checked is not None, (code, errors)
        assert (checked["gtin"], checked["lot"], checked["expiry"]) == ("09501101020917", "LOT-7", "2027-12-31")


def test_the_messages_own_separators_and_escapes_are_python_hl7s_to_apply() -> None:
    """A sender may declare other separators in MSH-2 and escape its delimiters (\\T\\ for &,
    \\S\\ for ^): the fields are read as python-hl7 reads them, not split on '^' by hand."""
    senders = parse_senders("ORIS@HOSP1:scanner")
    standard = "\r".join(["MSH|^~\\&|ORIS|HOSP1|REPLENISH|HOSP1|20261207101500+0000||DFT^P03|C7|P|2.5",
                          "FT1|1|CASE\\T\\9\\S\\B||20261207101000+0000||CG|SUT-2^Gloves^L|||2||||||^OR1^^HOSP1"]) + "\r"
    (event,) = read(standard, senders, NOW).events
    assert (event["case_id"], event["sku"], event["location"]) == ("CASE&9^B", "SUT-2", "OR1")
    other = standard.replace("|^~\\&|", "|#~\\&|").replace("^", "#")
    (again,) = read(other, senders, NOW).events
    assert (again["sku"], again["location"], again["quantity"]) == ("SUT-2", "OR1", 2.0)
    assert read(other, senders, NOW).trigger == "P03"


def test_escapes_other_than_delimiters_are_kept_as_written_and_the_control_id_whole() -> None:
    """Only the delimiter escapes are decoded: a site's own or a formatting escape is kept as
    sent, so two different case ids never read the same and nothing is expanded (python-hl7's
    ``unescape`` turns ``\\.sp99999999999\\`` into that many line breaks); MSH-10 is the whole
    field, so control ids differing after a '^' stay two messages."""
    senders = parse_senders("ORIS@HOSP1:scanner")

    def message(control: str) -> str:
        return "\r".join([f"MSH|^~\\&|ORIS|HOSP1|REPLENISH|HOSP1|20261207101500+0000||DFT^P03|{control}|P|2.5",
                          "FT1|1|OR\\2024\\0001||20261207101000+0000||CG|SUT-2|||1||||||OR1",
                          "FT1|2|OR\\2025\\0001||20261207101000+0000||CG|SUT\\.sp99999999999\\2|||1||||||OR1"]) + "\r"

    first = read(message("C1^X"), senders, NOW)
    assert [e["case_id"] for e in first.events] == ["OR\\2024\\0001", "OR\\2025\\0001"]
    assert first.events[1]["sku"] == "SUT\\.sp99999999999\\2"
    second = read(message("C1^Y"), senders, NOW)
    assert (first.control_id, second.control_id) == ("C1^X", "C1^Y")
    assert first.events[0]["event_id"] != second.events[0]["event_id"]
