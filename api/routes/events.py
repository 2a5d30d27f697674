"""Ingest: events as JSON, and raw GS1 scans."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, status

from api.deps import POSTERS, SCANNERS, Runner, authenticate, require
from api.errors import MALFORMED_BODY, ApiError
from api.responses import JSON
from domain.codes import ADMIN, AUDITOR
from domain.intake import Principal

router = APIRouter(prefix="/v1", tags=["ingest"])

MAX_EVENTS = 10_000

EVENTS_EXAMPLE = {
    "event_id": "cab-3W-000123", "type": "usage", "occurred_at": "2026-11-25T09:30:00+01:00",
    "site": "H1", "location": "W3-CAB1", "gtin": "09501101020917", "lot": "L2611A",
    "expiry": "2027-06-30", "quantity": 1, "unit": "each",
}


def _results(outcomes: list[Any]) -> JSON:
    return JSON({"results": [o.as_dict() for o in outcomes]})


async def _json_body(request: Request) -> Any:
    """The request's body as JSON (orjson: strict UTF-8, no lone surrogates), or 422 with
    ``malformed_body``. The one parser of both ingest routes, so that a body gets the same
    answer on each."""
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_ENTITY, f"the body is not JSON: {exc}",
                       MALFORMED_BODY) from None


@router.post("/events", response_class=JSON, openapi_extra={
    "requestBody": {
        "required": True, "content": {"application/json": {"schema": {
            "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}, "minItems": 1, "maxItems": MAX_EVENTS}]},
            "example": [EVENTS_EXAMPLE]}}},
    "responses": {"200": {"description": "Each event's outcome, in the order sent", "links": {
        "GetFirstEventOutcome": {
            "operationId": "get_event_v1_events__event_id__get",
            "parameters": {"event_id": "$response.body#/results/0/event_id"},
            "description": "What became of the first event posted (its stored outcome)"}}}}})
async def post_events(request: Request, runner: Runner,
                      principal: Annotated[Principal, Depends(require(*POSTERS))]) -> JSON:
    """Post one event or an array of up to 10,000. Each gets its own result, in the order
    sent: ``accepted`` (durably stored), ``duplicate``, or ``rejected`` with field-level
    reasons. HTTP 422 only when the body is not an event or an array of JSON objects."""
    payload = await _json_body(request)
    events = [payload] if isinstance(payload, dict) else payload
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ApiError(status.HTTP_422_UNPROCESSABLE_ENTITY,
                       "the body must be an event (a JSON object) or an array of JSON objects", MALFORMED_BODY)
    if len(events) > MAX_EVENTS:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            f"at most {MAX_EVENTS} events per request; got {len(events)}")
    if not events:
        return JSON({"results": []})
    return _results(await runner.submit(events, principal))


@router.get("/events/{event_id}", response_class=JSON)
async def get_event(event_id: str, request: Request, runner: Runner,
                    principal: Annotated[Principal, Depends(authenticate)]) -> JSON:
    """What became of a posted event, from the store: ``accepted`` or ``rejected`` with its
    reasons and flags (including flags added later, such as a recall known only after the
    use), and who posted it. For the role that posted it, auditors and admins. 404 while it is
    not stored (an event answered ``queued`` is stored once a worker takes it)."""
    found = await runner.read(runner.processor.event_outcome, event_id)
    poster_roles: dict[str, str] = getattr(request.app.state, "poster_roles", None) or {
        p.name: p.role for p in request.app.state.principals.values()}
    posted_as = poster_roles.get(found["recorded_by"]) if found else None
    if found is None or (principal.role not in (AUDITOR, ADMIN) and principal.role != posted_as):
        # The same answer for "not stored" and "not yours": an id reveals nothing.
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no outcome of event {event_id!r} is stored (yet) for you to see")
    return JSON(found)


SCAN_EXAMPLE = {"barcode": "]d2010950110102091717270630" + "10L2611A", "location": "W3-CAB1",
                "site": "H1", "quantity": 1, "event_id": "cab-3W-000124",
                "occurred_at": "2026-11-25T09:31:00+01:00"}


@router.post("/scans", response_class=JSON, openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": {"type": "object"},
                                                       "example": SCAN_EXAMPLE}}}})
async def post_scan(request: Request, runner: Runner,
                    principal: Annotated[Principal, Depends(require(*SCANNERS))]) -> JSON:
    """A raw GS1 barcode read at the point of care becomes a ``usage`` event. ``quantity``
    counts scanned packages (default 1) at the packaging level of the scanned GTIN;
    ``occurred_at`` defaults to now; ``case_id`` marks a surgical case's usage. HTTP 422 when
    the body is not a JSON object (as ``POST /v1/events`` answers it)."""
    scan = await _json_body(request)
    if not isinstance(scan, dict):
        raise ApiError(status.HTTP_422_UNPROCESSABLE_ENTITY,
                       "the body must be a scan (a JSON object)", MALFORMED_BODY)
    event = {k: v for k, v in scan.items() if v is not None}
    event["type"] = "usage"
    event.setdefault("quantity", 1)
    event.setdefault("occurred_at", datetime.now(UTC).isoformat())
    if "barcode" not in event:
        event["barcode"] = ""
    return _results(await runner.submit([event], principal))
