"""The FastAPI app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from api.responses import JSON
from api.routes import alerts, audit, events, stock_points, webhooks
from domain.intake import Principal
from streams.embedded import EmbeddedRunner
from streams.webhooks import WebhookDispatcher


def create_app(runner: EmbeddedRunner, principals: dict[str, Principal],
               data_dir: Path) -> FastAPI:
    dispatcher = WebhookDispatcher(data_dir / "webhooks.json", lambda seq: runner.read(
        runner.processor.alert_feed_since, seq))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runner.start()
        runner.listeners.append(lambda _alerts: dispatcher.wake())
        await dispatcher.start()
        try:
            yield
        finally:
            await dispatcher.stop()
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
    app.state.webhooks = dispatcher
    for module in (events, stock_points, alerts, webhooks, audit):
        app.include_router(module.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
