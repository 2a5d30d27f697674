"""Alerts: list, act on, and subscribe (Server-Sent Events and webhooks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from api.bodies import Reason
from api.deps import ACTORS, READERS, Runner, require
from api.responses import JSON
from domain.intake import Principal

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

KEEPALIVE_SECONDS = 15.0


@router.get("", response_class=JSON)
async def list_alerts(runner: Runner, _: Annotated[Principal, Depends(require(*READERS))],
                      status: str | None = None, kind: str | None = None, sku: str | None = None,
                      location: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> JSON:
    """Alerts, newest first: ``id``, ``kind``, ``severity``, ``sku``, ``location``,
    ``raised_at``, ``status`` and what raised them."""
    alerts = await runner.read(runner.processor.alerts, status=status, kind=kind, sku=sku,
                               location=location, limit=limit)
    return JSON({"alerts": alerts})


@router.get("/stream")
async def stream_alerts(request: Request, runner: Runner,
                        _: Annotated[Principal, Depends(require(*READERS))],
                        last_event_id: Annotated[str | None, Header()] = None,
                        since: Annotated[int | None, Query(ge=0, description="resume after this feed number")] = None,
                        ) -> StreamingResponse:
    """Server-Sent Events: every alert raised, acknowledged or resolved, as ``event: alert``
    with ``id:`` its feed number. Reconnect with ``Last-Event-ID`` (or ``?since=``) to resume
    without a gap; without either, the stream starts with what happens next."""
    if last_event_id is not None:
        try:
            start = int(last_event_id)
        except ValueError:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "Last-Event-ID must be a feed number") from None
    elif since is not None:
        start = since
    else:
        start = await feed_end(runner)
    return alert_stream(request, runner, start)


def alert_stream(request: Request, runner: Runner, start: int) -> StreamingResponse:
    """The answer that streams the alert feed after number ``start`` (the API's and the page's)."""
    return StreamingResponse(alert_events(request, runner, start), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def feed_end(runner: Runner) -> int:
    """The alert feed's number now: a stream started from it gives what happens next."""
    return len(await runner.read(lambda: runner.processor.ledger.alert_feed))


async def alert_events(request: Request, runner: Runner, start: int) -> AsyncIterator[bytes]:
    """The alert feed after number ``start`` as Server-Sent Events (``event: alert``, ``id:``
    the feed number), with a keep-alive comment when nothing happens; until the client goes.
    (The API's stream and the page's.)"""
    position = start
    yield b": replenish alert stream\nretry: 2000\n\n"
    while not await request.is_disconnected():
        batch: list[dict[str, Any]] = await runner.read(runner.processor.alert_feed_since, position)
        for entry in batch:
            position = entry["seq"]
            yield b"id: %d\nevent: alert\ndata: %s\n\n" % (position, orjson.dumps(entry))
        if not batch and not await runner.wait_changed(KEEPALIVE_SECONDS):
            yield b": keepalive\n\n"


async def _change(alert_id: str, status_: str, body: Reason, runner: Runner,
                  principal: Principal) -> JSON:
    alert = await runner.change_alert(alert_id, status_, body.reason.strip(), principal)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
    return JSON(alert)


@router.post("/{alert_id}/acknowledge", response_class=JSON)
async def acknowledge(alert_id: str, runner: Runner,
                      principal: Annotated[Principal, Depends(require(*ACTORS))],
                      body: Annotated[Reason, Body(examples=[{"reason": "transfer requested from CS"}])]) -> JSON:
    """Acknowledge an alert (buyers and admins), with a reason; stored as an event."""
    return await _change(alert_id, "acknowledged", body, runner, principal)


@router.post("/{alert_id}/resolve", response_class=JSON)
async def resolve(alert_id: str, runner: Runner,
                  principal: Annotated[Principal, Depends(require(*ACTORS))],
                  body: Annotated[Reason, Body(examples=[{"reason": "stock counted and corrected"}])]) -> JSON:
    """Resolve an alert (buyers and admins), with a reason; stored as an event."""
    return await _change(alert_id, "resolved", body, runner, principal)
