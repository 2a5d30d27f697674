"""The FastAPI app factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api import errors, ui
from api.keys import KeyWatcher
from api.responses import JSON
from api.routes import (
    admin,
    alerts,
    audit,
    epcis,
    events,
    fhir,
    imports,
    kpis,
    ops,
    procurement,
    recalls,
    stock_points,
    trace,
    webhooks,
)
from domain.intake import Principal
from streams.embedded import EmbeddedRunner
from streams.metrics import ServiceMetrics
from streams.processor import tune_collector
from streams.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)


def create_app(runner: EmbeddedRunner, principals: dict[str, Principal],
               data_dir: Path, projections: Any = None, listeners: tuple[Any, ...] = (),
               ui_secret: bytes | None = None, metrics_allow: str = "127.0.0.1/32,::1/128",
               key_file: Path | None = None, load_principals: Any = None) -> FastAPI:
    """``projections``: the read side (``projections.service.ProjectionService``), started
    with the app and woken after each stored batch; without it the KPI routes answer 503.
    ``listeners``: other ways in served with the app (``streams.hl7_feed.Hl7Listener``), each
    with ``start`` and ``stop``. ``ui_secret``: the page's session-cookie key (``api.ui``).
    ``metrics_allow``: the addresses that read ``/metrics`` without a key. ``key_file`` and
    ``load_principals``: re-read the keys when that file changes and on SIGHUP."""
    dispatcher = WebhookDispatcher(data_dir / "webhooks.json", lambda seq: runner.read(
        runner.processor.alert_feed_since, seq))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        note = getattr(app.state, "start_note", None)
        if note:  # how the model was built (logging is set up by now)
            log.info("%s", note)
        await runner.start()
        watcher = None
        if key_file is not None and load_principals is not None:
            watcher = KeyWatcher(key_file, load_principals, lambda found: setattr(app.state, "principals", found))
            watcher.start()
        runner.listeners.append(lambda _alerts: dispatcher.wake())
        await dispatcher.start()
        waking = None
        if projections is not None:
            await asyncio.to_thread(projections.start)
            app.state.projections = projections.reader
            waking = asyncio.create_task(_wake_after_batches(runner, projections), name="projections-wake")
        started = []
        try:
            for listener in listeners:
                await listener.start()
                started.append(listener)
            tune_collector()  # start-up is done: what it made lives as long as the process
            yield
        finally:
            for listener in started:
                await listener.stop()
            if waking is not None:
                waking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waking
                await asyncio.to_thread(projections.stop)
            await dispatcher.stop()
            if watcher is not None:
                await watcher.stop()
            await runner.stop()

    # /docs and /redoc serve Swagger UI's and ReDoc's assets from the service (a hospital
    # network reaches no CDN), under /static-offline-docs.
    app = FastAPIOffline(
        title="replenish",
        summary="Real-time, event-sourced replenishment for hospital supply chains",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=JSON,
    )
    errors.install(app)
    app.state.metrics = runner.metrics = ServiceMetrics()
    app.state.metrics_allow = ops.allowed_networks(metrics_allow)
    app.add_middleware(RequestTimer, metrics=app.state.metrics)
    app.state.runner = runner
    app.state.principals = principals
    app.state.webhooks = dispatcher
    app.state.projection_service = projections
    app.state.projections = None  # the KPI reader, once the projections have started
    for module in (events, stock_points, alerts, webhooks, audit, recalls, trace, procurement, kpis, admin, imports,
                   fhir, epcis, ops):
        app.include_router(module.router)
    ui.install(app, ui_secret)  # the page for the supply team, /ui/

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestTimer:
    """Seconds to the first byte of each answer, by method, route (its template, so that ids
    do not make new series) and status class (``replenish_http_request_seconds``). Plain ASGI:
    no per-request task, and a stream is timed to its first byte."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        started = False

        def observe(status: int) -> None:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"  # (a bounded set of series)
            self.metrics.requests.labels(method, path, f"{status // 100}xx").observe(time.perf_counter() - began)

        async def timed(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed)
        except Exception:
            if not started:  # (answered 500 by the server's error middleware, outside this one)
                observe(500)
            raise


async def _wake_after_batches(runner: EmbeddedRunner, projections: Any) -> None:
    """Wake the projection follower after each stored batch (it catches up on its own thread;
    this only sets an event, so the runner never waits for it)."""
    while True:
        await runner.wait_changed(60.0)
        projections.wake()
