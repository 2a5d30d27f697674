"""BI access: ClickHouse's HTTP interface served over the embedded engine, read-only, as a
BI tool (clickhouse-connect, as Superset and notebooks use it) sees it."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import httpx
import pytest
import uvicorn

from projections import queries
from projections.bi_http import BiServer, Credentials, read_only_settings
from projections.client import connect
from projections.follower import Follower

from .projections_world import Hospital

API_KEY = "bi-test-api-key-5f1c9a"  # stands for the service's API keys in its environment


@pytest.fixture(scope="session")
def servers() -> dict[str, str]:
    """These tests need ClickHouse only: not the Kafka and PostgreSQL servers of conftest."""
    return {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bi(databases: Any, clickhouse_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    if not clickhouse_dsn.startswith("chdb:"):
        pytest.fail("the BI interface serves the embedded engine; unset REPLENISH_TEST_CLICKHOUSE_URL")
    monkeypatch.setenv("REPLENISH_API_KEYS", f"{API_KEY}:admin")
    direct = databases.open("bi")
    hospital = Hospital()
    hospital.register()
    for _ in hospital.run(days=6, per_batch=40):
        pass
    Follower(direct).catch_up(hospital.store.notifications, hospital.store.mapper.to_domain_event)
    database = direct.database
    reader = connect(clickhouse_dsn, database, create=False, settings=read_only_settings())
    server = BiServer(reader, database, Credentials("bi", "bi-secret"))
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(server.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "port": port, "direct": direct, "database": database}
    uv.should_exit = True
    thread.join(timeout=10)
    reader.close()


def test_clickhouse_connect_lists_the_tables_and_reads_what_the_engine_holds(bi: dict[str, Any]) -> None:
    client = clickhouse_connect.get_client(host="127.0.0.1", port=bi["port"], username="bi",
                                           password="bi-secret", database=bi["database"])
    tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
    assert {"events_raw", "stock_daily", "consumption_daily", "decisions", "alerts",
            "forecast_vs_actual_daily"} <= tables
    for table in ("consumption_daily", "stock_daily", "decisions", "alerts", "items"):
        sql = f"SELECT * FROM {table} ORDER BY ALL"
        assert client.query(sql).result_rows == bi["direct"].query(sql).result_rows, table
    for name in queries.KPIS:
        over_http = queries.run(client, name, start="2026-03-02", end="2026-03-09")
        assert over_http.rows == queries.run(bi["direct"], name, start="2026-03-02", end="2026-03-09").rows
    assert client.query("SELECT count() FROM system.columns WHERE database = currentDatabase()").result_rows[0][0] > 50


def test_queries_in_the_url_or_the_body_with_formats_and_compression(bi: dict[str, Any]) -> None:
    auth = ("bi", "bi-secret")
    assert httpx.get(f"{bi['url']}/ping").text == "Ok.\n"
    r = httpx.get(bi["url"], params={"query": "SELECT count() FROM items"}, auth=auth)
    assert r.status_code == 200 and r.text == "3\n"
    r = httpx.post(bi["url"], params={"default_format": "JSONEachRow"}, content=b"SELECT sku FROM items ORDER BY sku",
                   headers={"X-ClickHouse-User": "bi", "X-ClickHouse-Key": "bi-secret"})
    assert [line for line in r.text.splitlines()] == ['{"sku":"GLV"}', '{"sku":"IVC"}', '{"sku":"SUT"}']
    r = httpx.post(bi["url"], params={"user": "bi", "password": "bi-secret", "enable_http_compression": "1"},
                   content=b"SELECT sku FROM items ORDER BY sku FORMAT CSV", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and r.text == '"GLV"\n"IVC"\n"SUT"\n'
    assert httpx.get(bi["url"], params={"query": "SELECT 1"}, auth=("bi", "wrong")).status_code == 401
    assert httpx.get(bi["url"], params={"query": "SELECT 1"}).status_code == 401


@pytest.mark.parametrize("query", [
    "INSERT INTO items (sku) VALUES ('X')",
    "DROP TABLE events_raw",
    "SELECT file('/proc/self/environ')",
    "SELECT * FROM file('/proc/self/environ', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:9/x', 'CSV')",
    "SELECT * FROM executable('env', 'TSV', 'x String')",
    "SELECT 1 INTO OUTFILE '/tmp/replenish-bi-test'",
    "SELECT 1; SELECT file('/proc/self/environ')",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT * FROM system.query_log",
    "SELECT * FROM default.anything",
    "SET readonly = 0",
])
def test_writes_files_urls_and_other_tables_are_refused(bi: dict[str, Any], query: str) -> None:
    r = httpx.post(bi["url"], content=query.encode(), auth=("bi", "bi-secret"))
    assert r.status_code in (403, 500), r.text
    assert "Code:" in r.text and API_KEY not in r.text
    assert not os.path.exists("/tmp/replenish-bi-test")
    still = httpx.get(bi["url"], params={"query": "SELECT count() FROM items"}, auth=("bi", "bi-secret"))
    assert still.text == "3\n"


def test_clickhouse_lz4_framing_as_the_jdbc_driver_asks_for_it(bi: dict[str, Any]) -> None:
    """``compress=1``: the answer in ClickHouse's checksummed LZ4 blocks; ``decompress=1``: a body
    sent that way. (The JDBC driver checks every block's CityHash128; the e2e tests run it.)"""
    from projections.bi_http import native_compress, native_decompress

    big = b"".join(b"row %d of a result long enough to take several blocks\n" % i for i in range(40_000))
    assert native_decompress(native_compress(big)) == big and native_compress(b"") == b""
    auth = ("bi", "bi-secret")
    r = httpx.post(bi["url"], params={"compress": "1"}, content=b"SELECT sku FROM items ORDER BY sku", auth=auth)
    assert r.status_code == 200 and native_decompress(r.content) == b"GLV\nIVC\nSUT\n"
    r = httpx.post(bi["url"], params={"decompress": "1"}, content=native_compress(b"SELECT count() FROM items"), auth=auth)
    assert r.status_code == 200 and r.text == "3\n"
    broken = bytearray(native_compress(b"SELECT 1"))
    broken[-1] ^= 0xFF
    r = httpx.post(bi["url"], params={"decompress": "1"}, content=bytes(broken), auth=auth)
    assert r.status_code == 400 and "checksum" in r.text
