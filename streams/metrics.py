"""What operators scrape (issue 16, section 3): Prometheus metrics of one service process
(``ServiceMetrics``, the API's ``/metrics``) or Kafka worker (``WorkerMetrics``, served on
``REPLENISH_METRICS_PORT``).

Counted as they happen: events answered by outcome and refusal code (every way in: JSON,
scans, HL7, FHIR, CSV), the write batches' sizes and processing times, requests by route and
status class, requests turned away (429), webhook deliveries that failed. Read at each scrape
(``ServiceMetrics.refresh``, on the processor's thread): events queued for the write model, open
alerts by kind and severity, the projections' lag, the snapshot's and the last checkpoint's
age. One registry per service (not prometheus_client's global one), so that several services
in one process (the tests) count apart.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from domain.intake import Outcome

CONTENT_TYPE = CONTENT_TYPE_LATEST
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ProcessMetrics:
    """What every process with a write model counts: the API's service and each Kafka worker."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._series: dict[int, set[tuple[str, ...]]] = {}  # the label sets each gauge shows
        self.events = Counter("replenish_events", "Events answered, by outcome (accepted, duplicate, rejected, "
                              "queued) and refusal code (the first; none when not refused)",
                              ["outcome", "code"], registry=r)
        self.batch_events = Histogram("replenish_batch_events", "Events per write batch", buckets=SIZE_BUCKETS,
                                      registry=r)
        self.batch_seconds = Histogram("replenish_batch_seconds", "Seconds to decide and store a write batch",
                                       buckets=SECONDS_BUCKETS, registry=r)
        self.open_alerts = Gauge("replenish_open_alerts", "Open alerts, by kind and severity",
                                 ["kind", "severity"], registry=r)
        self.snapshot_age = Gauge("replenish_snapshot_age_seconds", "Seconds since the write model's last "
                                  "snapshot (or since start, before the first)", registry=r)
        self.stored_position = Gauge("replenish_store_position", "The last notification id the write model "
                                     "holds", registry=r)

    def replace_series(self, gauge: Gauge, values: dict[tuple[str, ...], float]) -> None:
        """Set a labelled gauge to exactly ``values``: the series shown before and not among
        them removed, the others set in place (never cleared first: a scrape meanwhile never
        sees none)."""
        shown = self._series.setdefault(id(gauge), set())
        for labels in shown - set(values):
            gauge.remove(*labels)
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        self._series[id(gauge)] = set(values)

    def observe_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        tally: Tally[tuple[str, str]] = Tally()
        for o in outcomes:
            code = str(o.errors[0].get("code")) if o.status == "rejected" and o.errors else "none"
            tally[(o.status, code)] += 1
        for (outcome, code), n in tally.items():
            self.events.labels(outcome, code).inc(n)

    def observe_batch(self, events: int, seconds: float) -> None:
        self.batch_events.observe(events)
        self.batch_seconds.observe(seconds)

    def refresh_model(self, processor: Any, snapshotter: Any = None) -> None:
        """The gauges read from the write model (on the processor's thread: it reads the model)."""
        self.stored_position.set(getattr(processor, "position", 0))
        tally: Tally[tuple[str, str]] = Tally(
            (str(a.get("kind")), str(a.get("severity"))) for a in processor.ledger.alerts.values()
            if a.get("status") == "open")
        self.replace_series(self.open_alerts, dict(tally))
        if snapshotter is not None:
            self.snapshot_age.set(snapshotter.age())

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ServiceMetrics(ProcessMetrics):
    """The API's service (``GET /metrics``)."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.requests = Histogram("replenish_http_request_seconds", "Seconds to the first byte of an answer, by "
                                  "method, route and status class", ["method", "route", "status"],
                                  buckets=SECONDS_BUCKETS, registry=r)
        self.turned_away = Counter("replenish_requests_turned_away", "Requests answered 429 (no room in the "
                                   "write model's queue)", registry=r)
        self.webhook_failures = Gauge("replenish_webhook_delivery_failures", "Failed webhook deliveries, by hook "
                                      "(since the hook was registered)", ["hook"], registry=r)
        self.queued = Gauge("replenish_ingest_queued_events", "Events admitted and not yet answered", registry=r)
        self.queue_limit = Gauge("replenish_ingest_queue_limit_events", "Events that may wait now (the queue's "
                                 "bound from the measured drain rate)", registry=r)
        self.projection_lag = Gauge("replenish_projection_lag_events", "Stored events the KPI projections do "
                                    "not hold yet", registry=r)
        self.checkpoint_age = Gauge("replenish_audit_checkpoint_age_seconds", "Seconds since the last signed "
                                    "audit checkpoint was made here", registry=r)

    def refresh(self, processor: Any, runner: Any, webhooks: Any = None) -> None:
        """Set the gauges read at a scrape (on the processor's thread: it reads the model)."""
        self.queued.set(getattr(runner, "queued", 0))
        if hasattr(runner, "limit"):
            self.queue_limit.set(runner.limit())
        self.refresh_model(processor, getattr(runner, "snapshotter", None))
        checkpointer = getattr(runner, "checkpointer", None)
        if checkpointer is not None:
            self.checkpoint_age.set(checkpointer.age())
        if webhooks is not None:
            for hook in list(getattr(webhooks, "hooks", {}).values()):
                self.webhook_failures.labels(hook.id).set(hook.failures)

    def refresh_projections(self, status: dict[str, Any]) -> None:
        self.projection_lag.set(max(0, int(status.get("stored", 0)) - int(status.get("position", 0))))


class WorkerMetrics(ProcessMetrics):
    """A Kafka worker's (``REPLENISH_METRICS_PORT``): besides the write model's, per partition it
    holds the consumer's lag (messages after the last one stored, read from the broker's high
    watermark by the stall watchdog each second) and its position, and the stalls, rejoins,
    dead letters and reference waits that ran out."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.lag = Gauge("replenish_consumer_lag", "Messages of a partition this worker holds that it has not "
                         "stored yet (high watermark − next offset)", ["topic", "partition"], registry=r)
        self.position = Gauge("replenish_consumer_position", "The next offset this worker stores of a partition "
                              "it holds", ["topic", "partition"], registry=r)
        self.stalls = Counter("replenish_worker_stalls", "Stalls seen: a partition with lag and nothing stored "
                              "for REPLENISH_WORKER_STALL_SECONDS", registry=r)
        self.rejoins = Counter("replenish_worker_rejoins", "Times this worker left and rejoined its group after "
                               "a stall", registry=r)
        self.dead_letters = Counter("replenish_dead_letters", "Messages sent to the dead-letter topic (not an "
                                    "event: not JSON, no principal, the processor failed on it)", registry=r)
        self.parked = Gauge("replenish_parked_events", "Events parked until the reference data sent before them "
                            "is stored (streams.parking)", registry=r)
        self.reference_waits_expired = Counter("replenish_reference_waits_expired", "Batches judged before the "
                                               "reference data they name were stored (the wait ran out)", registry=r)

    def observe_partitions(self, partitions: dict[tuple[str, int], tuple[int, int]]) -> None:
        """``partitions``: each partition held, its next offset to store and its lag; the ones
        not held any more are dropped."""
        self.replace_series(self.lag, {(t, str(p)): lag for (t, p), (_, lag) in partitions.items()})
        self.replace_series(self.position, {(t, str(p)): position for (t, p), (position, _) in partitions.items()})


__all__ = ["CONTENT_TYPE", "ProcessMetrics", "ServiceMetrics", "WorkerMetrics"]
