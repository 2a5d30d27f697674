"""The distributed profile's Kafka topics: their names, how an event is routed to one (topic
and key), which partition a key lands on, and their administration with ``confluent-kafka``.

| topic | key | holds |
| --- | --- | --- |
| ``replenish.events.v1`` | stock point ``sku@location`` | stock facts, schedule, purchase orders, overrides |
| ``replenish.reference.v1`` (compacted, 1 partition) | ``item:<sku>``, ``recall:<ref>``, ... | master data, recalls, lot changes and holds |
| ``replenish.dead_letter.v1`` | as received | messages that are not events at all, with the reason |
| ``replenish.decisions.v1`` | stock point | decisions, relayed from the store's log |
| ``replenish.alerts.v1`` | stock point (``alert_key``) | alerts raised, acknowledged, resolved, relayed from the log |
| ``replenish.outcomes.v1`` | reply id or event id | each consumed event's outcome, after its store transaction |

Keys hash to partitions as Kafka's Java clients do (murmur2), so that a stock point's events
share one partition whoever produces them: ``confluent-kafka`` producers set
``partitioner=murmur2_random`` (librdkafka's own default hashes differently).
"""

from __future__ import annotations

import hashlib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

from domain.barcodes import parse_gs1
from domain.events import EVENT_TYPES, LOT, MASTER, PURCHASE, RECALL, SCHEDULE

EVENTS = "replenish.events.v1"
REFERENCE = "replenish.reference.v1"
DEAD_LETTER = "replenish.dead_letter.v1"
DECISIONS = "replenish.decisions.v1"
ALERTS = "replenish.alerts.v1"
OUTCOMES = "replenish.outcomes.v1"

# Message headers.
PRINCIPAL = "principal"  # who sent the event: a gateway's or an API caller's principal name
REPLY_TO = "reply_to"  # the producer's id for the outcome it waits for
REASON = "dead_letter_reason"
# On an event of the events topic: the end offset of the reference topic (one partition) when
# it was produced, after the reference data sent before it. A worker validates the event only
# once the store holds the reference partition up to there (causal order across topics).
REFERENCE_OFFSET = "reference_offset"

DAY_MS = 86_400_000
REFERENCE_CATEGORIES = frozenset({MASTER, LOT, RECALL})
ResolveGtin = Callable[[str], str | None]


@dataclass(frozen=True)
class Topics:
    """The topic names, with an optional prefix for deployments (or test runs) that share a
    cluster: ``<prefix>replenish.events.v1``."""

    prefix: str = ""

    @property
    def events(self) -> str:
        return self.prefix + EVENTS

    @property
    def reference(self) -> str:
        return self.prefix + REFERENCE

    @property
    def dead_letter(self) -> str:
        return self.prefix + DEAD_LETTER

    @property
    def decisions(self) -> str:
        return self.prefix + DECISIONS

    @property
    def alerts(self) -> str:
        return self.prefix + ALERTS

    @property
    def outcomes(self) -> str:
        return self.prefix + OUTCOMES

    @property
    def consumed(self) -> tuple[str, str]:
        """What workers consume: events, and the reference data they store once."""
        return self.events, self.reference


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: Mapping[str, str]


