"""The wiring of the distributed profile: the PostgreSQL event store, Kafka topics, Faust
workers (each with a relay) and the API producing to Kafka."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from datetime import timedelta

from fastapi import FastAPI

from api.app import create_app
from infra.logs import log_config
from infra.settings import Settings, SettingsError
from streams.kafka_app import WorkerConfig, create_worker_app
from streams.kafka_ingest import DistributedRunner, KafkaIngest
from streams.metrics import WorkerMetrics
from streams.processor import Processor, tune_collector
from streams.relay import Relay
from streams.snapshots import PgSnapshots, Snapshotter
from streams.store import EventStore, postgres_env
from streams.topics import Topics, ensure_topics
from streams.tracked_store import TrackedEventStore

log = logging.getLogger(__name__)


def topics_of(settings: Settings) -> Topics:
    return Topics(settings.kafka_topic_prefix)


def postgres_store(settings: Settings) -> EventStore:
    settings.require_distributed()
    return EventStore(env=postgres_env(settings.postgres_dsn.get_secret_value()))


def make_topics(settings: Settings) -> dict[str, int]:
    """Create the missing topics and check the others; each one's partition count."""
    settings.require_distributed()
    return ensure_topics(settings.kafka_access(), topics_of(settings), settings.kafka_partitions,
                         settings.kafka_replication)


def _processor(store: EventStore, settings: Settings, role: str,
               snapshots_from: PgSnapshots | None = None) -> Processor:
    """A worker's model (procurement role ``needs``: its stock points' requisitions) or the
    API's (``notices``: the scorecards and supplier notices, one writer of those streams);
    ``snapshots_from``: start from its newest valid snapshot (the workers')."""
    procurement = dataclasses.replace(settings.procurement_settings(), role=role)
    snapshot = None
    if snapshots_from is not None:
        snapshot = snapshots_from.newest(at_most=int(store.recorder.max_notification_id() or 0))
    return Processor(store, settings.case_id_key.get_secret_value().encode(),
                     late_after=timedelta(minutes=settings.late_after_minutes), procurement=procurement,
                     max_event_age=timedelta(days=settings.max_event_age_days), snapshot=snapshot)


def build_distributed_app(settings: Settings) -> FastAPI:
    """The API on the distributed profile: events go to Kafka; reads come from a model that
    follows the PostgreSQL store. ``settings`` must be ``prepared()``."""
    from infra.wiring import build_projections, hl7_listeners

    make_topics(settings)
    store = postgres_store(settings)
    # The API's model starts as the workers' do: from their newest valid snapshot and the log
    # after it (its procurement role swapped in: what the models learn does not depend on it).
    snapshots = PgSnapshots(settings.postgres_dsn.get_secret_value(), settings.case_id_key.get_secret_value().encode())
    processor = _processor(store, settings, "notices", snapshots)
    runner = DistributedRunner(
        processor, KafkaIngest(settings.kafka_access(), topics_of(settings), settings.outcome_wait_seconds))
    # The read side follows the same store: a ClickHouse server (REPLENISH_CLICKHOUSE_DSN), or
    # on one machine the embedded engine in this process.
    app = create_app(runner, settings.principals(), settings.data_dir,
                     projections=build_projections(settings, store), listeners=hl7_listeners(settings, runner),
                      ui_secret=settings.ui_secret(), metrics_allow=settings.metrics_allow,
                      key_file=settings.api_keys_file, load_principals=settings.principals)
    app.state.poster_roles = settings.roles_by_principal()
    restored = processor.restored_from
    app.state.start_note = (f"API: the model rebuilt up to position {processor.position} from "
                            + (f"snapshot {restored.name} and the log after it" if restored else "the whole log"))
    return app


