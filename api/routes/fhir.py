"""FHIR R4 REST under ``/fhir/r4`` (``streams.fhir``): resources in, ``OperationOutcome`` out,
with the same keys, roles, validation, refusal codes and de-duplication as ``/v1/events``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.deps import POSTERS, READERS, Runner, authenticate, require
from domain.intake import Principal
from streams import fhir

router = APIRouter(prefix="/fhir/r4", tags=["FHIR R4"])
FHIR_JSON = "application/fhir+json"
_RESOURCE = {"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"type": "string"}}}
_BUNDLE = {"type": "object", "required": ["resourceType", "type"],
           "properties": {"resourceType": {"const": "Bundle"}, "type": {"enum": ["batch", "transaction"]},
                          "entry": {"type": "array", "maxItems": 10_000,
                                    "items": {"type": "object", "properties": {"resource": {"type": "object"}}}}}}
BODY = {"requestBody": {"required": True, "content": {FHIR_JSON: {"schema": _RESOURCE},
                                                      "application/json": {"schema": _RESOURCE}}}}
BUNDLE_BODY = {"requestBody": {"required": True, "content": {FHIR_JSON: {"schema": _BUNDLE},
                                                             "application/json": {"schema": _BUNDLE}}}}


class FhirJSON(Response):
    media_type = FHIR_JSON


def _answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The answers a route documents, each a FHIR resource (an OperationOutcome when refused)."""
    text = {200: "OK (all already stored, or a read)", 201: "Stored", 202: "Queued (distributed profile)",
            400: "Not a FHIR resource of this type (OperationOutcome)", 404: "A resource type not taken here",
            413: "Too many entries", 422: "Refused: our codes in OperationOutcome.issue.details"}
    return {code: {"description": text[code], "content": {FHIR_JSON: {"schema": {"type": "object"}}}}
            for code in codes}


def answer(body: dict[str, Any], status: int) -> Response:
    return FhirJSON(orjson.dumps(body), status_code=status)


def refused(status: int, code: str, text: str, ours: str = "malformed") -> Response:
    return answer(fhir.operation_outcome([fhir.issue("error", code, text, ours)]), status)


