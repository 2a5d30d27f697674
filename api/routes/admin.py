"""Administration of the running service: rebuilding the projections from the store.

The embedded engine belongs to the service process, so ``replenish replay --projections
--url ...`` asks the service to rebuild through this route.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import StreamingResponse

from api.deps import ADMINS, require
from domain.intake import Principal

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/projections/rebuild", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "progress lines, then the report"}})
async def rebuild_projections(request: Request,
                              _: Annotated[Principal, Depends(require(*ADMINS))]) -> StreamingResponse:
    """Drop every projection table, create them again and write the whole event store into
    them. Answers NDJSON as it goes: ``{"events", "total", "seconds"}`` after each batch, then
    ``{"done": true, "events", "rows", "seconds", "events_per_second", "rows_per_second"}``
    (or ``{"error": ...}``). KPI and BI queries fail while the tables are rebuilt."""
    service = getattr(request.app.state, "projection_service", None)
    if service is None or service.client is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the projections are not available")
    if service.rebuilding:
        raise HTTPException(status.HTTP_409_CONFLICT, "a rebuild is already running")
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    total = await asyncio.to_thread(service.last_id)

    def on_batch(progress: Any) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, {"events": progress.events, "total": total,
                                                     "seconds": round(progress.seconds, 3)})

    async def run() -> None:
        try:
            report = await asyncio.to_thread(service.rebuild, on_batch)
            await lines.put({"done": True, "events": report.events, "total": total, "rows": report.rows,
                             "seconds": round(report.seconds, 3),
                             "events_per_second": round(report.events_per_second),
                             "rows_per_second": round(report.rows_per_second)})
        except Exception as exc:
            await lines.put({"error": f"{type(exc).__name__}: {exc}"})
        await lines.put(None)

    task = asyncio.create_task(run(), name="projections-rebuild")

    async def stream() -> AsyncIterator[bytes]:
        yield orjson.dumps({"events": 0, "total": total, "seconds": 0.0}) + b"\n"
        while (line := await lines.get()) is not None:
            yield orjson.dumps(line) + b"\n"
        await task

    return StreamingResponse(stream(), media_type="application/x-ndjson")
