"""The relay: decisions and alerts, from the store's notification log to their Kafka topics.

Nothing writes to Kafka and to the store at once (no dual writes): workers store decisions and
alerts with the facts they follow from, and the relay publishes them afterwards, in log order,
keyed by stock point. Its position is a tracking record of its own (``relay``), moved only
once Kafka has acknowledged everything up to it: delivery is at least once, and a message
published again after a crash carries the same ``notification_id``, by which consumers drop it.

Every worker runs a relay; one at a time publishes, the holder of a PostgreSQL advisory lock
(released with its connection when its worker stops or dies). It wakes on the store's
``NOTIFY`` after each insert and polls as a fallback.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson
import psycopg
from eventsourcing.utils import get_topic
from psycopg import sql

from domain.aggregates import ReferenceWait, StockPoint, SupplierScorecard
from streams.topics import KafkaAccess, Topics, alert_key, kafka_config
from streams.tracked_store import TrackedEventStore

log = logging.getLogger(__name__)

DECIDED = get_topic(StockPoint.Decided)
RAISED = get_topic(StockPoint.AlertRaised)
CHANGED = get_topic(StockPoint.AlertChanged)
REPEATED = get_topic(StockPoint.AlertRepeated)
# Alerts that belong to no stock point: notices about a supplier (review needed, contract
# breach, purchase order issued: keyed ``supplier:<id>``) and reference waits (keyed by the
# waiting Kafka key), published to the alerts topic as a stock point's are.
OTHER_RAISED = (get_topic(SupplierScorecard.AlertRaised), get_topic(ReferenceWait.AlertRaised))
OTHER_CHANGED = (get_topic(SupplierScorecard.AlertChanged), get_topic(ReferenceWait.AlertChanged))
RELAYED = [DECIDED, RAISED, CHANGED, REPEATED, *OTHER_RAISED, *OTHER_CHANGED]
LOCK_KEY = 0x7265_706C_6179  # "replay" in hex digits: the relay's advisory lock


def relayed_message(notification: Any, topics: Topics) -> tuple[str, bytes, bytes]:
    """The topic, key and value that publish one stored decision or alert change."""
    state = orjson.loads(notification.state)
    body: dict[str, Any] = {
        "notification_id": notification.id, "stream": notification.originator_id,
        "version": notification.originator_version,
        "kind": notification.topic.rsplit(":", 1)[-1], "recorded_at": state["timestamp"],
    }
    if notification.topic == DECIDED:
        topic, body["decision"] = topics.decisions, state["decision"]
    elif notification.topic == RAISED or notification.topic in OTHER_RAISED:
        topic = topics.alerts
        body["alert"] = {k: v for k, v in state["alert"].items() if k != "dedupe_key"}
    elif notification.topic == REPEATED:
        topic = topics.alerts
        body.update(alert_id=state["alert_id"], change="repeated", event_id=state["event_id"])
    else:
        topic = topics.alerts
        body.update({k: state[k] for k in ("alert_id", "status", "reason", "by")})
    return topic, alert_key(notification.originator_id).encode(), orjson.dumps(body)


class Relay:
    name = "relay"

    def __init__(self, store: TrackedEventStore, dsn: str, bootstrap: KafkaAccess | str, topics: Topics,
                 batch: int = 1000, poll_s: float = 0.5) -> None:
        self.store, self.dsn, self.topics = store, dsn, topics
        self.batch, self.poll_s = batch, poll_s
        self.bootstrap = bootstrap
        self.published = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Any = None

    def _new_producer(self) -> Any:
        from confluent_kafka import Producer
        return Producer(kafka_config(self.bootstrap) | {"acks": "all",
                         "enable.idempotence": True, "linger.ms": 2,
                         "partitioner": "murmur2_random"})

    def publish_once(self) -> int:
        """Publish what was stored after the relay's position; returns how many messages."""
        if self._producer is None:
            self._producer = self._new_producer()
        position = self.store.positions([self.name]).get(self.name, 0)
        page = self.store.recorder.select_notifications(
            start=position + 1, limit=self.batch, topics=RELAYED)
        if not page:
            return 0
        errors: list[Any] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        for n in page:
            topic, key, value = relayed_message(n, self.topics)
            while True:
                try:
                    self._producer.produce(topic, value, key,
                                           headers=[("notification_id", str(n.id).encode())],
                                           on_delivery=delivered)
                    break
                except BufferError:
                    self._producer.poll(0.1)
        left = self._producer.flush(30)
        if left or errors:
            raise RuntimeError(f"Kafka did not take {left or len(errors)} relayed messages: "
                               f"{errors[:1] or 'timed out'}")
        self.store.record_position(self.name, page[-1].id)
        self.published += len(page)
        return len(page)

    def run(self) -> None:
        """Publish while this relay holds the lock; wait for it otherwise. Until ``stop``."""
        channel = getattr(self.store.recorder, "channel_name", None)
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
                    if not got or not got[0]:
                        self._stop.wait(1.0)
                        continue
                    log.info("relay: publishing decisions and alerts")
                    if channel:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    while not self._stop.is_set():
                        if self.publish_once() >= self.batch:
                            continue
                        for _ in conn.notifies(timeout=self.poll_s, stop_after=1):
                            pass
            except Exception:
                log.exception("relay failed; starting again in 1 s")
                self._stop.wait(1.0)

    def start(self) -> Relay:
        self._thread = threading.Thread(target=self.run, name="relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._producer is not None:
            self._producer.flush(10)
