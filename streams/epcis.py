"""GS1 EPCIS 2.0 capture (issue 17, item 3): what a traceability platform or a supplier's
system sends as a JSON-LD ``EPCISDocument``, mapped to our events with the same validation,
refusal codes, de-duplication and roles. A capture document is all or nothing, as a FHIR
transaction (``EmbeddedRunner.submit_all_or_nothing``).

Mapped: ``ObjectEvent`` and ``TransactionEvent`` (action ``ADD`` or ``OBSERVE``) by business
step (CBV short name, ``https://ref.gs1.org/cbv/BizStep-…`` or ``urn:epcglobal:cbv:bizstep:…``):

- ``receiving`` → ``receipt`` at ``bizLocation`` (else ``readPoint``), against the purchase
  order of its ``po`` business transaction;
- ``consuming``, ``dispensing`` → ``usage``; ``decommissioning``, ``destroying`` → ``waste``;
- ``shipping`` → ``transfer`` from the ``location`` source (else ``bizLocation``, else ``readPoint``)
  to the ``location`` destination, both ours (shipping out of the hospital is not mapped);
- ``inspecting`` with a disposition that takes the units out of use (``damaged``,
  ``destroyed``, ``disposed``, ``expired``, ``recalled``, ``non_sellable_other``) → ``waste``;
  any other inspection moves no stock and records nothing.

What: each SGTIN of ``epcList`` (URN or GS1 Digital Link) is one unit with its serial; each
``quantityList`` entry an LGTIN (a lot), an SGTIN pattern or a Digital Link with a GTIN, and a
quantity in units (``uom`` absent, ``EA``, ``H87`` or ``C62``; another unit of measure, such
as ``KGM``, is refused ``unknown_unit``). ``ilmd``'s lot (``…:lotNumber``) and expiry
(``…:itemExpirationDate``, else ``…:bestBeforeDate``) apply to the event's items. Where: a
location registered with that ``gln`` (``location_registered``: GLN, SGLN URN or Digital
Link; an SGLN's extension names a part of a place, and falls back to the place), or
``urn:replenish:location:{our id}``.

Refused with a reason, never a failure: other event types (aggregation, transformation,
association), ``DELETE``, error declarations (corrections of earlier events), business steps
we do not map (user-defined ones included), EPCs that are no trade item (SSCC, GRAI, GIAI,
GSRN, …), places we do not know.

Query (``query_document``, ``GET /epcis/events``): the trace of a lot or a serialised unit
(``streams.traceability.trace``) as an ``EPCISQueryDocument`` of ObjectEvents, so a
traceability platform can pull it: ``receipt`` → ``receiving`` (the lot and expiry in
``ilmd``, the purchase order as a ``po`` business transaction), ``usage`` → ``dispensing``
(the pseudonymised case id as ``replenish:caseId``), ``waste`` → ``destroying``, ``return`` →
``stocking``, ``transfer`` → ``shipping`` at its source and ``receiving`` at its destination,
``stock_count`` → ``cycle_counting``; items by GS1 Digital Link (our ``urn:replenish:item:``
URIs for an item without a GTIN), places by their GLN's Digital Link, else
``urn:replenish:location:{id}``. What is no movement of stock (refused scans, alerts, lot
holds, recalls) stays in ``/v1/trace``; the document says how many such lines it left out.

Event ids: ``epcis-`` + the SHA-256 of the EPCIS ``eventID`` (first 24 hex digits) + the
line within it, so a document sent again is answered ``duplicate``; an event without an
``eventID`` is named by its canonical event hash (GS1's algorithm, computed by the
``epcis-event-hash-generator`` package, its reference implementation, offline: only the
GS1 contexts it ships are read; a document naming another remote context is refused).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from domain.epc import epc_item, item_uri, place_key, place_uri
from streams import traceability
from streams.processor import Processor

MAX_EVENTS = 10_000
TAKEN = ("ObjectEvent", "TransactionEvent")
STEPS = {"receiving": "receipt", "consuming": "usage", "dispensing": "usage", "decommissioning": "waste",
         "destroying": "waste", "shipping": "transfer", "inspecting": "waste"}
OUT_OF_USE = ("damaged", "destroyed", "disposed", "expired", "recalled", "non_sellable_other")
EACH = ("EA", "H87", "C62")
OUR_LOCATION = "urn:replenish:location:"
OUR_EVENT = "urn:replenish:event:"  # the eventIDs of what GET /epcis/events gives out
GS1_CONTEXTS = ("https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
                "https://gs1.github.io/EPCIS/epcis-context.jsonld")


@dataclass
class Problem:
    where: str
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.where, "code": self.code, "message": self.message}


@dataclass
class Mapped:
    """One EPCIS event: the events it becomes, or the problems that refuse it; ``note`` when it
    becomes none and that is no refusal (an inspection that passed)."""

    index: int
    event_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    note: str | None = None


def short(value: Any) -> str:
    """A CBV value's short name: ``receiving`` for ``https://ref.gs1.org/cbv/BizStep-receiving``
    or ``urn:epcglobal:cbv:bizstep:receiving``; other values as they are."""
    text = str(value or "")
    for prefix in ("https://ref.gs1.org/cbv/BizStep-", "https://ref.gs1.org/cbv/Disp-",
                   "https://ref.gs1.org/cbv/SDT-", "https://ref.gs1.org/cbv/BTT-",
                   "urn:epcglobal:cbv:bizstep:", "urn:epcglobal:cbv:disp:", "urn:epcglobal:cbv:sdt:",
                   "urn:epcglobal:cbv:btt:", "cbv:BizStep-", "cbv:Disp-", "cbv:SDT-", "cbv:BTT-"):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def document_events(doc: Any) -> tuple[list[Any] | None, str | None]:
    """The events of an ``EPCISDocument``, or why it is not one we take."""
    if not isinstance(doc, dict) or doc.get("type") != "EPCISDocument":
        return None, "not an EPCIS document: a JSON object with \"type\": \"EPCISDocument\""
    if str(doc.get("schemaVersion", "")) not in ("2.0", "2.0.0"):
        return None, f"EPCIS schemaVersion {doc.get('schemaVersion')!r}: this capture takes 2.0 (JSON-LD)"
    body = doc.get("epcisBody")
    if not isinstance(body, dict):
        return None, "the document has no epcisBody"
    events = body.get("eventList", [body["event"]] if "event" in body else None)
    if not isinstance(events, list):
        return None, "epcisBody holds no eventList"
    if len(events) > MAX_EVENTS:
        return None, f"{len(events):,} events: at most {MAX_EVENTS:,} in one capture"
    lines = sum(len(e.get(k) or []) if isinstance(e, dict) and isinstance(e.get(k) or [], list) else 0
                for e in events for k in ("epcList", "quantityList"))
    if lines > MAX_EVENTS:
        return None, f"{lines:,} identifiers and quantities: at most {MAX_EVENTS:,} in one capture"
    return events, None


def remote_contexts(doc: dict[str, Any]) -> list[str]:
    """The remote JSON-LD contexts a document names other than GS1's (never fetched here)."""
    ctx = doc.get("@context")
    found = ctx if isinstance(ctx, list) else [ctx]
    return [c for c in found if isinstance(c, str) and c not in GS1_CONTEXTS]


