"""Connecting to ClickHouse: one ``clickhouse-connect`` client for both profiles.

The DSN is ``chdb:///abs/dir`` (the embedded engine, in-process: one process per directory)
or ``http(s)://user:password@host:port`` (a ClickHouse server). The database defaults to
``replenish``; it may also be given as ``?database=`` (chdb) or as the path (http).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import clickhouse_connect

from projections.schema import migrate

DEFAULT_DATABASE = "replenish"


def default_dsn(data_dir: Path | str) -> str:
    """The embedded engine under the data directory (``REPLENISH_CLICKHOUSE_DSN`` unset)."""
    return f"chdb://{Path(data_dir).resolve() / 'clickhouse'}"


def dsn_database(dsn: str) -> str | None:
    parsed = urlparse(dsn)
    given = parse_qs(parsed.query).get("database")
    if given:
        return given[0]
    if parsed.scheme != "chdb" and parsed.path.strip("/"):
        return parsed.path.strip("/").split("/")[0]
    return None


def _without_database(dsn: str) -> str:
    parsed = urlparse(dsn)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items() if k != "database"}
    return parsed._replace(query=urlencode(query)).geturl()


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb:")


def connect(dsn: str, database: str | None = None, create: bool = True,
            **kwargs: Any) -> Any:
    """A client whose default database is ``database`` (else the DSN's, else ``replenish``),
    created first when ``create``. Extra keyword arguments go to ``get_client``."""
    db = database or dsn_database(dsn) or DEFAULT_DATABASE
    if not db.replace("_", "").isalnum():
        raise ValueError(f"database name {db!r}: letters, digits and _ only")
    dsn = _without_database(dsn)
    if not create:
        return clickhouse_connect.get_client(dsn=dsn, database=db, **kwargs)
    # The bootstrap client stays open until the real one is: closing the last handle of an
    # embedded engine would shut it down and the next client would pay for starting it again.
    bootstrap = clickhouse_connect.get_client(dsn=dsn, database="default", **kwargs)
    try:
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        return clickhouse_connect.get_client(dsn=dsn, database=db, **kwargs)
    finally:
        bootstrap.close()


def open_projections(dsn: str, database: str | None = None, **kwargs: Any) -> Any:
    """A client on the projection database with the schema migrated."""
    client = connect(dsn, database, **kwargs)
    migrate(client)
    return client


def drop_database(client: Any, database: str) -> None:
    client.command(f"DROP DATABASE IF EXISTS `{database}` SYNC")
