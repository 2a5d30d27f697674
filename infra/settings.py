"""One settings object, read from the environment (prefix ``REPLENISH_``)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.codes import ROLES
from domain.intake import Principal
from streams.procurement import ProcurementSettings
from streams.topics import KafkaAccess


class SettingsError(RuntimeError):
    """The environment does not describe a service that may start."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REPLENISH_", extra="ignore")

    profile: Literal["embedded", "distributed"] = "embedded"
    data_dir: Path = Path("data")
    api_keys: SecretStr = SecretStr("")
    # More keys, one "KEY-OR-HASH role [principal]" a line (a hash: sha256=HEX); re-read by the
    # API when it changes and on SIGHUP.
    api_keys_file: Path | None = None
    case_id_key: SecretStr = SecretStr("")
    # The page's (/ui/) session cookies are signed with this (32 characters or more); unset, a
    # random key per process: sessions then end at a restart, and differ between API processes.
    ui_session_secret: SecretStr = SecretStr("")
    # /metrics without a key from these addresses (comma-separated addresses or networks).
    metrics_allow: str = "127.0.0.1/32,::1/128"
    # A Kafka worker serves GET /metrics on this port (on `host`) when it is set.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Logs: "text" (the default) or "json" (one object a line).
    log_format: Literal["text", "json"] = "text"
    dev: bool = False
    late_after_minutes: float = 60.0
    # A stock event whose occurred_at is older than this is refused (stale_timestamp).
    max_event_age_days: float = Field(default=400.0, gt=0)
    max_batch: int = 10_000
    # Back-pressure: events admitted and not yet answered; a request that does not fit waits up
    # to 1 s for room, then is answered 429 with Retry-After.
    max_queued_events: int = Field(default=50_000, ge=10_000)
    # ... and at most what the measured drain rate stores in this many seconds (at least one
    # largest request, `max_batch`), so that what is admitted is answered in about that.
    max_queue_seconds: float = Field(default=2.0, gt=0, le=3600, allow_inf_nan=False)
    # Snapshots of the write model (embedded profile): a start reads the newest and the log after it.
    snapshot_every_events: int = Field(default=100_000, ge=1)
    snapshot_every_minutes: float = Field(default=15.0, gt=0)
    # Signed checkpoints of the whole log (streams.checkpoints): the Ed25519 key (a PEM file),
    # where each checkpoint is appended, and how often the service makes one.
    audit_signing_key: Path | None = None
    audit_checkpoint_file: Path | None = None
    audit_checkpoint_every_events: int = Field(default=10_000, ge=1)
    audit_checkpoint_every_minutes: float = Field(default=5.0, gt=0)
    host: str = "127.0.0.1"
    port: int = 8000
    # HL7 v2 over MLLP (streams.hl7_feed): served by `serve` when a port is set; senders as
    # "APP@FACILITY:role[:principal]" entries.
    hl7_port: int | None = None
    hl7_senders: str = ""
    # The addresses or networks senders may connect from (comma-separated; empty: any).
    hl7_allow: str = ""
    # Projections: chdb:///dir (embedded, default under the data directory) or http(s)://...
    clickhouse_dsn: str | None = None
    clickhouse_database: str = "replenish"
    # ClickHouse's HTTP interface for BI tools over the embedded engine (read-only).
    clickhouse_http_host: str = "127.0.0.1"
    clickhouse_http_port: int = 8123
    bi_user: str = ""
    bi_password: SecretStr = SecretStr("")
    # How much lower than ingest the read side's CPU priority is (nice steps, 0-19; 0: the same).
    projections_niceness: int = Field(default=10, ge=0, le=19)
    # Distributed profile (infra/up prints the first two): Kafka brokers, comma-separated, and
    # the PostgreSQL event store.
    kafka_bootstrap: str = ""
    postgres_dsn: SecretStr = SecretStr("")
    # How every Kafka client (API, workers, relay, topic administration) reaches the brokers:
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL's mechanism (PLAIN, SCRAM-SHA-256,
    # SCRAM-SHA-512), user and password; the CA's certificate and the client's certificate
    # and key (PEM files) for TLS.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_location: str = ""
    kafka_ssl_certificate_location: str = ""
    kafka_ssl_key_location: str = ""
    kafka_ssl_key_password: SecretStr = SecretStr("")
    # How long POST /v1/events waits for an event's outcome before answering "queued".
    outcome_wait_seconds: float = 2.0
    # Gateways that produce straight to Kafka, naming their principal in a message header:
    # "principal:role" entries, comma-separated (API keys' principals are known too).
    gateways: str = ""
    kafka_topic_prefix: str = ""  # for deployments (or test runs) sharing one cluster
    kafka_partitions: int = 6  # of replenish.events.v1 (and decisions, alerts, outcomes) when created
    kafka_replication: int = 1
    kafka_session_timeout_seconds: float = 10.0  # a dead worker's partitions move after this
    worker_group: str = "replenish-worker"
    worker_batch: int = 1000
    worker_batch_within_ms: float = 20.0
    # A partition a worker holds with messages waiting and nothing stored for this long is a
    # stall: the worker rejoins its group, and exits (code 75) if that does not help.
    worker_stall_seconds: float = Field(default=30.0, gt=0)
    # How long a worker holds events back for the reference data sent before them (causal order).
    reference_wait_seconds: float = Field(default=10.0, ge=0)
    # Procurement (README, "Procurement"): needs become requisitions and approved ones orders.
    procurement: bool = True
    ordering_window_minutes: float = 0.0  # needs of one supplier and site within it share a requisition
    auto_approve_limit: float = 5_000.0  # contract requisitions up to this value need no buyer
    second_approval_limit: float = 25_000.0  # above this value two principals must approve
    supplier_review_score: float = 85.0  # supplier_review_needed below this score...
    supplier_review_drop: float = 10.0  # ...or this many points under its peak since the last review
    lead_time_grace_days: float = 0.5  # a delivery this long after it was due is still on time

    def procurement_settings(self) -> ProcurementSettings:
        from datetime import timedelta
        if self.second_approval_limit < self.auto_approve_limit:
            raise SettingsError(f"REPLENISH_SECOND_APPROVAL_LIMIT ({self.second_approval_limit:g}) is below "
                                f"REPLENISH_AUTO_APPROVE_LIMIT ({self.auto_approve_limit:g}): requisitions that "
                                "need two approvals would be approved by none")
        return ProcurementSettings(
            enabled=self.procurement, ordering_window=timedelta(minutes=self.ordering_window_minutes),
            auto_approve_limit=self.auto_approve_limit, second_approval_limit=self.second_approval_limit,
            review_score=self.supplier_review_score, review_drop=self.supplier_review_drop,
            lead_time_grace_days=self.lead_time_grace_days)

    def projections_dsn(self) -> str:
        """REPLENISH_CLICKHOUSE_DSN, else the embedded engine in ``<data_dir>/clickhouse``."""
        from projections.client import default_dsn
        return self.clickhouse_dsn or default_dsn(self.data_dir)

    def ui_secret(self) -> bytes | None:
        """The page's session-cookie key (None: a random one per process)."""
        secret = self.ui_session_secret.get_secret_value()
        if secret and len(secret) < 32:
            raise SettingsError("REPLENISH_UI_SESSION_SECRET must be 32 characters or more")
        return secret.encode() if secret else None

    def principals(self) -> dict[str, Principal]:
        """API keys -> principals, from ``key:role`` or ``key:role:principal`` entries."""
        keys: dict[str, Principal] = {}
        for entry in self.api_keys.get_secret_value().split(","):
            entry = entry.strip()
            if not entry:
                continue
            parts = entry.split(":")
            if len(parts) not in (2, 3) or not parts[0]:
                raise SettingsError(f"REPLENISH_API_KEYS: entry {entry[:4]}... is not key:role or key:role:principal")
            key, role = parts[0], parts[1]
            if role not in ROLES:
                raise SettingsError(f"REPLENISH_API_KEYS: unknown role {role!r} (roles: {', '.join(ROLES)})")
            keys[key] = Principal(parts[2] if len(parts) == 3 and parts[2] else role, role)
        if self.api_keys_file is not None:
            keys.update(self.file_principals())
        return keys

    def file_principals(self) -> dict[str, Principal]:
        """The entries of ``REPLENISH_API_KEYS_FILE`` (``api.keys.parse_key_file``)."""
        from api.keys import parse_key_file
        assert self.api_keys_file is not None
        try:
            return parse_key_file(self.api_keys_file.read_text(), ROLES)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"REPLENISH_API_KEYS_FILE {self.api_keys_file}: {exc}") from None

    def gateway_roles(self) -> dict[str, str]:
        """Gateway principal -> role, from ``principal:role`` entries."""
        roles: dict[str, str] = {}
        for entry in self.gateways.split(","):
            entry = entry.strip()
            if not entry:
                continue
            name, _, role = entry.partition(":")
            if not name or role not in ROLES:
                raise SettingsError(f"REPLENISH_GATEWAYS: {entry!r} is not principal:role "
                                    f"(roles: {', '.join(ROLES)})")
            roles[name] = role
        return roles

    def roles_by_principal(self) -> dict[str, str]:
        """Principal name -> role, for messages that name their principal (Kafka headers):
        the API keys' principals and the gateways. A name with two roles is an error."""
        roles: dict[str, str] = {}
        named = [(p.name, p.role) for p in self.principals().values()]
        for name, role in [*named, *self.gateway_roles().items()]:
            if roles.setdefault(name, role) != role:
                raise SettingsError(f"principal {name!r} has two roles ({roles[name]}, {role}) across "
                                    "REPLENISH_API_KEYS and REPLENISH_GATEWAYS")
        return roles

    def kafka_access(self) -> KafkaAccess:
        """The brokers and the transport's security, as every Kafka client takes them."""
        try:
            return KafkaAccess(
                self.kafka_bootstrap, self.kafka_security_protocol.strip().upper(),
                self.kafka_sasl_mechanism.strip().upper(), self.kafka_sasl_username or None,
                self.kafka_sasl_password.get_secret_value() or None, self.kafka_ssl_ca_location or None,
                self.kafka_ssl_certificate_location or None, self.kafka_ssl_key_location or None,
                self.kafka_ssl_key_password.get_secret_value() or None)
        except ValueError as exc:
            raise SettingsError(f"REPLENISH_KAFKA_*: {exc}") from None

    def require_distributed(self) -> None:
        """Check what the distributed profile needs."""
        missing = [name for name, value in (("REPLENISH_KAFKA_BOOTSTRAP", self.kafka_bootstrap),
                                            ("REPLENISH_POSTGRES_DSN", self.postgres_dsn.get_secret_value()))
                   if not value.strip()]
        if missing:
            raise SettingsError(f"REPLENISH_PROFILE=distributed needs {' and '.join(missing)} "
                                "(`eval \"$(infra/up)\"` sets both on one machine)")
        self.kafka_access()  # (its settings fit together)

    def prepared(self) -> Settings:
        """Check what must be set; in development mode invent what is missing.

        Development mode invents API keys (one per role, printed by the CLI) and keeps an
        invented case-id key in the data directory so pseudonyms stay stable across restarts;
        it also invents BI credentials (printed too) when REPLENISH_BI_PASSWORD is unset.
        Outside it, a missing key stops the service; missing BI credentials only turn BI access
        off.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        updates: dict[str, object] = {}
        if not self.principals():
            if not self.dev:
                raise SettingsError("REPLENISH_API_KEYS is not set: give key:role[:principal] entries, "
                                    "comma-separated (roles: scanner, buyer, auditor, admin)")
            updates["api_keys"] = SecretStr(",".join(
                f"dev-{role}-{secrets.token_hex(8)}:{role}:dev-{role}" for role in ROLES))
        if not self.case_id_key.get_secret_value():
            if not self.dev:
                raise SettingsError("REPLENISH_CASE_ID_KEY is not set: case ids are pseudonymised with "
                                    "this key and the service will not start without it")
            key_file = self.data_dir / "dev-case-id.key"
            if not key_file.exists():
                key_file.write_text(secrets.token_hex(32))
                key_file.chmod(0o600)
            updates["case_id_key"] = SecretStr(key_file.read_text().strip())
        if self.dev and not self.bi_password.get_secret_value():
            updates["bi_user"] = self.bi_user or "bi"
            updates["bi_password"] = SecretStr(f"dev-bi-{secrets.token_hex(8)}")
        return self.model_copy(update=updates) if updates else self