def topic_specs(topics: Topics, partitions: int, replication: int = 1) -> list[TopicSpec]:
    """Each topic's partitions and settings. The reference topic has one partition, so master
    data and recalls keep the order they were sent in; it is compacted (the latest record per
    key stays), but no record is compacted away within ``min.compaction.lag.ms`` (7 days), so a
    worker that was down for less than that still sees every one."""
    isr = str(min(2, replication))
    keep = {"cleanup.policy": "delete", "min.insync.replicas": isr}
    return [
        TopicSpec(topics.events, partitions, {**keep, "retention.ms": str(7 * DAY_MS)}),
        TopicSpec(topics.reference, 1, {"cleanup.policy": "compact", "min.insync.replicas": isr,
                                        "min.compaction.lag.ms": str(7 * DAY_MS)}),
        TopicSpec(topics.dead_letter, 1, {**keep, "retention.ms": str(30 * DAY_MS)}),
        TopicSpec(topics.decisions, partitions, {**keep, "retention.ms": str(30 * DAY_MS)}),
        TopicSpec(topics.alerts, partitions, {**keep, "retention.ms": str(30 * DAY_MS)}),
        TopicSpec(topics.outcomes, partitions, {**keep, "retention.ms": str(DAY_MS // 24)}),
    ]


class TopicError(RuntimeError):
    """The cluster's topics do not match what the profile needs."""


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaAccess:
    """How every client of ours reaches the cluster: the bootstrap servers and the transport's
    security (``REPLENISH_KAFKA_SECURITY_PROTOCOL`` and the SASL and SSL settings beside it;
    README, "Distributed settings"). The password and the key's password never show in a repr."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None  # the client's certificate (PEM), with its key
    ssl_key_location: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"security protocol {self.security_protocol!r}: one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.sasl and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(f"SASL mechanism {self.sasl_mechanism!r}: one of {', '.join(SASL_MECHANISMS)}")
        if self.sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security protocol {self.security_protocol} needs a SASL user name and password")
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise ValueError("a client certificate needs its key, and a key its certificate")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def client_config(self) -> dict[str, str]:
        """librdkafka's settings (``confluent-kafka`` producers, consumers, admin clients)."""
        config = {"bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol}
        if self.sasl:
            config.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username or "",
                           "sasl.password": self.sasl_password or ""})
        if self.tls:
            optional = {"ssl.ca.location": self.ssl_ca_location,
                        "ssl.certificate.location": self.ssl_certificate_location,
                        "ssl.key.location": self.ssl_key_location, "ssl.key.password": self.ssl_key_password}
            config.update({k: v for k, v in optional.items() if v})
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of aiokafka's connections (Faust's), from the same files."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_ca_location)
        if self.ssl_certificate_location:
            context.load_cert_chain(self.ssl_certificate_location, self.ssl_key_location, self.ssl_key_password)
        return context

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (None on plain text)."""
        import faust

        if self.sasl:
            return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                         ssl_context=self.ssl_context(), mechanism=self.sasl_mechanism)
        context = self.ssl_context()
        return faust.SSLCredentials(context) if context is not None else None


def kafka_config(access: KafkaAccess | str) -> dict[str, str]:
    """librdkafka's settings to reach the cluster: ``access``'s, or plain text to the bootstrap
    servers a string names (benchmarks, tests)."""
    return (access if isinstance(access, KafkaAccess) else KafkaAccess(access)).client_config()


def bootstrap_of(access: KafkaAccess | str) -> str:
    return access.bootstrap if isinstance(access, KafkaAccess) else access


def ensure_topics(bootstrap: KafkaAccess | str, topics: Topics, partitions: int, replication: int = 1,
                  timeout_s: float = 30.0) -> dict[str, int]:
    """Create the missing topics (idempotent) and check the others; returns each topic's
    partition count. An existing topic keeps its partitions (adding some would move keys to
    other partitions) and the reference topic must be compacted."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient(kafka_config(bootstrap))
    specs = topic_specs(topics, partitions, replication)
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication,
                      config=dict(s.config)) for s in missing],
            operation_timeout=timeout_s, request_timeout=timeout_s)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another process made it
                    raise TopicError(f"could not create topic {name}: {exc}") from exc
    # A topic just created takes a moment to show in the metadata of every broker.
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=timeout_s).topics
        counts = {s.name: len(metadata[s.name].partitions) for s in specs
                  if s.name in metadata and metadata[s.name].error is None}
        absent = [s.name for s in specs if not counts.get(s.name)]
        resource = ConfigResource("topic", topics.reference)
        try:
            config = None if absent else admin.describe_configs([resource])[resource].result(timeout=timeout_s)
        except KafkaException:
            config = None
        if config is not None:
            break
        if time.monotonic() > deadline:
            raise TopicError(f"topics not visible after creating them: {', '.join(absent) or topics.reference}")
        time.sleep(0.2)
    if config["cleanup.policy"].value != "compact":
        raise TopicError(f"topic {topics.reference} must be compacted (cleanup.policy=compact), "
                         f"not {config['cleanup.policy'].value}")
    return counts


