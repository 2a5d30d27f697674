"""Trace: the whole life of a lot or a serialised unit, as JSON or CSV."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import Response

from api.deps import READERS, Runner, require
from api.responses import JSON
from domain.intake import Principal
from streams import traceability

router = APIRouter(prefix="/v1", tags=["traceability"])


@router.get("/trace", response_class=JSON)
async def trace(request: Request, runner: Runner, _: Annotated[Principal, Depends(require(*READERS))],
                sku: str, lot: str | None = None, serial: str | None = None,
                format: Literal["json", "csv"] | None = None) -> Response:
    """Every stored event about a lot (``lot=``) or a serialised unit (``serial=``) of ``sku``:
    received from which supplier on which purchase order, moved where, used in which cases,
    refused at which scans, quarantined, returned or destroyed. ``format=csv`` or
    ``Accept: text/csv`` gives the events as CSV. With neither ``lot`` nor ``serial``: the
    lots and serials of ``sku`` that can be traced."""
    if not lot and not serial:
        units = await runner.read(traceability.traced_units, runner.processor, sku)
        if units is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"nothing is recorded of any lot or serial of {sku}")
        return JSON(units)
    result = await runner.read(traceability.trace, runner.processor, sku, lot, serial)
    if result is None:
        what = f"serial {serial}" if serial else f"lot {lot}"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"nothing is recorded of {what} of {sku}")
    wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        name = f"trace-{sku}-{serial or lot}.csv".replace("/", "_")
        return Response(traceability.trace_csv(result), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return JSON(result)


@router.get("/expiry", response_class=JSON)
async def expiry(runner: Runner, _: Annotated[Principal, Depends(require(*READERS))],
                 location: str | None = None, sku: str | None = None) -> JSON:
    """The daily expiry check's findings per location: stock expired on the shelf and stock at
    risk of expiring before it is used at the forecast rate, with their value at cost."""
    return JSON(await runner.read(traceability.expiry_report, runner.processor, location, sku))
