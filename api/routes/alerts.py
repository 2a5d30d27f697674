"""Alerts raised by the processor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import READERS, Runner, require
from api.responses import JSON
from domain.intake import Principal

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


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
