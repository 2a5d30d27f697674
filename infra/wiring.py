"""The wiring of each profile: which store, transport and app a set of settings gives."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from api.app import create_app
from infra.settings import Settings
from streams.embedded import EmbeddedRunner
from streams.processor import Processor
from streams.store import EventStore, sqlite_env


def sqlite_path(settings: Settings) -> Path:
    """The embedded profile's event store file."""
    return settings.data_dir / "events.sqlite"


def build_store(settings: Settings) -> EventStore:
    if settings.profile == "distributed":
        from infra.wiring_distributed import postgres_store
        return postgres_store(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return EventStore(env=sqlite_env(str(sqlite_path(settings))))


def build_processor(settings: Settings) -> Processor:
    return Processor(build_store(settings), settings.case_id_key.get_secret_value().encode(),
                     late_after=timedelta(minutes=settings.late_after_minutes))


def build_app(settings: Settings) -> FastAPI:
    """The API over the embedded runner (or, distributed, over Kafka); ``settings`` must be
    ``prepared()``."""
    if settings.profile == "distributed":
        from infra.wiring_distributed import build_distributed_app
        return build_distributed_app(settings)
    runner = EmbeddedRunner(build_processor(settings), max_batch=settings.max_batch)
    return create_app(runner, settings.principals(), settings.data_dir)