async def _resource(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        return exc


def _po_of(runner: Runner) -> Any:
    def po_of(requisition_id: str) -> str | None:
        found = runner.processor.requisition(requisition_id)
        return found.get("po_id") if found else None
    return po_of


def _status(outcomes: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """A resource's answer from its events' outcomes: 422 when one is refused, 202 when
    queued (distributed profile), 201 when one is stored, 200 when all were already."""
    statuses = {o.get("status") for o in outcomes}
    status = 422 if "rejected" in statuses else 202 if "queued" in statuses else \
        201 if "accepted" in statuses else 200
    return status, fhir.outcome_issues(outcomes)


@router.get("/metadata", response_class=FhirJSON, responses=_answers(200))
async def metadata(_: Annotated[Principal, Depends(authenticate)]) -> Response:
    """The CapabilityStatement: exactly what this server takes and gives."""
    return answer(fhir.capability_statement(datetime.now(UTC)), 200)


@router.get("/SupplyRequest", response_class=FhirJSON, responses=_answers(200))
async def supply_requests(request: Request, runner: Runner,
                          _: Annotated[Principal, Depends(require(*READERS))]) -> Response:
    """Our open requisitions and transfer requests as a searchset Bundle of SupplyRequests
    (one per line)."""
    found = await runner.read(runner.processor.purchasing.requisitions)
    base = str(request.base_url).rstrip("/") + "/fhir/r4"
    entries = [e for r in found if r.get("status") not in ("rejected", "fulfilled", "ordered")
               for e in fhir.supply_request(r, base)]
    return answer({"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}, 200)


@router.post("", openapi_extra=BUNDLE_BODY, response_class=FhirJSON, responses=_answers(200, 400, 413, 422))
async def post_bundle(request: Request, runner: Runner,
                      principal: Annotated[Principal, Depends(require(*POSTERS))]) -> Response:
    """A ``Bundle`` of type ``batch`` (each entry on its own, as an array of events is: an entry
    that is not a valid resource is answered 400 in its place; the answer a
    ``batch-response``, an entry per entry) or ``transaction`` (all or nothing: every entry
    validated and mapped first, then its events stored together, or, when one would be
    refused, only the refusals, each stored as every refusal is, and nothing else: answered
    422 with them; the answer a ``transaction-response``)."""
    bundle = await _resource(request)
    if isinstance(bundle, Exception):
        return refused(400, "structure", f"the body is not JSON: {bundle}")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return refused(400, "structure", "POST /fhir/r4 takes a Bundle; post a single resource to "
                                         "/fhir/r4/{resourceType}")
    if bundle.get("type") not in ("batch", "transaction"):
        return refused(422, "not-supported", f"a Bundle of type {bundle.get('type')!r}: send type batch "
                                             "(each entry on its own) or transaction (all or nothing)")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return refused(400, "structure", "Bundle.entry must be a list of entries")
    if len(entries) > fhir.MAX_ENTRIES:
        return refused(413, "too-costly", f"at most {fhir.MAX_ENTRIES} entries per Bundle")
    # Each entry on its own: one that is not a valid resource is answered 400 in its place.
    invalid = await asyncio.to_thread(lambda: [fhir.validate(e.get("resource")) for e in entries])
    others = fhir.bundle_index([e for e, problem in zip(entries, invalid, strict=True) if problem is None])
    po_of = _po_of(runner)

    def read() -> list[fhir.Mapped | str | None]:
        return [problem if problem else None if e["resource"].get("resourceType") == "Device"
                else fhir.map_resource(e["resource"], others, po_of) for e, problem in zip(entries, invalid, strict=True)]

    mapped = await runner.read(read)
    if bundle["type"] == "transaction":
        return await _transaction(entries, mapped, runner, principal)
    # Every entry's events in one submission (the runner's batches at most 10,000 events), then
    # each entry answered with its own outcomes.
    todo = [e for e in mapped if isinstance(e, fhir.Mapped) and not e.problems]
    events = [ev for e in todo for ev in e.events]
    outcomes: list[dict[str, Any]] = []
    for start in range(0, len(events), fhir.MAX_ENTRIES):
        outcomes += [o.as_dict() for o in await runner.submit(events[start:start + fhir.MAX_ENTRIES], principal)]
    by_entry = iter(outcomes)
    answers = []
    for entry in mapped:
        if isinstance(entry, str):
            answers.append({"response": {"status": "400", "outcome": fhir.operation_outcome(
                [fhir.issue("error", "structure", entry, "malformed")])}})
            continue
        if entry is None:  # a Device an entry references: read with it, nothing of its own
            answers.append({"response": {"status": "200", "outcome": fhir.operation_outcome([fhir.issue(
                "information", "informational", "a Device: read with the entries that reference it")])}})
            continue
        if entry.problems:
            status, issues = 422, fhir.problem_issues(entry.problems)
        else:
            status, issues = _status([next(by_entry) for _ in entry.events])
        answers.append({"response": {"status": f"{status}", "outcome": fhir.operation_outcome(issues)}})
    return answer({"resourceType": "Bundle", "type": "batch-response", "entry": answers}, 200)


async def _transaction(entries: list[dict[str, Any]], mapped: list[fhir.Mapped | str | None], runner: Runner,
                       principal: Principal) -> Response:
    """A transaction Bundle: nothing stored unless every entry is a valid resource that maps
    to events none of which would be refused."""
    issues = []
    for n, entry in enumerate(mapped):
        if isinstance(entry, str):
            issues.append(fhir.issue("error", "structure", entry, "malformed", f"Bundle.entry[{n}].resource"))
        elif entry is not None and entry.problems:
            issues += [dict(i, expression=[f"Bundle.entry[{n}].resource.{x.removeprefix(entry.resource_type + '.')}"
                                           for x in i.get("expression", [])])
                       for i in fhir.problem_issues(entry.problems)]
    if issues:
        status = 400 if any(isinstance(e, str) for e in mapped) else 422
        return answer(fhir.operation_outcome(issues), status)
    owners = [(n, ev) for n, e in enumerate(mapped) if isinstance(e, fhir.Mapped) for ev in e.events]
    if len(owners) > fhir.MAX_ENTRIES:
        return refused(413, "too-costly", f"the transaction makes {len(owners):,} events: at most "
                                          f"{fhir.MAX_ENTRIES:,} in one transaction")
    stored, outcomes = await runner.submit_all_or_nothing([ev for _, ev in owners], principal)
    if not stored:
        found = [dict(o.as_dict(), entry=n) for (n, _), o in zip(owners, outcomes, strict=True) if o is not None]
        issues = [dict(i, expression=[f"Bundle.entry[{o['entry']}]"])
                  for o in found for i in fhir.outcome_issues([o])]
        return answer(fhir.operation_outcome(issues), 422)
    by_entry: dict[int, list[dict[str, Any]]] = {}
    for (n, _), o in zip(owners, outcomes, strict=True):
        assert o is not None
        by_entry.setdefault(n, []).append(o.as_dict())
    answers = []
    for n, entry in enumerate(mapped):
        if entry is None:  # a Device read with the entries that reference it
            answers.append({"response": {"status": "200"}})
            continue
        status, found_issues = _status(by_entry.get(n, []))
        answers.append({"response": {"status": f"{status}", "outcome": fhir.operation_outcome(found_issues)}})
    return answer({"resourceType": "Bundle", "type": "transaction-response", "entry": answers}, 200)


@router.post("/{resource_type}", openapi_extra=BODY, response_class=FhirJSON,
             responses=_answers(200, 201, 202, 400, 404, 422))
async def post_resource(resource_type: str, request: Request, runner: Runner,
                        principal: Annotated[Principal, Depends(require(*POSTERS))]) -> Response:
    """One resource of ``SupplyDelivery``, ``Procedure``, ``DeviceUseStatement`` or
    ``Appointment`` (README, "FHIR R4"): 201 when its events are stored, 200 when they all
    were already, 202 when queued (distributed profile), 422 with our codes when refused."""
    if resource_type not in fhir.SUPPORTED:
        return refused(404, "not-supported", f"{resource_type} is not taken here: one of "
                                             f"{', '.join(fhir.SUPPORTED)} (see GET /fhir/r4/metadata)")
    resource = await _resource(request)
    if isinstance(resource, Exception):
        return refused(400, "structure", f"the body is not JSON: {resource}")
    if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
        return refused(400, "structure", f"the body is not a {resource_type} resource")
    problem = await asyncio.to_thread(fhir.validate, resource)
    if problem:
        return refused(400, "structure", problem)
    po_of = _po_of(runner)
    mapped = await runner.read(lambda: fhir.map_resource(resource, None, po_of))
    if mapped.problems:
        return answer(fhir.operation_outcome(fhir.problem_issues(mapped.problems)), 422)
    status, issues = _status([o.as_dict() for o in await runner.submit(mapped.events, principal)])
    return answer(fhir.operation_outcome(issues), status)
