"""Dependencies: the caller's principal, checked against the roles a route allows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.keys import find
from domain.codes import ADMIN, AUDITOR, BUYER, SCANNER
from domain.intake import Principal
from streams.embedded import EmbeddedRunner

T = TypeVar("T")

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer KEY`")

# Who may call what (ARCHITECTURE.md, invariant 8): scanners post, buyers act, auditors read.
POSTERS = (SCANNER, BUYER, ADMIN)
SCANNERS = (SCANNER, ADMIN)
READERS = (BUYER, AUDITOR, ADMIN)
AUDITORS = (AUDITOR, ADMIN)
ACTORS = (BUYER, ADMIN)
ADMINS = (ADMIN,)


# Dependencies are ``async def``: they never block, and a plain ``def`` would cost a hop to
# a worker thread per request (measured: single-event p99 from saturated to ~35 ms).
async def runner(request: Request) -> EmbeddedRunner:
    return request.app.state.runner


async def authenticate(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    if credentials is None or not credentials.credentials:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "an API key is required (Authorization: Bearer KEY)",
                            headers={"WWW-Authenticate": "Bearer"})
    found = find(request.app.state.principals, credentials.credentials)
    if found is not None:
        return found
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown API key",
                        headers={"WWW-Authenticate": "Bearer"})


def require(*roles: str) -> Callable[..., Any]:
    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"the role '{principal.role}' may not use this route "
                                f"(allowed: {', '.join(roles)})")
        return principal
    check.roles = frozenset(roles)  # type: ignore[attr-defined]  # (read by api.access)
    return check


Runner = Annotated[EmbeddedRunner, Depends(runner)]


async def engine_call(request: Request, fn: Callable[..., T], /, *args: Any) -> T:
    """``fn(*args)``, a call into the KPI engine (a query, the projections' status, a rebuild),
    on the projection service's low-priority threads (``ProjectionService.submit``): never on
    a request's thread, whose priority the engine's threads would take."""
    service = getattr(request.app.state, "projection_service", None)
    if service is None:  # (an app wired without a read side, as some tests are)
        return await asyncio.to_thread(fn, *args)
    return await asyncio.wrap_future(service.submit(fn, *args))
