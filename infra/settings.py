"""One settings object, read from the environment (prefix ``REPLENISH_``)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.codes import ROLES
from domain.intake import Principal


class SettingsError(RuntimeError):
    """The environment does not describe a service that may start."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REPLENISH_", extra="ignore")

    profile: Literal["embedded", "distributed"] = "embedded"
    data_dir: Path = Path("data")
    api_keys: SecretStr = SecretStr("")
    case_id_key: SecretStr = SecretStr("")
    dev: bool = False
    late_after_minutes: float = 60.0
    max_batch: int = 10_000
    host: str = "127.0.0.1"
    port: int = 8000
    # Projections: chdb:///dir (embedded, default under the data directory) or http(s)://...
    clickhouse_dsn: str | None = None
    clickhouse_database: str = "replenish"
    # ClickHouse's HTTP interface for BI tools over the embedded engine (read-only).
    clickhouse_http_host: str = "127.0.0.1"
    clickhouse_http_port: int = 8123
    bi_user: str = ""
    bi_password: SecretStr = SecretStr("")

    def projections_dsn(self) -> str:
        """REPLENISH_CLICKHOUSE_DSN, else the embedded engine in ``<data_dir>/clickhouse``."""
        from projections.client import default_dsn
        return self.clickhouse_dsn or default_dsn(self.data_dir)

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
        return keys

    def prepared(self) -> Settings:
        """Check what must be set; in development mode invent what is missing.

        Development mode invents API keys (one per role, printed by the CLI) and keeps an
        invented case-id key in the data directory so pseudonyms stay stable across restarts.
        Outside it, a missing key stops the service.
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
        return self.model_copy(update=updates) if updates else self
