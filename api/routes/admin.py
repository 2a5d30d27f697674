"""Administration of the running service: rebuilding the projections from the store, and
writing a snapshot of the write model now.

The embedded engine and the embedded store belong to the service process, so ``replenish
replay --projections --url ...`` and ``replenish snapshot --url ...`` ask the service through
these routes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import StreamingResponse

from api.deps import ADMINS, Runner, engine_call, require
from api.responses import JSON
from domain.intake import Principal

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/snapshot", response_class=JSON)
async def snapshot(runner: Runner, _: Annotated[Principal, Depends(require(*ADMINS))]) -> JSON:
    """Write a snapshot of the write model now, on the processor's thread between batches
    (``streams.snapshots``; the service also writes them every
    ``REPLENISH_SNAPSHOT_EVERY_EVENTS`` events or ``REPLENISH_SNAPSHOT_EVERY_MINUTES``
    minutes). Answers ``{"file", "position", "bytes", "seconds"}``; 409 on the distributed
    profile, whose workers rebuild from PostgreSQL."""
    snapshotter = getattr(runner, "snapshotter", None)
    processor = getattr(runner, "processor", None)
    if snapshotter is None or processor is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "snapshots are written by the embedded profile's service")
    started = time.perf_counter()
    name, position = await runner.read(lambda: (snapshotter.take(processor), processor.position))
    path = snapshotter.target.directory / name
    return JSON({"file": name, "position": position, "bytes": path.stat().st_size,
                 "seconds": round(time.perf_counter() - started, 3)})


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
    total = await asyncio.to_thread(service.last_id)  # (the store, not the engine)

    def on_batch(progress: Any) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, {"events": progress.events, "total": total,
                                                     "seconds": round(progress.seconds, 3)})

    async def run() -> None:
        try:
            report = await engine_call(request, service.rebuild, on_batch)
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
