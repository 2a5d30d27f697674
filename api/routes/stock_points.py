"""Stock points: one SKU at one location."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from api.deps import READERS, Runner, require
from api.responses import JSON
from domain.intake import Principal

router = APIRouter(prefix="/v1/stock-points", tags=["stock points"])


@router.get("/{sku}/{location}", response_class=JSON)
async def get_stock_point(sku: str, location: str, runner: Runner,
                          _: Annotated[Principal, Depends(require(*READERS))]) -> JSON:
    """On hand by lot (base units) with expiry and status, quarantined quantity, inventory
    position, open flags and the last events."""
    view = await runner.read(runner.processor.stock_point_view, sku, location)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no events recorded for {sku} at {location}")
    return JSON(view)
