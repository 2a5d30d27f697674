"""KPIs: the named ClickHouse queries of ``projections.queries``, with their filters.

Wiring (``api/app.py``, ``infra/wiring.py``): ``app.state.projections`` holds a
``clickhouse-connect`` client on the projection database (``app.state.projection_service``
the read side that owns it).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from api.deps import READERS, engine_call, require
from api.responses import JSON
from domain.intake import Principal
from projections import queries

router = APIRouter(prefix="/v1/kpis", tags=["kpis"])


def projections_client(request: Request) -> Any:
    client = getattr(request.app.state, "projections", None)
    if client is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the KPI projections are not available")
    return client


@router.get("", response_class=JSON)
async def list_kpis(request: Request, _: Annotated[Principal, Depends(require(*READERS))]) -> JSON:
    """Every KPI's name and definition, and how far the projections are (``position``: the last
    stored event they hold; ``stored``: the last stored event)."""
    body: dict[str, Any] = {"kpis": [{"name": n, "definition": d} for n, d in queries.definitions().items()]}
    service = getattr(request.app.state, "projection_service", None)
    if service is not None and service.reader is not None:
        try:
            body["projections"] = await engine_call(request, service.status)
        except Exception as exc:  # the tables are being rebuilt, or the engine is unwell
            body["projections"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    return JSON(body)


@router.get("/{name}", response_class=JSON)
async def get_kpi(request: Request, name: str, client: Annotated[Any, Depends(projections_client)],
                  _: Annotated[Principal, Depends(require(*READERS))],
                  site: str | None = None, location: str | None = None, sku: str | None = None,
                  supplier: str | None = None,
                  start: Annotated[datetime | date | None, Query(alias="from",
                                                                 description="inclusive: a date or an instant")] = None,
                  end: Annotated[datetime | date | None, Query(alias="to",
                                                               description="exclusive: a date or an instant")] = None,
                  ) -> JSON:
    """One KPI's rows (``columns``, ``rows``) for the filters, with its definition."""
    if name not in queries.KPIS:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"unknown KPI {name!r}; known: {', '.join(sorted(queries.KPIS))}")
    filters = queries.make_filters(site, location, sku, start, end, supplier)
    if filters.start and filters.end and filters.start >= filters.end:
        raise HTTPException(422, "'from' must be before 'to'")
    result = await engine_call(request, queries.run, client, name, filters)
    shown = {{"start": "from", "end": "to"}.get(k, k): v for k, v in result.filters.items()}
    return JSON(dict(result.as_dict(), filters=shown, definition=queries.KPIS[name].definition))