def partition_of(key: str, partitions: int) -> int:
    """The partition a key lands on with Kafka's default partitioner (murmur2)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def stock_point_key(sp_id: str) -> str:
    """``sp:<sku>@<location>`` (a stream id) -> ``<sku>@<location>`` (its Kafka key)."""
    return sp_id.removeprefix("sp:")


def alert_key(stream_id: str) -> str:
    """The Kafka key of a stream's decisions and alerts: a stock point's ``sku@location``
    (``stock_point_key``), a supplier's notices ``supplier:<id>`` (stream ``scorecard:<id>``),
    a reference wait's the key that waits (stream ``wait:<key>``).

    >>> alert_key("sp:GLV-M@W1"), alert_key("scorecard:ACME"), alert_key("wait:GLV-M@W1")
    ('GLV-M@W1', 'supplier:ACME', 'GLV-M@W1')
    """
    if stream_id.startswith("scorecard:"):
        return "supplier:" + stream_id.removeprefix("scorecard:")
    if stream_id.startswith("wait:"):
        return stream_id.removeprefix("wait:")
    return stock_point_key(stream_id)


def route(event: dict[str, Any], topics: Topics, resolve_gtin: ResolveGtin) -> tuple[str, str | None]:
    """The topic and key of an event: reference data to the reference topic, keyed by what it
    describes; everything else to the events topic, keyed by its stock point (``sku@location``,
    the SKU found from a GTIN or barcode when that is all the event names)."""
    etype = event.get("type")
    spec = EVENT_TYPES.get(etype) if isinstance(etype, str) else None
    if spec is not None and spec.category in REFERENCE_CATEGORIES:
        return topics.reference, _reference_key(event, spec.category)
    if spec is not None and spec.category == SCHEDULE and _text(event.get("case_id")):
        # A case's events stay in order; its id (pseudonymised only by the worker) is hashed.
        digest = hashlib.sha256(str(event["case_id"]).encode()).hexdigest()[:24]
        return topics.events, f"case:{digest}"
    if spec is not None and spec.category == PURCHASE and _text(event.get("po_id")):
        return topics.events, f"po:{event['po_id']}"
    location = event.get("to_location") if etype == "transfer" else event.get("location")
    sku = _item(event, resolve_gtin)
    if _text(location) and sku:
        return topics.events, f"{sku}@{location}"
    eid = event.get("event_id")
    return topics.events, (f"event:{eid}" if _text(eid) else None)


def _reference_key(event: dict[str, Any], category: str) -> str | None:
    if category == MASTER:
        kind = str(event.get("type", "")).removesuffix("_registered")
        value = event.get("sku" if kind == "item" else kind)
        return f"{kind}:{value}" if _text(value) else None
    if category == RECALL:
        return f"recall:{event['reference']}" if _text(event.get("reference")) else None
    item = event.get("sku") or event.get("gtin")
    return f"lot:{item}/{event.get('lot')}" if _text(item) else None


def _item(event: dict[str, Any], resolve_gtin: ResolveGtin) -> str | None:
    sku = event.get("sku")
    if _text(sku):
        return str(sku)
    gtin = event.get("gtin")
    if not _text(gtin) and _text(event.get("barcode")):
        fields, _ = parse_gs1(str(event["barcode"]))
        gtin = fields.get("gtin") if fields else None
    if _text(gtin):
        return resolve_gtin(str(gtin)) or f"gtin:{gtin}"
    return None


def _text(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip() != ""
