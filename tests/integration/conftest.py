"""Integration fixtures: the real servers (Apache Kafka and PostgreSQL on loopback).

The session fixture ``servers`` runs ``infra/up`` (idempotent: servers already up are left
as they are) and reads the settings it prints. When they cannot be started the tests FAIL,
with infra/up's own words; they are never skipped. Servers this session had to start are
stopped again at its end (``infra/down``) unless ``REPLENISH_INFRA_KEEP=1``; servers that
were already up (CI starts them in ``.ci/run``) are left to whoever started them.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S = 900  # a cold machine gathers Kafka's jars from Maven Central first


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _parse_exports(text: str) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            settings[key] = value
    return settings


@pytest.fixture(scope="session", autouse=True)
def servers() -> Iterator[dict[str, str]]:
    """Kafka and PostgreSQL, up; the settings ``infra/up`` prints (REPLENISH_*, POSTGRES_*)."""
    ports = (int(os.environ.get("REPLENISH_KAFKA_PORT", "9092")),
             int(os.environ.get("REPLENISH_PG_PORT", "5432")))
    were_up = all(_port_open(p) for p in ports)
    try:
        proc = subprocess.run(["bash", str(ROOT / "infra" / "up")], capture_output=True, text=True,
                              timeout=UP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"infra/up did not finish within {UP_TIMEOUT_S}s; the integration tests need "
                    f"real Kafka and PostgreSQL servers.\n{err or ''}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"infra/up failed (exit {proc.returncode}): the integration tests need real Kafka "
                    f"and PostgreSQL servers and will not run without them.\n{proc.stderr[-6000:]}",
                    pytrace=False)
    settings = _parse_exports(proc.stdout)
    for key in ("REPLENISH_KAFKA_BOOTSTRAP", "REPLENISH_POSTGRES_DSN"):
        if not settings.get(key):
            pytest.fail(f"infra/up printed no {key}; its output was:\n{proc.stdout}", pytrace=False)
    try:
        yield settings
    finally:
        if not were_up and os.environ.get("REPLENISH_INFRA_KEEP") != "1":
            subprocess.run(["bash", str(ROOT / "infra" / "down")], capture_output=True,
                           timeout=300, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="session")
def kafka_bootstrap(servers: dict[str, str]) -> str:
    return servers["REPLENISH_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def postgres_dsn(servers: dict[str, str]) -> str:
    """The DSN of the ``replenish`` database (role ``replenish``, which may create databases)."""
    return servers["REPLENISH_POSTGRES_DSN"]


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[str]:
    """A brand-new, empty database for one test (dropped afterwards): its DSN."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(postgres_dsn, dbname=name)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- ClickHouse for the projection tests --------------------------------------------------
# The embedded engine (chDB), or a server when REPLENISH_TEST_CLICKHOUSE_URL is set (e.g.
# http://default:@127.0.0.1:8123). chDB allows one data directory per process, so the whole
# run shares one directory and each test gets databases of its own, dropped afterwards.

class ClickHouseDatabases:
    """Opens migrated projection databases for one test and drops them at its end."""

    def __init__(self, dsn: str, prefix: str) -> None:
        self.dsn, self.prefix = dsn, prefix
        self.opened: list[tuple[Any, str]] = []

    def open(self, label: str = "") -> Any:
        from projections.client import open_projections
        name = "_".join(p for p in (self.prefix, label, uuid.uuid4().hex[:6]) if p)
        client = open_projections(self.dsn, name)
        self.opened.append((client, name))
        return client

    def close(self) -> None:
        from projections.client import drop_database
        for client, name in reversed(self.opened):
            drop_database(client, name)
            client.close()


@pytest.fixture
def deployment_settings() -> dict[str, str]:
    """Extra REPLENISH_* settings of a test's deployment (a test module may override it)."""
    return {}


@pytest.fixture
def deployment(kafka_bootstrap: str, pg_database: str, tmp_path: Path,
               deployment_settings: dict[str, str]) -> Iterator[Any]:
    """A distributed deployment of its own (``distributed_world.Deployment``); the processes'
    logs are in ``tmp_path`` (and in the message of a wait that times out)."""
    from .distributed_world import Deployment

    d = Deployment(kafka_bootstrap, pg_database, tmp_path, **deployment_settings)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("REPLENISH_TEST_CLICKHOUSE_URL") or f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def databases(clickhouse_dsn: str, request: pytest.FixtureRequest) -> Iterator[ClickHouseDatabases]:
    prefix = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    dbs = ClickHouseDatabases(clickhouse_dsn, prefix)
    yield dbs
    dbs.close()


@pytest.fixture
def ch(databases: ClickHouseDatabases) -> Any:
    """A client on a fresh, migrated projection database."""
    return databases.open()
