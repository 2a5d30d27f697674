"""GS1 EPCIS 2.0 (``streams.epcis``): ``POST /epcis/capture`` takes a JSON-LD
``EPCISDocument``, all or nothing, with the same keys, roles, validation, refusal codes and
de-duplication as ``/v1/events``; ``GET /epcis/events`` gives the trace of a lot or a
serialised unit as an ``EPCISQueryDocument``."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from api.deps import POSTERS, READERS, Runner, require
from api.errors import MALFORMED_BODY, ApiError
from api.responses import JSON
from domain.events import parse_instant
from domain.intake import Principal
from streams import epcis

router = APIRouter(prefix="/epcis", tags=["GS1 EPCIS 2.0"])
_EVENT = {"type": "object", "required": ["type", "action", "bizStep", "eventTime"],
          "properties": {"type": {"enum": list(epcis.TAKEN)}, "action": {"enum": ["ADD", "OBSERVE"]},
                         "bizStep": {"enum": list(epcis.STEPS)}, "eventTime": {"type": "string", "format": "date-time"},
                         "eventID": {"type": "string", "minLength": 1},
                         "bizLocation": {"type": "object", "properties": {"id": {"type": "string"}}},
                         "readPoint": {"type": "object", "properties": {"id": {"type": "string"}}},
                         "epcList": {"type": "array", "items": {"type": "string"}},
                         "quantityList": {"type": "array", "items": {
                             "type": "object", "required": ["epcClass", "quantity"],
                             "properties": {"epcClass": {"type": "string"},
                                            "quantity": {"type": "number", "exclusiveMinimum": 0},
                                            "uom": {"enum": list(epcis.EACH)}}}}}}
_DOCUMENT = {"type": "object", "required": ["type", "schemaVersion", "epcisBody"],
             "properties": {"type": {"const": "EPCISDocument"}, "schemaVersion": {"enum": ["2.0", "2.0.0"]},
                            "epcisBody": {"type": "object", "required": ["eventList"], "properties": {
                                "eventList": {"type": "array", "maxItems": epcis.MAX_EVENTS, "items": _EVENT}}}}}
BODY = {"requestBody": {"required": True, "content": {"application/ld+json": {"schema": _DOCUMENT},
                                                      "application/json": {"schema": _DOCUMENT}}}}


def _refused(mapped: list[epcis.Mapped]) -> list[dict[str, Any]]:
    return [{"index": m.index, "eventID": m.event_id, "errors": [p.as_dict() for p in m.problems]}
            for m in mapped if m.problems]


@router.post("/capture", openapi_extra=BODY, response_class=JSON, status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "Every event was stored already, or none moves stock"},
                        400: {"description": "Not an EPCIS 2.0 document"},
                        422: {"description": "Refused: nothing stored but the refusals; each event's errors"}})
async def capture(request: Request, runner: Runner,
                  principal: Annotated[Principal, Depends(require(*POSTERS))]) -> JSON:
    """An EPCIS 2.0 document (README, "GS1 EPCIS 2.0"): each ObjectEvent or TransactionEvent
    mapped to our events by its business step, all stored or none. 201 with each event's
    outcomes; 200 when all were stored before (or none moves stock); 422 with each refused
    EPCIS event's errors and our codes (nothing stored but the refusals of mapped events, as
    every refusal is); 400 when the body is not an EPCIS 2.0 document."""
    try:
        doc = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ApiError(status.HTTP_400_BAD_REQUEST, f"the body is not JSON: {exc}", MALFORMED_BODY) from None
    events, why = epcis.document_events(doc)
    if events is None:
        raise ApiError(status.HTTP_400_BAD_REQUEST, why, MALFORMED_BODY)
    ids: list[str | None] = [e.get("eventID") if isinstance(e, dict) and isinstance(e.get("eventID"), str)
                             and e.get("eventID") else None for e in events]
    if None in ids:  # named by GS1's canonical event hash
        remote = epcis.remote_contexts(doc)
        if remote:
            raise ApiError(status.HTTP_422_UNPROCESSABLE_ENTITY,
                           f"events without an eventID are named by their canonical hash, which reads the "
                           f"document's JSON-LD contexts; {remote[0]!r} is not fetched here: send eventIDs",
                           "malformed")
        hashes, failed = await asyncio.to_thread(epcis.canonical_hashes, doc)
        if hashes is None:
            raise ApiError(status.HTTP_422_UNPROCESSABLE_ENTITY,
                           f"events without an eventID are named by their canonical hash, which could not be "
                           f"computed ({failed}): send eventIDs", "malformed")
        ids = [i if i is not None else hashes[n] for n, i in enumerate(ids)]
    # Mapped beside the model's thread: finding a place by its GLN is one dictionary lookup,
    # which the model's changes cannot tear (as the distributed runner routes by GTIN).
    catalog = runner.processor.ledger.catalog
    mapped = await asyncio.to_thread(epcis.map_document, events, [str(i) for i in ids], catalog.resolve_gln)
    refused = _refused(mapped)
    if refused:
        return JSON({"detail": f"{len(refused)} of {len(events)} EPCIS events refused; nothing stored",
                     "code": refused[0]["errors"][0]["code"], "events": refused}, status_code=422)
    owners = [(m.index, ev) for m in mapped for ev in m.events]
    if len(owners) > epcis.MAX_EVENTS:
        raise ApiError(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"the document makes {len(owners):,} events: at "
                       f"most {epcis.MAX_EVENTS:,} in one capture", "too_large")
    stored, outcomes = await runner.submit_all_or_nothing([ev for _, ev in owners], principal) if owners \
        else (True, [])
    by_event: dict[int, list[dict[str, Any]]] = {}
    for (n, _), o in zip(owners, outcomes, strict=True):
        if o is not None:
            by_event.setdefault(n, []).append(o.as_dict())
    if not stored:
        refused = [{"index": n, "eventID": mapped[n].event_id,
                    "errors": [e for o in found for e in o["errors"]]} for n, found in sorted(by_event.items())]
        first = next((e["code"] for r in refused for e in r["errors"]), "rejected")
        return JSON({"detail": f"{len(refused)} of {len(events)} EPCIS events refused; nothing stored but the refusals",
                     "code": first, "events": refused}, status_code=422)
    results = [{"index": m.index, "eventID": m.event_id, "outcomes": by_event.get(m.index, []),
                **({"note": m.note} if m.note else {})} for m in mapped]
    new = any(o["status"] in ("accepted", "queued") for r in results for o in r["outcomes"])
    return JSON({"captured": len(events), "events": len(owners), "results": results},
                status_code=201 if new else 200)


EPCIS_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}
INSTANT: dict[str, Any] = {"format": "date-time"}  # (RFC 3339: with its offset)


@router.get("/events", response_class=JSON,
            responses={200: {"description": "An EPCISQueryDocument: the lot's or unit's movements",
                             "content": {"application/ld+json": {}}},
                       400: {"description": "No lot or unit named, or not one of ours"},
                       404: {"description": "Nothing recorded of it"}})
async def events(runner: Runner, _: Annotated[Principal, Depends(require(*READERS))],
                 sku: str | None = None, lot: str | None = None, serial: str | None = None,
                 match_class: Annotated[str | None, Query(alias="MATCH_anyEPCClass")] = None,
                 match_epc: Annotated[str | None, Query(alias="MATCH_anyEPC")] = None,
                 eq_biz_step: Annotated[str | None, Query(alias="EQ_bizStep")] = None,
                 ge_event_time: Annotated[str | None, Query(alias="GE_eventTime", json_schema_extra=INSTANT)] = None,
                 lt_event_time: Annotated[str | None, Query(alias="LT_eventTime", json_schema_extra=INSTANT)] = None,
                 ) -> JSON:
    """The trace of a lot or a serialised unit in EPCIS 2.0 form (README, "GS1 EPCIS 2.0"):
    named as ours (``sku`` with ``lot`` or ``serial``) or as EPCIS queries name it
    (``MATCH_anyEPCClass``: an LGTIN, URN or Digital Link; ``MATCH_anyEPC``: an SGTIN);
    ``EQ_bizStep``, ``GE_eventTime`` and ``LT_eventTime`` narrow it, as in EPCIS's
    SimpleEventQuery. Every stored movement of it as an ObjectEvent, in recording order."""
    named_by = [name for name, value in (("MATCH_anyEPCClass", match_class), ("MATCH_anyEPC", match_epc),
                                         ("sku", sku), ("lot", lot), ("serial", serial)) if value is not None]
    if (match_class is not None or match_epc is not None) and len(named_by) > 1:
        raise ApiError(status.HTTP_400_BAD_REQUEST, f"name the lot or unit one way: {' and '.join(named_by)} were "
                       "given", "malformed")
    uri = match_class or match_epc
    if uri is not None:
        catalog = runner.processor.ledger.catalog
        named, why = epcis.item_of(uri, catalog.resolve_gtin)
        if named is None:
            raise ApiError(status.HTTP_400_BAD_REQUEST, f"{uri[:120]!r}: {why}", "malformed")
        sku, lot, serial = named["sku"], named.get("lot"), named.get("serial")
    if not sku or not (lot or serial):
        raise ApiError(status.HTTP_400_BAD_REQUEST, "name a lot or a unit: sku with lot or serial, or "
                       "MATCH_anyEPCClass (an LGTIN) or MATCH_anyEPC (an SGTIN)", "malformed")
    bounds = {}
    for name, value in (("GE_eventTime", ge_event_time), ("LT_eventTime", lt_event_time)):
        if value is not None:
            at = parse_instant(value)
            if at is None:
                raise ApiError(status.HTTP_400_BAD_REQUEST, f"{name} must be an ISO 8601 instant with its "
                               "offset", "malformed")
            bounds[name] = at
    doc = await runner.read(epcis.lot_trace, runner.processor, sku, lot, serial)
    if doc is None:
        what = f"serial {serial}" if serial else f"lot {lot}"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"nothing is recorded of {what} of {sku}")
    body = doc["epcisBody"]["queryResults"]["resultsBody"]
    body["eventList"] = [e for e in body["eventList"]
                         if (eq_biz_step is None or epcis.short(eq_biz_step) == e["bizStep"])
                         and ("GE_eventTime" not in bounds or datetime.fromisoformat(e["eventTime"]) >= bounds["GE_eventTime"])
                         and ("LT_eventTime" not in bounds or datetime.fromisoformat(e["eventTime"]) < bounds["LT_eventTime"])]
    return JSON(doc, media_type="application/ld+json", headers=EPCIS_HEADERS)
