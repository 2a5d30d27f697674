"""HL7 v2 over MLLP (issue 17, item 1): the OR system's own feed, mapped to our events with the
same validation, refusal codes, de-duplication and roles, and answered with an HL7 ACK.

- **SIU^S12** (booked), **S13** (rescheduled), **S14** (modified) → ``surgery_scheduled`` (a
  repeated one updates the case); **S15** (cancelled) and **S26** (no-show, reason
  ``no_show``) → ``surgery_cancelled``. The case id is SCH-1 (else SCH-2), pseudonymised as any
  case id; the procedure AIS-3 (else SCH-7, the appointment reason); the location AIL-3 (else
  PV1-3): its room (PL.2) when given, else its point of care (PL.1); the time TQ1-7 (else
  AIS-4, else SCH-11's start).
- **DFT^P03**: each FT1 → ``usage``: FT1-7 our SKU, a GTIN (14 digits) or a whole GS1 element
  string (``(01)…(17)…(10)…(21)…`` or without parentheses: GTIN, expiry, lot and serial, read as
  a scan's ``barcode`` is), FT1-10 the quantity,
  FT1-16 the location (its first non-empty component), the case FT1-2 (transaction id), else
  PV1-19 (visit number); the time FT1-4.
- The sender (MSH-3 application ``@`` MSH-4 facility, first components) names a principal with a
  role (``REPLENISH_HL7_SENDERS="ORIS@HOSP1:scanner,..."``); an unknown sender gets ``AR``.
- Patient segments (PID, PV1 but its visit number, …) are dropped here; raw messages are
  never stored or logged.
- Each message is answered: ``AA`` when all its events are accepted, duplicates or queued
  (MSA-3 says which), ``AE`` with an ERR segment per refusal (our codes), ``AR`` when it cannot
  be read (a bad frame, not HL7, an unsupported message type, too large). A message sent
  twice (same sender and MSH-10) gives duplicates: its events' ids are derived from them.
- Times without an offset are read as UTC.

Parsing is python-hl7's (``hl7.parse`` splits fields, repetitions, components and
subcomponents on the message's own separators, MSH-1 and MSH-2); of the escape sequences, those
that stand for a delimiter are decoded here and any other is kept as sent (``_Segment``); the
MLLP framing (``<VT> message <FS><CR>``) is ours, so that a broken frame still gets an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import hl7

from domain.intake import Outcome, Principal

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
MAX_MESSAGE_BYTES = 1 << 20  # larger messages are answered AR (and read to their end)
# FT1-7 holding a whole GS1 element string: its human-readable form "(01)" and 14 digits (more
# AIs after it or not), or AI 01's digits written bare (a symbology identifier before them or
# not) with more AIs after them: GTIN, lot, expiry, serial.
GS1_STRING = re.compile(r"^(\(01\)\d{14}|(\][A-Za-z]\d)?01\d{14}.)")
SCHEDULE_TRIGGERS = {"S12": "surgery_scheduled", "S13": "surgery_scheduled", "S14": "surgery_scheduled",
                     "S15": "surgery_cancelled", "S26": "surgery_cancelled"}


@dataclass
class Mapped:
    """One message read: who sent it, its control id, trigger and version, and its events;
    ``reject`` says why it cannot be taken (then ``AR``)."""

    control_id: str = ""
    message_type: str = ""
    trigger: str = ""
    version: str = "2.5"
    sender: tuple[str, str] = ("", "")
    principal: Principal | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    reject: str | None = None


def parse_senders(text: str) -> dict[tuple[str, str], Principal]:
    """``APP@FACILITY:role[:principal]`` entries, comma-separated."""
    senders = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        who, _, rest = entry.partition(":")
        role, _, name = rest.partition(":")
        app, _, facility = who.partition("@")
        if not app or not role:
            raise ValueError(f"REPLENISH_HL7_SENDERS entry {entry!r} is not APP@FACILITY:role")
        senders[(app, facility)] = Principal(name or f"hl7:{app}@{facility}", role)
    return senders


def _ts(text: str) -> str | None:
    """An HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as ISO 8601 with an offset."""
    m = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?", text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, tz = m.groups()
    try:
        offset = UTC if not tz else timezone(timedelta(hours=int(tz[:3]), minutes=int(tz[0] + tz[3:])))
        t = datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0), tzinfo=offset)
    except ValueError:
        return None
    return t.isoformat()


class _Segment:
    """One segment as python-hl7 parsed it (its fields, repetitions, components and
    subcomponents split on the message's own separators, MSH-1 and MSH-2), read here: a field,
    repetition or component that is absent reads as "". Escape sequences are decoded here, only
    those that stand for a delimiter (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``); any other (formatting,
    hexadecimal, a site's own) is kept as written: two different ids never read the same, and
    nothing of a field is logged (python-hl7's own ``unescape`` logs what it does not know and
    expands ``\\.sp`` without bound)."""

    def __init__(self, segment: Any, escape: str, separators: str) -> None:
        self.segment = segment
        self.escape = escape
        # (segment, field, repetition, component, subcomponent)
        _, field, repetition, component, sub = (separators + "\r|~^&"[len(separators):])[:5]
        self.codes = {"F": field, "S": component, "T": sub, "R": repetition, "E": escape}

    def _raw(self, field: int) -> Any:
        try:
            return self.segment[field]
        except (IndexError, KeyError, TypeError):
            return ""

    def text(self, field: int) -> str:
        """The whole field as written (repetitions and components joined as sent)."""
        text = str(self._raw(field))
        return "" if text == '""' else text

    def components(self, field: int) -> list[str]:
        """The first repetition's components (each its first subcomponent), decoded."""
        value = self._raw(field)
        first = value[0] if isinstance(value, list) and value else value
        if not isinstance(first, list):
            parts: list[Any] = [first]
        else:
            parts = [c[0] if isinstance(c, list) and c else c for c in first]
        out = []
        for part in parts:
            text = self._unescape(str(part if part is not None else "")).strip()
            out.append("" if text == '""' else text)  # HL7's explicit null
        return out

    def component(self, field: int, k: int = 1) -> str:
        """Component ``k`` (from 1) of the field's first repetition."""
        comps = self.components(field)
        return comps[k - 1] if 0 < k <= len(comps) else ""

    def first(self, field: int) -> str:
        """The field's first non-empty component."""
        return next((c for c in self.components(field) if c), "")

    def place(self, field: int) -> str:
        """A PL (point of care ^ room ^ bed ^ facility) as our location id: the room when given
        (an OR suite's theatre), else the point of care."""
        return self.component(field, 2) or self.first(field)

    def _unescape(self, text: str) -> str:
        esc = self.escape
        if not esc or esc not in text:
            return text
        out, i = [], 0
        while i < len(text):
            if text[i] == esc:
                j = text.find(esc, i + 1)
                if j > i and text[i + 1:j] in self.codes:
                    out.append(self.codes[text[i + 1:j]])
                    i = j + 1
                    continue
            out.append(text[i])
            i += 1
        return "".join(out)


def _segments(msg: Any, name: str) -> list[_Segment]:
    escape = getattr(msg, "esc", "\\") or ""
    separators = getattr(msg, "separators", "\r|~^&") or "\r|~^&"
    return [_Segment(s, escape, separators) for s in msg if str(s[0]) == name]


def _event_id(mapped: Mapped, k: int) -> str:
    base = f"{mapped.sender[0]}@{mapped.sender[1]}/{mapped.control_id}"
    digest = hashlib.sha256(base.encode()).hexdigest()[:20]
    return f"hl7-{digest}-{k}"


def read(raw: str, senders: dict[tuple[str, str], Principal], now: datetime) -> Mapped:
    """One message as our events, or why it cannot be taken."""
    mapped = Mapped()
    head = re.search(r"MSH\|[^\r\n]*", raw)
    if head:  # the control id and version for the answer, even when the rest does not parse
        fields = head.group(0).split("|")
        mapped.control_id = fields[9] if len(fields) > 9 else ""
        mapped.version = (fields[11] if len(fields) > 11 else "") or "2.5"
    try:
        msg = hl7.parse(raw.replace("\r\n", "\r").replace("\n", "\r"))
        msg.segment("MSH")  # (raises when there is none)
    except Exception as exc:  # python-hl7 raises several kinds on what is not HL7
        mapped.reject = f"not an HL7 v2 message: {type(exc).__name__}"
        return mapped
    (msh,) = _segments(msg, "MSH")[:1]
    mapped.message_type = msh.component(9, 1)
    mapped.trigger = msh.component(9, 2)
    mapped.control_id = msh.text(10) or mapped.control_id
    mapped.version = msh.first(12) or mapped.version
    mapped.sender = (msh.first(3), msh.first(4))
    mapped.principal = senders.get(mapped.sender)
    if mapped.principal is None:
        mapped.reject = f"unknown sender {mapped.sender[0]}@{mapped.sender[1]} (REPLENISH_HL7_SENDERS)"
        return mapped
    if not mapped.control_id:
        mapped.reject = "no message control id (MSH-10)"
        return mapped
    sent_at = _ts(msh.component(7)) or now.isoformat()
    if mapped.message_type == "SIU" and mapped.trigger in SCHEDULE_TRIGGERS:
        mapped.events = _schedule(msg, mapped, sent_at)
    elif mapped.message_type == "DFT" and mapped.trigger == "P03":
        mapped.events = _charges(msg, mapped, sent_at)
    else:
        mapped.reject = f"unsupported message type {mapped.message_type}^{mapped.trigger} (SIU^S12-S15, S26; DFT^P03)"
    return mapped


def _schedule(msg: Any, mapped: Mapped, sent_at: str) -> list[dict[str, Any]]:
    (sch,) = _segments(msg, "SCH")[:1] or [None]
    if sch is None:
        mapped.reject = "an SIU message without SCH"
        return []
    case_id = sch.first(1) or sch.first(2)
    event: dict[str, Any] = {"event_id": _event_id(mapped, 0), "type": SCHEDULE_TRIGGERS[mapped.trigger],
                             "occurred_at": sent_at, "case_id": case_id}
    if mapped.trigger in ("S15", "S26"):
        if mapped.trigger == "S26":
            event["reason"] = "no_show"
        return [event]
    ais = _segments(msg, "AIS")
    ail = _segments(msg, "AIL")
    tq1 = _segments(msg, "TQ1")
    pv1 = _segments(msg, "PV1")
    procedure = next((p for p in (s.first(3) for s in ais) if p), "") or sch.first(7)
    location = next((p for p in (s.place(3) for s in ail) if p), "") or (pv1[0].place(3) if pv1 else "")
    start = next((t for t in (_ts(s.component(7)) for s in tq1) if t), None) or \
        next((t for t in (_ts(s.component(4)) for s in ais) if t), None) or \
        _ts(sch.component(11, 4))
    event.update({k: v for k, v in (("procedure", procedure), ("location", location), ("scheduled_for", start))
                  if v})
    return [event]


def _charges(msg: Any, mapped: Mapped, sent_at: str) -> list[dict[str, Any]]:
    pv1 = _segments(msg, "PV1")
    visit = pv1[0].first(19) if pv1 else ""
    events = []
    for k, ft1 in enumerate(_segments(msg, "FT1")):
        code = ft1.first(7)
        quantity_text = ft1.first(10)
        try:
            quantity: Any = float(quantity_text) if quantity_text else None
        except ValueError:
            quantity = quantity_text  # refused by the usual check, with its field named
        event: dict[str, Any] = {"event_id": _event_id(mapped, k), "type": "usage",
                                 "occurred_at": _ts(ft1.component(4)) or sent_at,
                                 "location": ft1.first(16), "quantity": quantity}
        if re.fullmatch(r"\d{14}", code):
            event["gtin"] = code
        elif GS1_STRING.match(code):  # a whole element string: read as a scan's barcode is
            event["barcode"] = code
        else:
            event["sku"] = code
        case = ft1.first(2) or visit
        if case:
            event["case_id"] = case
        events.append({k2: v for k2, v in event.items() if v not in ("", None)})
    if not events:
        mapped.reject = "a DFT^P03 message without FT1"
    return events


def ack(mapped: Mapped, outcomes: list[Outcome] | None, now: datetime) -> str:
    """The HL7 ACK of a message: AR with the reason, AE with an ERR per refused event, AA."""
    stamp = now.strftime("%Y%m%d%H%M%S")
    control = mapped.control_id or "UNKNOWN"
    trigger = mapped.trigger or "A01"
    msh = (f"MSH|^~\\&|REPLENISH|REPLENISH|{mapped.sender[0]}|{mapped.sender[1]}|{stamp}||ACK^{trigger}^ACK|"
           f"ACK{hashlib.sha256((control + stamp).encode()).hexdigest()[:12]}|P|{mapped.version}")
    if mapped.reject is not None or outcomes is None:
        return f"{msh}\rMSA|AR|{control}|{_escape(mapped.reject or 'not taken')}\r"
    refused = [o for o in outcomes if o.status == "rejected"]
    if refused:
        errs = "".join(f"ERR|||207^Application internal error^HL70357|E|||{_escape(str(e.get('code')))}: "
                       f"{_escape(str(e.get('message')))} ({_escape(o.event_id or '')})\r"
                       for o in refused for e in o.errors)
        return f"{msh}\rMSA|AE|{control}|{len(refused)} of {len(outcomes)} refused\r{errs}"
    statuses = sorted({o.status for o in outcomes})
    return f"{msh}\rMSA|AA|{control}|{'/'.join(statuses)}\r"


def _escape(text: str) -> str:
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
            .replace("~", "\\R\\").replace("\r", " ").replace("\n", " "))


Submit = Callable[[list[dict[str, Any]], Principal], Awaitable[list[Outcome]]]


class Hl7Listener:
    """The MLLP server: one message at a time per connection, each answered before the next."""

    def __init__(self, submit: Submit, senders: dict[tuple[str, str], Principal], host: str, port: int,
                 allow: tuple[Any, ...] = ()) -> None:
        """``allow``: the networks (``ipaddress``) a sender may connect from (``REPLENISH_HL7_ALLOW``;
        empty: any). MLLP has no authentication: a sender's MSH-3/MSH-4 is a name, its address
        the only thing checked before a message is read."""
        self.submit, self.senders, self.host, self.port = submit, senders, host, port
        self.allow = allow
        self.server: asyncio.AbstractServer | None = None
        self.messages = 0
        self.turned_away = 0

    def allowed(self, peer: Any) -> bool:
        if not self.allow:
            return True
        try:
            address = ipaddress.ip_address(peer[0] if isinstance(peer, tuple) else str(peer))
        except ValueError:
            return False
        return any(address in net for net in self.allow)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_MESSAGE_BYTES * 2)
        log.info("HL7 MLLP listener on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if not self.allowed(peer):
            # Not read, not stored: its first frame (waited for 5 s at most) is answered AR, with
            # why, and the connection closed.
            self.turned_away += 1
            log.warning("HL7 connection from %s refused: not in REPLENISH_HL7_ALLOW", peer[0] if peer else "?")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._frame(reader), 5.0)
                writer.write(START + ack(Mapped(reject="this address may not send HL7 messages here "
                                                       "(REPLENISH_HL7_ALLOW)"), None, datetime.now(UTC)).encode() + END)
                await writer.drain()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        try:
            while True:
                frame = await self._frame(reader)
                if frame is None:
                    return
                try:
                    answer = await self.answer(frame)
                except Exception:  # never a dropped connection without an answer
                    log.exception("HL7 message not answered normally")
                    answer = ack(Mapped(reject="the message could not be handled: send it again"), None,
                                 datetime.now(UTC))
                writer.write(START + answer.encode() + END)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes | None:
        """The next frame's bytes (None at the end of the connection); a frame too large is
        read to its end and returned empty with a marker so that it is answered AR."""
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = await reader.readuntil(END)
                chunks.append(chunk)
                size += len(chunk)
                break
            except asyncio.LimitOverrunError as exc:
                part = await reader.readexactly(exc.consumed)
                size += len(part)
                if size <= MAX_MESSAGE_BYTES:
                    chunks.append(part)
            except asyncio.IncompleteReadError as exc:
                if not exc.partial.strip() and not chunks:
                    return None
                chunks.append(exc.partial + END)  # a truncated frame at the end: answered, then closed
                break
        if size > MAX_MESSAGE_BYTES:
            return b"\x00TOO LARGE"
        return b"".join(chunks)

    async def answer(self, frame: bytes) -> str:
        """The ACK of one frame; never raises."""
        now = datetime.now(UTC)
        self.messages += 1
        if frame == b"\x00TOO LARGE":
            return ack(Mapped(reject=f"message larger than {MAX_MESSAGE_BYTES:,} bytes"), None, now)
        body = frame.removesuffix(END)
        if not body.startswith(START):
            return ack(Mapped(reject="not an MLLP frame (it must begin with 0x0B)"), None, now)
        try:
            text = body[1:].decode("utf-8")
        except UnicodeDecodeError:
            text = body[1:].decode("latin-1")
        # Parsed beside the event loop: a message of a megabyte takes a second or more, and the
        # service's other answers must not wait for it.
        mapped = await asyncio.to_thread(read, text, self.senders, now)
        if mapped.reject is not None or mapped.principal is None:
            return ack(mapped, None, now)
        try:
            outcomes = await self.submit(mapped.events, mapped.principal)
        except Exception as exc:
            log.warning("HL7 message %s not taken: %s", mapped.control_id, type(exc).__name__)
            return ack(Mapped(control_id=mapped.control_id, trigger=mapped.trigger, version=mapped.version,
                              sender=mapped.sender, reject=f"not taken now ({type(exc).__name__}): send it again"),
                       None, now)
        return ack(mapped, outcomes, now)


__all__ = ["END", "MAX_MESSAGE_BYTES", "START", "Hl7Listener", "Mapped", "ack", "parse_senders", "read"]
