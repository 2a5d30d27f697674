"""HL7 v2 over MLLP (issue 17, item 1), through python-hl7's own MLLP client (code nobody here
wrote) over a real socket to ``replenish serve``: real SIU samples book, reschedule, move and
cancel a case; a DFT^P03 charges supplies to a case; each message is answered AA, AE (with our
refusal codes in ERR) or AR, a message sent twice gives duplicates, and what is not HL7 gets an
answer, never a dropped connection."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import hl7
import pytest
from hl7.client import MLLPClient

from .support import SKU, Service, free_port, now, post_events, receipt, setup_master, statuses

pytestmark = pytest.mark.e2e

SAMPLES = Path(__file__).resolve().parent / "hl7_samples"  # copies of the interop corpus (SOURCES.md there)
SENDERS = "SCHApp@GHHSFacility:scanner,ORIS@HOSP1:scanner"


def sample(name: str) -> str:
    path = SAMPLES / name
    if not path.exists():
        pytest.fail(f"the interop sample {path} is missing")
    return path.read_text().replace("\r\n", "\r").replace("\n", "\r").strip("\r") + "\r"


def answer_of(s: socket.socket) -> bytes:
    """One whole MLLP-framed answer from a raw socket (it may come in several pieces)."""
    data = b""
    while not data.endswith(b"\x1c\r"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def msa(answer: bytes) -> tuple[str, str, str, list[str]]:
    """(MSA-1, MSA-2, MSA-3, ERR texts) of an MLLP-framed ACK."""
    text = answer.strip(b"\x0b\x1c\r").decode()
    message = hl7.parse(text)
    m = message.segment("MSA")
    errs = [str(s[7]) for s in message if str(s[0]) == "ERR"]  # ERR-7, diagnostic information
    return str(m[1]), str(m[2]), str(m[3]), errs


def dft(control: str, case: str, code: str, quantity: str, location: str, at: str) -> str:
    return "\r".join([
        f"MSH|^~\\&|ORIS|HOSP1|REPLENISH|HOSP1|{at}||DFT^P03|{control}|P|2.5",
        "EVN|P03|" + at,
        "PID|1||PAT-SECRET-1^^^HOSP^MR||DOE^JANE",
        f"PV1|1|I|OR1^^^HOSP1|||||||||||||||VISIT-{case}",
        f"FT1|1|{case}||{at}||CG|{code}^Nitrile gloves^L|||{quantity}||||||{location}",
    ]) + "\r"


def test_siu_and_dft_over_mllp_with_real_samples_and_hostile_frames(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    service = Service(data, {"REPLENISH_HL7_PORT": str(port), "REPLENISH_HL7_SENDERS": SENDERS}).start()
    try:
        t = now()
        with service.client("admin") as admin, service.client("scanner") as scanner:
            setup_master({"admin": admin}, t - timedelta(days=1), ("W3", "Room01", "Room02"))
            exp = (t + timedelta(days=300)).date().isoformat()
            assert statuses(post_events(scanner, [receipt("h-r", t - timedelta(hours=1), 50, "L1", exp)])) == ["accepted"]
        with MLLPClient("127.0.0.1", port) as client:
            # A real booking, rescheduled, moved to another room, then cancelled (GHH samples).
            for name in ("siu_s12_ghh_colon_biopsy_book.hl7", "siu_s13_ghh_colon_biopsy_reschedule.hl7",
                         "siu_s14_ghh_colon_biopsy_room_change.hl7", "siu_s15_ghh_colon_biopsy_cancel.hl7"):
                code, control, text, errs = msa(client.send_message(sample(name)))
                assert (code, errs) == ("AA", []), (name, text, errs)
                assert control == hl7.parse(sample(name)).segment("MSH")[10][0]
            # Sent again: the same events, duplicates.
            code, _, text, _ = msa(client.send_message(sample("siu_s12_ghh_colon_biopsy_book.hl7")))
            assert (code, text) == ("AA", "duplicate")
            # Supplies charged to a case over DFT^P03: our SKU at our location.
            at = (t - timedelta(minutes=10)).strftime("%Y%m%d%H%M%S") + "+0000"
            code, control, _, errs = msa(client.send_message(dft("D-1", "CASE-9", SKU, "3", "W3", at)))
            assert (code, control, errs) == ("AA", "D-1", [])
            # A charge code that is not an item of ours (the CPT code of the corpus's DFT sample): AE, our code.
            code, _, _, errs = msa(client.send_message(dft("D-2", "CASE-9", "71045", "1", "W3", at)))
            assert code == "AE" and any("unknown_item" in e for e in errs), errs
            # A sender nobody named: AR.
            stranger = sample("siu_s15_barts_renal_cancel.hl7")
            code, control, text, _ = msa(client.send_message(stranger))
            assert code == "AR" and "unknown sender" in text and control == "Q166123117"
        with service.client("auditor") as auditor:  # the charge moved stock; the patient was not kept
            on_hand = auditor.get(f"/v1/stock-points/{SKU}/W3").json()["on_hand"]
            assert on_hand == 47
            history = auditor.get(f"/v1/audit/stock-points/{SKU}/W3/events").text
            assert "PAT-SECRET-1" not in history and "DOE" not in history and "CASE-9" not in history
        # Hostile frames: not HL7, a frame without its start byte, a truncated frame at the end.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"\x0bthis is not HL7\x1c\r")
            assert msa(answer_of(s))[0] == "AR"
            s.sendall(b"MSH|^~\\&|ORIS|HOSP1|X|Y|20260101||SIU^S12|NOSTART|P|2.5\r\x1c\r")
            assert msa(answer_of(s))[0] == "AR"
            s.sendall(b"\x0b" + b"X" * (2 << 20) + b"\x1c\r")  # larger than the limit
            code, _, text, _ = msa(answer_of(s))
            assert code == "AR" and "larger" in text
            s.sendall(b"\x0bMSH|^~\\&|ORIS|HOSP1|X|Y|20260101||DFT^P03|TRUNC|P|2.5\rFT1|1|")
            s.shutdown(socket.SHUT_WR)
            code, control, _, _ = msa(answer_of(s))
            assert code in ("AR", "AE") and control == "TRUNC"
        with service.client() as anyone:  # the service is still up
            assert anyone.get("/healthz").status_code == 200
    finally:
        service.stop()
