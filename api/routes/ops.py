"""What operators use: ``/metrics`` (Prometheus) and ``/readyz`` (ready to serve)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from api.deps import AUDITORS, Runner, authenticate, bearer, engine_call
from api.responses import JSON
from domain.intake import Principal
from streams.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)
READY_TIMEOUT_S = 5.0


def allowed_networks(text: str) -> tuple[Any, ...]:
    """Comma-separated addresses or networks (``REPLENISH_METRICS_ALLOW``, ``REPLENISH_HL7_ALLOW``)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


async def scraper(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """From an address of ``REPLENISH_METRICS_ALLOW`` (default loopback): no key. From
    anywhere else: an auditor's or an admin's key."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and any(address in net for net in request.app.state.metrics_allow):
        return
    principal: Principal = await authenticate(request, credentials)
    if principal.role not in AUDITORS:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"the role '{principal.role}' may not read the metrics "
                                                       f"(allowed: {', '.join(AUDITORS)})")


@router.get("/metrics", include_in_schema=False)  # (for Prometheus, not API clients)
async def metrics(request: Request, runner: Runner, _: Annotated[None, Depends(scraper)]) -> Response:
    """Prometheus metrics (README, "Operations"): no key from the addresses of
    ``REPLENISH_METRICS_ALLOW`` (default loopback), an auditor's or admin's key otherwise."""
    m = request.app.state.metrics
    await runner.read(m.refresh, runner.processor, runner, getattr(request.app.state, "webhooks", None))
    service = getattr(request.app.state, "projection_service", None)
    if service is not None and service.reader is not None:
        with contextlib.suppress(Exception):  # being rebuilt, or the engine is unwell: /readyz says which
            m.refresh_projections(await engine_call(request, service.status))
    return Response(m.render(), media_type=CONTENT_TYPE)


@router.get("/readyz", response_class=JSON, responses={503: {"description": "Not ready: what does not answer"}})
async def readyz(request: Request, runner: Runner) -> JSON:
    """Ready only when the store, the KPI engine and (distributed profile) the broker answer;
    otherwise 503 naming what does not."""
    checks: dict[str, str] = {}

    async def check(name: str, fn: Any) -> None:
        try:
            await asyncio.wait_for(fn(), READY_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:  # (public: the kind of failure only; the log has the rest)
            checks[name] = f"not answering ({type(exc).__name__})"
            log.warning("readiness: %s does not answer: %s", name, exc)

    await check("store", lambda: runner.read(runner.processor.store.ping))
    service = getattr(request.app.state, "projection_service", None)
    if service is not None:
        await check("engine", lambda: engine_call(request, service.status))
    ingest = getattr(runner, "ingest", None)
    if ingest is not None and hasattr(ingest, "ping"):
        await check("broker", lambda: asyncio.to_thread(ingest.ping))
    ready = all(v == "ok" for v in checks.values())
    return JSON({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503)
