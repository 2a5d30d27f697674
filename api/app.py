"""The FastAPI app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.responses import JSON
from api.routes import alerts, audit, events, stock_points
from domain.intake import Principal
from streams.embedded import EmbeddedRunner


def create_app(runner: EmbeddedRunner, principals: dict[str, Principal]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    app = FastAPI(
        title="replenish",
        summary="Real-time, event-sourced replenishment for hospital supply chains",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=JSON,
    )
    app.state.runner = runner
    app.state.principals = principals
    for module in (events, stock_points, alerts, audit):
        app.include_router(module.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