def worker_settings(settings: Settings) -> Settings:
    """A worker needs the case-id key and the principals that may send events; API keys are
    optional (gateways alone will do). Development mode invents what is missing."""
    if settings.dev or settings.principals():
        settings = settings.prepared()
    if not settings.case_id_key.get_secret_value():
        raise SettingsError("REPLENISH_CASE_ID_KEY is not set: case ids are pseudonymised with this "
                            "key and a worker will not start without it")
    if not settings.roles_by_principal():
        raise SettingsError("no principal may send events: set REPLENISH_API_KEYS (the API's) "
                            "and/or REPLENISH_GATEWAYS (principal:role entries)")
    settings.require_distributed()
    return settings


def run_worker(settings: Settings, relay: bool = True, loglevel: str = "INFO") -> None:
    """Run one worker until it is stopped (SIGTERM or Ctrl-C): it rebuilds the model from the
    store, joins the consumer group and processes the partitions it is given."""
    import faust

    settings = worker_settings(settings)
    counts = make_topics(settings)
    topics = topics_of(settings)
    dsn = settings.postgres_dsn.get_secret_value()
    # Workers start from the newest valid snapshot in the store's database and write them in
    # turn (streams.snapshots.PgSnapshots), as the embedded service does in files.
    pg_snapshots = PgSnapshots(dsn, settings.case_id_key.get_secret_value().encode())
    processor = _processor(TrackedEventStore(postgres_env(dsn)), settings, "needs", pg_snapshots)
    name = f"{socket.gethostname()}-{os.getpid()}"
    config = WorkerConfig(
        bootstrap=settings.kafka_access(), topics=topics, roles=settings.roles_by_principal(),
        events_partitions=counts[topics.events], group_id=settings.worker_group,
        batch_max=settings.worker_batch, batch_within_s=settings.worker_batch_within_ms / 1000,
        session_timeout_s=settings.kafka_session_timeout_seconds,
        stall_s=settings.worker_stall_seconds, reference_wait_s=settings.reference_wait_seconds,
        park=True,  # past that wait, a key's events are parked in the store (streams.parking)
        datadir=settings.data_dir / "worker")  # Faust's; empty, as workers keep no Faust tables
    config.datadir.mkdir(parents=True, exist_ok=True)
    restored = processor.restored_from
    app = create_worker_app(processor, config)
    app.partition_worker.start_note = (
        f"worker {name}: the model rebuilt up to position {processor.position} from "
        + (f"snapshot {restored.name} and the log after it" if restored else "the whole log"))
    snapshotter = Snapshotter(pg_snapshots, settings.snapshot_every_events, settings.snapshot_every_minutes)
    snapshotter.last_position = processor.position  # what start-up read
    app.partition_worker.snapshotter = snapshotter
    metrics_server = None
    if settings.metrics_port is not None:
        from infra.worker_metrics import MetricsServer
        app.partition_worker.metrics = WorkerMetrics()
        metrics_server = MetricsServer(app.partition_worker.metrics, settings.host, settings.metrics_port,
                                       settings.metrics_allow, settings.principals).start()
    watcher = None
    if settings.api_keys_file is not None:  # its principals' roles followed as the API's keys are
        from api.keys import KeyWatcher
        app.partition_worker.reload_roles = settings.roles_by_principal
        watcher = KeyWatcher(settings.api_keys_file, settings.roles_by_principal, app.partition_worker.set_roles)
        watcher.start_thread()
    tune_collector()
    relayer = Relay(TrackedEventStore(postgres_env(dsn)), dsn, settings.kafka_access(), topics).start() \
        if relay else None
    try:
        # REPLENISH_LOG_FORMAT=json: the worker's logs as JSON lines too (Faust's own included).
        logging_config = log_config("json", loglevel) if settings.log_format == "json" else None
        faust.Worker(app, loglevel=loglevel, quiet=True, logging_config=logging_config).execute_from_commandline()
    finally:
        if watcher is not None:
            watcher.stop_thread()
        if metrics_server is not None:
            metrics_server.stop()
        if relayer is not None:
            relayer.stop()
        if app.watchdog is not None:
            app.watchdog.stop()
        if app.partition_worker is not None:
            app.partition_worker.close()