_HASH_LOCK = threading.Lock()


def canonical_hashes(doc: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    """GS1's canonical event hash of each event of ``doc`` (``ni:///sha-256;…?ver=CBV2.0``),
    by the reference implementation, or None and why it could not be computed (the package
    fails on some contexts). It keeps module-level state and logs the events it reads through
    the root logger: one call at a time, its records dropped."""
    from epcis_event_hash_generator import file_document_loader, hash_generator, json_to_py
    from pyld import jsonld

    shipped = file_document_loader.file_document_loader()

    def offline(url: str, options: Any = None) -> Any:
        if url not in GS1_CONTEXTS:
            raise jsonld.JsonLdError("not fetched: only GS1's EPCIS contexts are read", "jsonld.LoadDocumentError",
                                     code="loading document failed")
        return shipped(url, options or {})

    def quiet(record: logging.LogRecord) -> bool:
        return "epcis_event_hash_generator" not in record.pathname and "pyld" not in record.pathname

    root = logging.getLogger()
    with _HASH_LOCK:
        jsonld.set_document_loader(offline)
        root.addFilter(quiet)
        try:  # (on a copy: it rewrites values in place)
            events = json_to_py.event_list_from_epcis_document_json(copy.deepcopy(doc))
            hashes = list(hash_generator.epcis_hashes_from_events(events))
        except Exception as exc:  # (its errors are of every kind: a context it cannot read, say)
            return None, f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            root.removeFilter(quiet)
    if len(hashes) != len(doc["epcisBody"].get("eventList") or [None]):
        return None, "it skipped events it could not read"
    return hashes, None


def _event_id(epcis_id: str, k: int) -> str:
    return f"epcis-{hashlib.sha256(epcis_id.encode()).hexdigest()[:24]}-{k}"


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _id_of(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else None


def _ilmd(ev: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in (ev.get("ilmd") or {}).items() if isinstance(ev.get("ilmd"), dict) else ():
        name = str(key).rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        if name == "lotNumber" and value:
            found["lot"] = str(value)
        elif name == "itemExpirationDate" and value:
            found["expiry"] = str(value)[:10]
        elif name == "bestBeforeDate" and value:
            found.setdefault("expiry", str(value)[:10])
    return found


def _po(ev: dict[str, Any]) -> str | None:
    for bt in _listed(ev.get("bizTransactionList")):
        if isinstance(bt, dict) and short(bt.get("type")).rsplit("-", 1)[-1].rsplit(":", 1)[-1] == "po":
            ref = str(bt.get("bizTransaction") or "")
            return unquote(ref.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]) or None
    return None


def _typed(entries: Any, kind: str, key: str) -> str | None:
    for e in _listed(entries):
        if isinstance(e, dict) and short(e.get("type")).rsplit(":", 1)[-1] == kind and e.get(key):
            return str(e[key])
    return None


Place = Callable[[str], str | None]  # a place key (domain.epc) -> our location id, or None


def _location(uri: Any, resolve: Place) -> str | None:
    if not isinstance(uri, str):
        return None
    if uri.startswith(OUR_LOCATION):
        return uri[len(OUR_LOCATION):] or None
    key = place_key(uri)
    if key is None:
        return None
    return resolve(key) or (resolve(key.split("/", 1)[0]) if "/" in key else None)


def map_event(index: int, ev: Any, epcis_id: str, resolve: Place) -> Mapped:
    """One EPCIS event as our events (the module's docstring)."""
    out = Mapped(index, epcis_id)
    where = f"eventList[{index}]"
    if not isinstance(ev, dict):
        out.problems.append(Problem(where, "malformed", "an EPCIS event is a JSON object"))
        return out
    if epcis_id.startswith(OUR_EVENT):  # pulled from GET /epcis/events and sent back
        out.problems.append(Problem(f"{where}.eventID", "malformed", "an event this service gave out (GET "
                                    f"/epcis/events): it is stored already, as event {unquote(epcis_id[len(OUR_EVENT):])}"))
        return out
    kind = ev.get("type")
    if kind not in TAKEN:
        out.problems.append(Problem(f"{where}.type", "malformed", f"{kind or 'an event without a type'} is not mapped: "
                                    "this capture takes ObjectEvent and TransactionEvent"))
        return out
    if ev.get("errorDeclaration"):
        out.problems.append(Problem(f"{where}.errorDeclaration", "malformed", "an error declaration (a correction "
                                    "of an earlier event) is not taken: send the events that undo it"))
        return out
    if ev.get("action") not in ("ADD", "OBSERVE"):
        out.problems.append(Problem(f"{where}.action", "malformed", f"action {ev.get('action')!r}: ADD or OBSERVE"))
        return out
    step = short(ev.get("bizStep"))
    mapped_type = STEPS.get(step)
    if mapped_type is None:
        out.problems.append(Problem(f"{where}.bizStep", "malformed", f"business step {step or '(none)'!r} is not "
                                    f"mapped: one of {', '.join(STEPS)}"))
        return out
    if step == "inspecting" and short(ev.get("disposition")) not in OUT_OF_USE:
        out.note = f"an inspection ({short(ev.get('disposition')) or 'no disposition'}) moves no stock"
        return out
    for name in ("epcList", "quantityList", "bizTransactionList", "sourceList", "destinationList"):
        if ev.get(name) is not None and not isinstance(ev[name], list):
            out.problems.append(Problem(f"{where}.{name}", "malformed", f"{name} must be a list"))
    for name in ("bizLocation", "readPoint", "ilmd"):
        if ev.get(name) is not None and not isinstance(ev[name], dict):
            out.problems.append(Problem(f"{where}.{name}", "malformed", f"{name} must be an object"))
    if out.problems:
        return out
    at = ev.get("eventTime")
    if not isinstance(at, str):
        out.problems.append(Problem(f"{where}.eventTime", "missing_field", "says not when it happened"))
        return out
    place: dict[str, Any] = {}
    here_uri = _id_of(ev.get("bizLocation")) or _id_of(ev.get("readPoint"))
    if mapped_type == "transfer":
        src_uri = _typed(ev.get("sourceList"), "location", "source") or here_uri
        dst_uri = _typed(ev.get("destinationList"), "location", "destination")
        src, dst = _location(src_uri, resolve), _location(dst_uri, resolve)
        if src is None or dst is None:
            out.problems.append(Problem(f"{where}.destinationList" if src else f"{where}.readPoint", "unknown_location",
                                        f"shipping from {src_uri!r} to {dst_uri!r}: both must be our locations "
                                        "(a location registered with that gln, or urn:replenish:location:{id})"))
            return out
        place = {"from_location": src, "to_location": dst}
    else:
        here = _location(here_uri, resolve)
        if here is None:
            out.problems.append(Problem(f"{where}.bizLocation", "unknown_location",
                                        f"{here_uri!r} is none of our locations: register it with that gln, or "
                                        "send urn:replenish:location:{id}"))
            return out
        place = {"location": here}
    extra = _ilmd(ev)
    po = _po(ev)
    lines: list[tuple[dict[str, Any], float, str | None]] = []
    for n, epc in enumerate(_listed(ev.get("epcList"))):
        item, why = epc_item(epc)
        if item is None:
            out.problems.append(Problem(f"{where}.epcList[{n}]", "unknown_item", str(why)))
            continue
        lines.append((item, 1.0, None))
    for n, q in enumerate(_listed(ev.get("quantityList"))):
        if not isinstance(q, dict):
            out.problems.append(Problem(f"{where}.quantityList[{n}]", "malformed", "a quantity element is an object"))
            continue
        item, why = epc_item(q.get("epcClass"))
        if item is None:
            out.problems.append(Problem(f"{where}.quantityList[{n}].epcClass", "unknown_item", str(why)))
            continue
        uom = q.get("uom")
        if uom is not None and uom not in EACH:
            out.problems.append(Problem(f"{where}.quantityList[{n}].uom", "unknown_unit",
                                        f"unit of measure {uom!r}: quantities are taken in units (EA, H87, C62)"))
            continue
        quantity = q.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int | float) or quantity <= 0:
            out.problems.append(Problem(f"{where}.quantityList[{n}].quantity", "invalid_quantity",
                                        f"quantity {quantity!r}: a number above 0"))
            continue
        lines.append((item, float(quantity), uom))
    if not lines and not out.problems:
        out.problems.append(Problem(f"{where}.epcList", "missing_field", "names no item (epcList or quantityList)"))
    if out.problems:
        return out
    for k, (item, quantity, _) in enumerate(lines):
        event: dict[str, Any] = {"event_id": _event_id(epcis_id, k), "type": mapped_type, "occurred_at": at,
                                 **place, "quantity": quantity, **{f: v for f, v in extra.items() if f not in item},
                                 **item}
        if po and mapped_type == "receipt":
            event["po_id"] = po
        out.events.append(event)
    return out


def map_document(events: list[Any], ids: list[str], resolve: Place) -> list[Mapped]:
    """Each EPCIS event of a document (``document_events``), with its id (``eventID``, else its
    canonical hash)."""
    return [map_event(i, ev, ids[i], resolve) for i, ev in enumerate(events)]


# -- query: the trace of a lot in EPCIS form ------------------------------------------------
CONTEXT = [GS1_CONTEXTS[0], {"replenish": "urn:replenish:epcis:"}]
# trace line -> (business step, disposition)
QUERY_STEPS = {"receipt": ("receiving", "in_progress"), "usage": ("dispensing", "dispensed"),
               "waste": ("destroying", "destroyed"), "return": ("stocking", "available"),
               "transfer_out": ("shipping", "in_transit"), "transfer_in": ("receiving", "in_progress"),
               "stock_count": ("cycle_counting", None)}
Where = Callable[[str], str]  # our location id -> its EPCIS place URI


def _quote(text: str) -> str:
    return quote(text, safe="")


def _offset(at: str) -> str:
    """An ISO instant's offset as EPCIS's eventTimeZoneOffset (``+00:00`` when none is given)."""
    off = datetime.fromisoformat(at).utcoffset()
    if off is None:
        return "+00:00"
    minutes = int(off.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def trace_events(trace: dict[str, Any], gtin: str | None, where: Where,
                 expiry: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """The stock movements of a trace (``streams.traceability.trace``) as EPCIS ObjectEvents,
    in recording order, and how many of its lines are no movement (left out)."""
    sku = trace["sku"]
    out: list[dict[str, Any]] = []
    skipped = 0
    for row in trace["events"]:
        step = QUERY_STEPS.get(row.get("what", ""))
        if step is None or not row.get("occurred_at") or not row.get("location"):
            skipped += 1
            continue
        lot, serial = row.get("lot") or trace.get("lot"), row.get("serial") or trace.get("serial")
        if row["what"] == "stock_count":
            qty = row.get("quantity")
        else:
            qty = abs(row.get("balance_change") or 0) or row.get("quantity")
        ev: dict[str, Any] = {
            "type": "ObjectEvent", "eventID": f"{OUR_EVENT}{_quote(str(row.get('event_id')))}",
            "eventTime": row["occurred_at"], "eventTimeZoneOffset": _offset(row["occurred_at"]),
            "recordTime": row["recorded_at"], "action": "OBSERVE", "bizStep": step[0]}
        if step[1] is not None:
            ev["disposition"] = step[1]
        if serial:
            ev["epcList"] = [item_uri(gtin, serial=serial, sku=sku)]
        elif lot:
            ev["quantityList"] = [{"epcClass": item_uri(gtin, lot=lot, sku=sku),
                                   "quantity": qty, "uom": "EA"}]
        place = {"id": where(row["location"])}
        ev["readPoint"], ev["bizLocation"] = place, place
        if row["what"] in ("transfer_out", "transfer_in") and row.get("from_location") and row.get("to_location"):
            ev["sourceList"] = [{"type": "location", "source": where(row["from_location"])}]
            ev["destinationList"] = [{"type": "location", "destination": where(row["to_location"])}]
        if row.get("po_id"):
            ev["bizTransactionList"] = [{"type": "po", "bizTransaction": f"urn:replenish:po:{_quote(row['po_id'])}"}]
        if row["what"] == "receipt" and (lot or expiry):
            ev["ilmd"] = {k: v for k, v in (("cbvmda:lotNumber", lot), ("cbvmda:itemExpirationDate", expiry)) if v}
        if row.get("case_id"):
            ev["replenish:caseId"] = row["case_id"]
        out.append(ev)
    return out, skipped


def query_document(events: list[dict[str, Any]], created: str, skipped: int = 0) -> dict[str, Any]:
    """An EPCIS 2.0 query result (``EPCISQueryDocument``) of ``events``."""
    doc: dict[str, Any] = {
        "@context": CONTEXT, "type": "EPCISQueryDocument", "schemaVersion": "2.0", "creationDate": created,
        "epcisBody": {"queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": events}}}}
    if skipped:
        doc["replenish:linesNotInEPCISForm"] = skipped
    return doc


def lot_trace(p: Processor, sku: str, lot: str | None, serial: str | None) -> dict[str, Any] | None:
    """``query_document`` of the trace of a lot or a serialised unit of ``sku`` (on the model's
    thread: it reads the catalog and the trace index); None when nothing is recorded of it."""
    found = traceability.trace(p, sku, lot, serial)
    if found is None:
        return None
    now = p.clock()
    catalog = p.ledger.catalog
    item = catalog.item(sku, now)

    def where(location: str) -> str:
        loc = catalog.location(location, now)
        return place_uri(loc.gln) if loc is not None and loc.gln else f"{OUR_LOCATION}{location}"

    events, skipped = trace_events(found, (item.gtin or None) if item is not None else None, where,
                                   found.get("expiry"))
    return query_document(events, now.isoformat(), skipped)


def item_of(uri: str, resolve_gtin: Callable[[str], Any]) -> tuple[dict[str, str] | None, str | None]:
    """The SKU and lot or serial an EPCIS query names (an LGTIN or SGTIN, URN or Digital Link),
    or why it names none of ours."""
    found, why = epc_item(uri)
    if found is None:
        return None, why
    if "lot" not in found and "serial" not in found:
        return None, f"{uri[:120]} names a trade item, not a lot or a unit: a trace is of one lot or unit"
    owner = resolve_gtin(found["gtin"])
    if owner is None:
        return None, f"no item is registered with GTIN {found['gtin']}"
    return {"sku": owner[0], **{k: found[k] for k in ("lot", "serial") if k in found}}, None

