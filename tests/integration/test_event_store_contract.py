"""The event store contract (``store_contract.EventStoreContract``) on each backend:
SQLite in a temporary file (the embedded profile), the real PostgreSQL server that
``infra/up`` starts (the distributed profile), each test on a database of its own, and the
in-memory store the simulator runs the processor over (``memory_env``)."""

from __future__ import annotations

import dataclasses
import sqlite3

import psycopg
import pytest
from psycopg import sql

from streams.store import EventStore, memory_env, postgres_env, sqlite_env

from .store_contract import EventStoreContract


class TestSQLiteEventStore(EventStoreContract):
    def open_backend(self, request: pytest.FixtureRequest) -> dict[str, str]:
        self.path = request.getfixturevalue("tmp_path") / "events.sqlite"
        return sqlite_env(str(self.path))

    def update_stored_state(self, stream: str, version: int, state: bytes) -> int:
        table = self._stores[0].recorder.events_table_name  # type: ignore[attr-defined]
        with sqlite3.connect(self.path) as db:
            cur = db.execute(f'UPDATE "{table}" SET state = ? '
                             "WHERE originator_id = ? AND originator_version = ?",
                             (state, stream, version))
            return cur.rowcount


class TestMemoryEventStore(EventStoreContract):
    """One in-memory recorder stands for the database: every store the test opens shares it,
    as every store opened on one SQLite file shares the file."""

    def open_backend(self, request: pytest.FixtureRequest) -> dict[str, str]:
        self.shared: EventStore | None = None
        return memory_env()

    def open_store(self) -> EventStore:
        store = super().open_store()
        if self.shared is None:
            self.shared = store
        else:
            store.recorder = self.shared.recorder
            store.events.recorder = self.shared.recorder
        return store

    def update_stored_state(self, stream: str, version: int, state: bytes) -> int:
        assert self.shared is not None
        recorder = self.shared.recorder
        i = recorder._stored_events_index[stream].get(version)  # type: ignore[attr-defined]
        if i is None:
            return 0
        events = recorder._stored_events  # type: ignore[attr-defined]
        events[i] = dataclasses.replace(events[i], state=state)
        return 1

    def test_the_store_is_really_in_memory(self) -> None:
        assert type(self.open_store().recorder).__module__ == "eventsourcing.popo"


class TestPostgresEventStore(EventStoreContract):
    def open_backend(self, request: pytest.FixtureRequest) -> dict[str, str]:
        self.dsn = request.getfixturevalue("pg_database")  # a new database, dropped afterwards
        env = postgres_env(self.dsn)
        assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
        return env

    def update_stored_state(self, stream: str, version: int, state: bytes) -> int:
        recorder = self._stores[0].recorder
        table = sql.Identifier(recorder.datastore.schema,  # type: ignore[attr-defined]
                               recorder.events_table_name)  # type: ignore[attr-defined]
        with psycopg.connect(self.dsn, autocommit=True) as db:
            cur = db.execute(sql.SQL("UPDATE {} SET state = %s "
                                     "WHERE originator_id = %s AND originator_version = %s").format(table),
                             (state, stream, version))
            return cur.rowcount

    def test_the_store_is_really_postgres(self) -> None:
        store = self.open_store()
        assert type(store.recorder).__module__ == "eventsourcing.postgres"
        with psycopg.connect(self.dsn) as db:
            tables = {r[0] for r in db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        assert store.recorder.events_table_name in tables  # type: ignore[attr-defined]


def test_postgres_env_takes_a_dsn_or_parameters() -> None:
    from_dsn = postgres_env("postgresql://replenish:p%40ss%2Fw@127.0.0.1:5433/replenish")
    from_params = postgres_env({"dbname": "replenish", "host": "127.0.0.1", "port": 5433,
                                "user": "replenish", "password": "p@ss/w"})
    assert from_dsn == from_params
    assert from_dsn["POSTGRES_PASSWORD"] == "p@ss/w" and from_dsn["POSTGRES_PORT"] == "5433"
    assert from_dsn["ORIGINATOR_ID_TYPE"] == "text" and from_dsn["CREATE_TABLE"] == "y"
    with pytest.raises(ValueError, match="password"):
        postgres_env("postgresql://replenish@127.0.0.1/replenish")


def test_stores_opened_at_the_same_moment_on_an_empty_postgres_database_all_open(postgres_dsn: str) -> None:
    """Workers started together each create the tables (``CREATE ... IF NOT EXISTS``) and the
    library's first tracking record at once; PostgreSQL fails all but one of such sessions now
    and then, and the store tries again rather than stopping the worker."""
    import threading
    import uuid

    from psycopg.conninfo import make_conninfo

    from streams.tracked_store import TrackedEventStore

    failures: list[str] = []
    for _ in range(8):
        name = f"test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            env = postgres_env(make_conninfo(postgres_dsn, dbname=name))

            def open_and_close(tracked: bool, env: dict[str, str] = env) -> None:
                try:
                    (TrackedEventStore(env) if tracked else EventStore(env=env)).close()
                except Exception as exc:
                    failures.append(repr(exc))

            threads = [threading.Thread(target=open_and_close, args=(i % 2 == 1,)) for i in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    assert failures == []
