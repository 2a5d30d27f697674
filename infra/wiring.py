"""The wiring of each profile: which store, transport and app a set of settings gives."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from api.app import create_app
from infra.settings import Settings
from projections.bi_http import Credentials
from projections.service import BiAccess, ProjectionService
from streams import snapshots
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


def snapshot_dir(settings: Settings) -> Path:
    """Where the embedded profile keeps its write-model snapshots (``streams.snapshots``)."""
    return settings.data_dir / "snapshots"


def build_processor(settings: Settings) -> Processor:
    """The write model: on the embedded profile the newest valid snapshot plus the log after
    it (a full replay when there is none); on the distributed profile a full replay."""
    store = build_store(settings)
    key = settings.case_id_key.get_secret_value().encode()
    snapshot = None
    if settings.profile != "distributed":
        end = int(store.recorder.max_notification_id() or 0)
        snapshot = snapshots.newest(snapshot_dir(settings), key, at_most=end)
    return Processor(store, key,
                     late_after=timedelta(minutes=settings.late_after_minutes),
                     procurement=settings.procurement_settings(),
                     max_event_age=timedelta(days=settings.max_event_age_days), snapshot=snapshot)


def build_app(settings: Settings) -> FastAPI:
    """The API over the embedded runner (or, distributed, over Kafka); ``settings`` must be
    ``prepared()``."""
    if settings.profile == "distributed":
        from infra.wiring_distributed import build_distributed_app
        return build_distributed_app(settings)
    runner = EmbeddedRunner(build_processor(settings), max_batch=settings.max_batch,
                            max_queued=settings.max_queued_events,
                            max_queue_seconds=settings.max_queue_seconds)
    runner.snapshotter = snapshots.Snapshotter(
        snapshots.FileSnapshots(snapshot_dir(settings), settings.case_id_key.get_secret_value().encode()),
        settings.snapshot_every_events, settings.snapshot_every_minutes)
    runner.snapshotter.last_position = runner.processor.position  # what start-up read
    if settings.audit_signing_key is not None:
        from streams import checkpoints
        runner.checkpointer = checkpoints.Checkpointer(
            runner.processor.store, checkpoints.load_signing_key(settings.audit_signing_key),
            settings.audit_checkpoint_file, settings.audit_checkpoint_every_events,
            settings.audit_checkpoint_every_minutes)
    return create_app(runner, settings.principals(), settings.data_dir,
                      projections=build_projections(settings, runner.processor.store),
                      listeners=hl7_listeners(settings, runner),
                      ui_secret=settings.ui_secret(), metrics_allow=settings.metrics_allow,
                      key_file=settings.api_keys_file, load_principals=settings.principals)


def hl7_listeners(settings: Settings, runner: Any) -> tuple[Any, ...]:
    """The HL7 MLLP listener when REPLENISH_HL7_PORT is set (in the serving process: it submits
    as the API does, to the embedded store or to Kafka)."""
    if settings.hl7_port is None:
        return ()
    from api.routes.ops import allowed_networks
    from streams.hl7_feed import Hl7Listener, parse_senders
    return (Hl7Listener(runner.submit, parse_senders(settings.hl7_senders), settings.host, settings.hl7_port,
                        allowed_networks(settings.hl7_allow)),)


def build_projections(settings: Settings, store: EventStore) -> ProjectionService:
    """The read side over ``store``: ClickHouse at REPLENISH_CLICKHOUSE_DSN (default: the
    embedded engine under the data directory), and BI access when REPLENISH_BI_PASSWORD is set."""
    password = settings.bi_password.get_secret_value()
    bi = BiAccess(settings.clickhouse_http_host, settings.clickhouse_http_port,
                  Credentials(settings.bi_user or "bi", password)) if password else None
    return ProjectionService(
        settings.projections_dsn(), settings.clickhouse_database, store.notifications,
        lambda: store.recorder.max_notification_id() or 0, bi=bi, niceness=settings.projections_niceness,
        bi_off="REPLENISH_BI_PASSWORD is not set (give REPLENISH_BI_USER and REPLENISH_BI_PASSWORD "
               "to let BI tools query the ClickHouse HTTP interface)")
