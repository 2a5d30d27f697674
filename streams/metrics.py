"""What operators scrape (issue 16, section 3): Prometheus metrics of one service process.

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


class ServiceMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter("replenish_events", "Events answered, by outcome (accepted, duplicate, rejected, "
                              "queued) and refusal code (the first; none when not refused)",
                              ["outcome", "code"], registry=r)
        self.batch_events = Histogram("replenish_batch_events", "Events per write batch", buckets=SIZE_BUCKETS,
                                      registry=r)
        self.batch_seconds = Histogram("replenish_batch_seconds", "Seconds to decide and store a write batch",
                                       buckets=SECONDS_BUCKETS, registry=r)
        self.requests = Histogram("replenish_http_request_seconds", "Seconds to the first byte of an answer, by "
                                  "method, route and status class", ["method", "route", "status"],
                                  buckets=SECONDS_BUCKETS, registry=r)
        self.turned_away = Counter("replenish_requests_turned_away", "Requests answered 429 (no room in the "
                                   "write model's queue)", registry=r)
        self.webhook_failures = Gauge("replenish_webhook_delivery_failures", "Failed webhook deliveries, by hook "
                                      "(since the hook was registered)", ["hook"], registry=r)
        self.queued = Gauge("replenish_ingest_queued_events", "Events admitted and not yet answered", registry=r)
        self.open_alerts = Gauge("replenish_open_alerts", "Open alerts, by kind and severity",
                                 ["kind", "severity"], registry=r)
        self.projection_lag = Gauge("replenish_projection_lag_events", "Stored events the KPI projections do "
                                    "not hold yet", registry=r)
        self.snapshot_age = Gauge("replenish_snapshot_age_seconds", "Seconds since the write model's last "
                                  "snapshot (or since start, before the first)", registry=r)
        self.checkpoint_age = Gauge("replenish_audit_checkpoint_age_seconds", "Seconds since the last signed "
                                    "audit checkpoint was made here", registry=r)
        self.stored_position = Gauge("replenish_store_position", "The last notification id the write model "
                                     "holds", registry=r)

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

    def refresh(self, processor: Any, runner: Any, webhooks: Any = None) -> None:
        """Set the gauges read at a scrape (on the processor's thread: it reads the model)."""
        self.queued.set(getattr(runner, "queued", 0))
        self.stored_position.set(getattr(processor, "position", 0))
        tally: Tally[tuple[str, str]] = Tally(
            (str(a.get("kind")), str(a.get("severity"))) for a in processor.ledger.alerts.values()
            if a.get("status") == "open")
        self.open_alerts.clear()
        for (kind, severity), n in tally.items():
            self.open_alerts.labels(kind, severity).set(n)
        for made, gauge in ((getattr(runner, "snapshotter", None), self.snapshot_age),
                            (getattr(runner, "checkpointer", None), self.checkpoint_age)):
            if made is not None:
                gauge.set(made.age())
        if webhooks is not None:
            for hook in list(getattr(webhooks, "hooks", {}).values()):
                self.webhook_failures.labels(hook.id).set(hook.failures)

    def refresh_projections(self, status: dict[str, Any]) -> None:
        self.projection_lag.set(max(0, int(status.get("stored", 0)) - int(status.get("position", 0))))

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "ServiceMetrics"]
