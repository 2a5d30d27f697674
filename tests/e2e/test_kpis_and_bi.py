"""KPIs and BI access on the embedded profile, as buyers, auditors and BI tools see them.

One ``replenish serve`` with BI credentials: events posted through the API show up in
``GET /v1/kpis/{name}``; ``clickhouse-connect`` (as Superset and notebooks use it) and
ClickHouse's JDBC driver (as Metabase and DBeaver use it, from Maven Central, run with the
machine's Java) connect to the service's ClickHouse HTTP interface, list the tables and read
each KPI as the API gives it; a write, a table function reading ``/proc/self/environ`` and one
fetching a URL are refused with the BI credential, and no answer carries an API key.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import orjson
import pytest

from projections import queries

from .bi_jdbc import run_probe
from .support import KEYS, SITE, SKU, Service, iso, now, post_events, setup_master, statuses

pytestmark = pytest.mark.e2e

BI_USER, BI_PASSWORD = "bi-reader", "e2e-bi-password-7c1d"
DATABASE = "replenish"
SECRETS = (*KEYS.values(), BI_PASSWORD)
PRICE = 0.5  # per each, on the receipt
USED_PER_DAY, DAYS = 5.0, 12
KPI_TABLES = ("events_raw", "stock_moves", "stock_daily", "consumption_daily", "decisions",
              "forecast_daily", "forecast_vs_actual_daily", "alerts", "items", "locations",
              "lot_expiries", "po_lines")


def no_secret_in(text: str | bytes) -> None:
    body = text.decode(errors="replace") if isinstance(text, bytes) else text
    for secret in SECRETS:
        assert secret not in body, "an answer carries a secret of the service"


def normal(rows: Any) -> Any:
    """Rows as JSON would carry them (dates as ISO text), to compare engine rows with the API's."""
    return orjson.loads(orjson.dumps(rows, default=str, option=orjson.OPT_NON_STR_KEYS))


def approx_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            x, y = float(a), float(b)
        except (TypeError, ValueError):
            return False
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


class World:
    """The service and what was posted to it."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.clients = {role: service.client(role) for role in KEYS}
        self.t = now()
        self.period = {"from": (self.t - timedelta(days=21)).date().isoformat(),
                       "to": (self.t + timedelta(days=1)).date().isoformat()}

    def kpi(self, name: str, role: str = "buyer", **params: str) -> dict[str, Any]:
        r = self.clients[role].get(f"/v1/kpis/{name}", params={**self.period, **params})
        assert r.status_code == 200, r.text
        no_secret_in(r.content)
        return r.json()

    def caught_up(self, timeout: float = 60) -> None:
        """Wait until the projections hold every stored event."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.clients["auditor"].get("/v1/kpis").json().get("projections", {})
            if status.get("stored") and status.get("position") == status["stored"]:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the projections did not catch up: {status}")
            time.sleep(0.1)

    def wait_for(self, name: str, check: Any, timeout: float = 60) -> dict[str, Any]:
        """The KPI once ``check(result)`` holds (the follower trails the store a little)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.kpi(name)
            if check(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} never showed what was posted: {result}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("kpis") / "data"
    data.mkdir()
    service = Service(data, env={"REPLENISH_BI_USER": BI_USER, "REPLENISH_BI_PASSWORD": BI_PASSWORD}).start(60)
    try:
        w = World(service)
        t = w.t
        setup_master(w.clients, t - timedelta(days=20))
        ops = w.clients["scanner"]
        expiry = (t + timedelta(days=400)).date().isoformat()
        po = {"event_id": "po-1", "type": "po_issued", "occurred_at": iso(t - timedelta(days=15)), "site": SITE,
              "po_id": "PO-1", "supplier": "MEDSUP", "location": "W3",
              "expected_at": iso(t - timedelta(days=12)),
              "lines": [{"sku": SKU, "quantity": 200, "unit": "each"}]}
        receipt = {"event_id": "rec-1", "type": "receipt", "occurred_at": iso(t - timedelta(days=13)),
                   "site": SITE, "location": "W3", "sku": SKU, "lot": "L1", "expiry": expiry, "quantity": 200,
                   "unit": "each", "supplier": "MEDSUP", "po_id": "PO-1", "unit_price": PRICE}
        usages = [{"event_id": f"use-{d}", "type": "usage", "occurred_at": iso(t - timedelta(days=d, hours=1)),
                   "site": SITE, "location": "W3", "sku": SKU, "lot": "L1", "quantity": USED_PER_DAY,
                   "unit": "each"} for d in range(DAYS, 0, -1)]
        waste = {"event_id": "waste-1", "type": "waste", "occurred_at": iso(t - timedelta(days=5)),
                 "site": SITE, "location": "W3", "sku": SKU, "lot": "L1", "quantity": 2, "unit": "each",
                 "reason": "expired"}
        results = post_events(ops, [po, receipt, *usages, waste])
        assert statuses(results) == ["accepted"] * len(results), results
        # Refused: an item nobody registered (kept as a refusal: a compliance event).
        refused = post_events(ops, [{"event_id": "bad-1", "type": "usage", "occurred_at": iso(t - timedelta(days=2)),
                                     "site": SITE, "location": "W3", "sku": "NO-SUCH-ITEM", "lot": "X",
                                     "quantity": 1, "unit": "each"}])
        assert statuses(refused) == ["rejected"], refused
        change = post_events(w.clients["admin"], [{"event_id": "lot-1", "type": "lot_changed",
                                                   "occurred_at": iso(t - timedelta(days=3)), "sku": SKU, "lot": "L1",
                                                   "change": "expiry_corrected", "new_expiry": expiry,
                                                   "reason": "label misprint"}])
        assert statuses(change) == ["accepted"], change
        w.caught_up()
        yield w
        for c in w.clients.values():
            c.close()
    finally:
        service.stop()


def test_events_posted_through_the_api_show_up_in_the_kpis(world: World) -> None:
    used = USED_PER_DAY * DAYS
    turnover = world.wait_for("turnover", lambda r: any(row["used"] == used for row in r["rows"]))
    (row,) = [r for r in turnover["rows"] if r["sku"] == SKU and r["location"] == "W3"]
    assert row["used"] == used and row["mean_on_hand"] > 0

    unit_cost = world.kpi("unit_cost", role="auditor")
    assert [(r["sku"], r["supplier"], r["receipts"], r["received_quantity"], r["mean_unit_cost"])
            for r in unit_cost["rows"]] == [(SKU, "MEDSUP", 1, 200.0, PRICE)]

    # (a CI run once read fill_rate empty right after the position caught up: wait for it too)
    fill = world.wait_for("fill_rate", lambda r: bool(r["rows"]))["rows"]
    assert [(r["supplier"], r["lines"], r["ordered"], r["filled"], r["fill_rate"]) for r in fill] == \
        [("MEDSUP", 1, 200.0, 200.0, 1.0)]
    # (and in_transit_time, read empty once under load the same way: see the note above)
    transit = world.wait_for("in_transit_time", lambda r: bool(r["rows"]))["rows"]
    assert len(transit) == 1 and transit[0]["receipts"] == 1
    assert math.isclose(transit[0]["mean_days"], 2.0, abs_tol=1e-6)

    expired = world.kpi("expired_value", role="admin")["rows"]
    assert sum(r["wasted_quantity"] for r in expired) == 2.0
    assert math.isclose(sum(r["wasted_value"] for r in expired), 2 * PRICE)

    compliance = world.kpi("compliance_events")["rows"]
    found = {(r["category"], r["detail"]): r["events"] for r in compliance}
    assert found.get(("lot_changed", "expiry_corrected")) == 1
    assert found.get(("refused", "unknown_item"), 0) >= 1, found

    stockouts = world.kpi("stockout_rate")["rows"]
    assert stockouts and all(r["stockout_days"] == 0 for r in stockouts)
    supply = world.kpi("days_of_supply", location="W3")["rows"]
    assert [(r["sku"], r["on_hand"]) for r in supply] == [(SKU, 200 - used - 2)]
    listed = world.clients["auditor"].get("/v1/kpis").json()["kpis"]
    assert {k["name"] for k in listed} == set(queries.KPIS) and all(k["definition"] for k in listed)

    # Followed live: a usage posted now shows up too.
    more = post_events(world.clients["scanner"], [{
        "event_id": "use-now", "type": "usage", "occurred_at": iso(world.t - timedelta(minutes=5)), "site": SITE,
        "location": "W3", "sku": SKU, "lot": "L1", "quantity": 3, "unit": "each"}])
    assert statuses(more) == ["accepted"]
    world.wait_for("turnover", lambda r: any(row["used"] == used + 3 for row in r["rows"]))
    # Scanners read no KPIs; an unknown KPI is named as such.
    assert world.clients["scanner"].get("/v1/kpis/turnover").status_code == 403
    unknown = world.clients["buyer"].get("/v1/kpis/no_such_kpi")
    assert unknown.status_code == 404 and "fill_rate" in unknown.text


def bi_client(world: World) -> Any:
    return clickhouse_connect.get_client(host="127.0.0.1", port=world.service.bi_port, username=BI_USER,
                                         password=BI_PASSWORD, database=DATABASE)


def test_clickhouse_connect_reads_each_kpi_as_the_api_gives_it(world: World) -> None:
    world.wait_for("unit_cost", lambda r: bool(r["rows"]))
    client = bi_client(world)
    tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
    assert set(KPI_TABLES) <= tables, set(KPI_TABLES) - tables
    for table in KPI_TABLES:
        assert client.query(f"SELECT count() FROM {table}").result_rows[0][0] >= 0
    assert client.query("SELECT count() FROM events_raw").result_rows[0][0] > DAYS
    for name in queries.KPIS:
        for params in ({}, {"site": SITE}, {"sku": SKU, "location": "W3"}):
            api = world.kpi(name, **params)
            over_bi = queries.run(client, name, start=world.period["from"], end=world.period["to"], **params)
            assert over_bi.columns == api["columns"], name
            assert normal(over_bi.rows) == api["rows"], (name, params)
    client.close()


def inline(sql: str, params: dict[str, Any]) -> str:
    """A KPI's query with its bound parameters written in (a JDBC statement has none)."""
    def literal(m: re.Match[str]) -> str:
        value, kind = params[m.group(1)], m.group(2)
        if kind == "Date":
            return f"toDate('{value.isoformat() if isinstance(value, date) else value}')"
        if kind.startswith(("UInt", "Int", "Float")):
            return str(value)
        text = str(value).replace("\\", "\\\\").replace("'", "\\'")
        return f"'{text}'"
    return re.sub(r"\{(\w+):([A-Za-z0-9]+)\}", literal, sql)


def test_the_jdbc_driver_lists_the_tables_and_reads_kpis_as_the_api_gives_them(world: World, tmp_path: Path) -> None:
    world.wait_for("unit_cost", lambda r: bool(r["rows"]))
    names = ("unit_cost", "turnover", "fill_rate", "compliance_events")
    filters = queries.make_filters(start=world.period["from"], end=world.period["to"])
    reader = bi_client(world)  # the engine is only reached through the service
    sqls = [inline(*queries.KPIS[name].query(reader, filters)) for name in names]
    reader.close()
    url = f"jdbc:clickhouse:http://127.0.0.1:{world.service.bi_port}/{DATABASE}"
    out = run_probe(tmp_path / "probe", url, BI_USER, BI_PASSWORD,
                    [*sqls, "SELECT sku, location, day, used FROM consumption_daily ORDER BY day",
                     "INSERT INTO items (sku) VALUES ('INJECTED')",
                     "SELECT * FROM file('/proc/self/environ', 'LineAsString')"])
    no_secret_in(out.text)
    assert "ClickHouse" in out.product, out.product
    listed = {name for schema, name in out.tables if schema == DATABASE}
    assert set(KPI_TABLES) <= listed, (set(KPI_TABLES) - listed, out.tables[:20])
    for name, result in zip(names, out.results, strict=False):
        assert result["error"] is None, (name, result["error"])
        api = world.kpi(name)
        assert result["columns"] == api["columns"], name
        assert len(result["rows"]) == len(api["rows"]) > 0, name  # type: ignore[arg-type]
        for got, want in zip(result["rows"], api["rows"], strict=True):  # type: ignore[call-overload]
            for column, text in zip(api["columns"], got, strict=True):
                value = want[column]
                if value is None:
                    assert text in ("\\N", "null", "NaN"), (name, column, text)
                elif isinstance(value, float | int) and not isinstance(value, bool):
                    assert approx_equal(float(text), float(value)), (name, column, text, value)
                else:
                    assert text == str(value), (name, column, text, value)
    daily = out.results[len(names)]
    assert daily["error"] is None and len(daily["rows"]) >= DAYS  # type: ignore[arg-type]
    write, environ = out.results[len(names) + 1:]
    assert write["error"] and "ACCESS_DENIED" in str(write["error"]), write
    assert environ["error"] and "ACCESS_DENIED" in str(environ["error"]), environ
    assert all("INJECTED" not in row for row in bi_client(world).query("SELECT sku FROM items").result_rows)


@pytest.mark.parametrize("query", [
    "INSERT INTO items (sku) VALUES ('INJECTED')",
    "SELECT * FROM file('/proc/self/environ', 'LineAsString')",
    "SELECT file('/proc/self/environ')",
    "SELECT * FROM url('http://127.0.0.1:{api_port}/healthz', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:{api_port}/v1/kpis', 'JSONAsString', 'x String', "
    "headers('Authorization' = 'Bearer {admin_key}'))",
], ids=["write", "environ-table-function", "environ-function", "url", "url-with-a-key"])
def test_writes_files_and_urls_are_refused_with_the_bi_credential(world: World, query: str) -> None:
    sql = query.format(api_port=world.service.port, admin_key="not-a-real-key")
    base = f"http://127.0.0.1:{world.service.bi_port}/"
    answers = [
        httpx.post(base, content=sql.encode(), auth=(BI_USER, BI_PASSWORD), timeout=30),
        httpx.get(base, params={"query": sql, "user": BI_USER, "password": BI_PASSWORD}, timeout=30),
        httpx.post(base, content=sql.encode(), timeout=30,
                   headers={"X-ClickHouse-User": BI_USER, "X-ClickHouse-Key": BI_PASSWORD}),
    ]
    for r in answers:
        assert r.status_code == 403, (r.status_code, r.text)
        assert "ACCESS_DENIED" in r.text
        no_secret_in(r.content)
    client = bi_client(world)
    with pytest.raises(Exception) as refused:
        client.query(sql)
    no_secret_in(str(refused.value))
    assert client.query("SELECT count() FROM items WHERE sku = 'INJECTED'").result_rows[0][0] == 0
    client.close()


def test_bi_access_needs_the_bi_credential_and_never_takes_an_api_key(world: World) -> None:
    base = f"http://127.0.0.1:{world.service.bi_port}/"
    assert httpx.get(f"{base}ping", timeout=10).text == "Ok.\n"
    for auth in ((BI_USER, "wrong"), ("default", ""), (BI_USER, KEYS["admin"]), ("admin", KEYS["admin"])):
        r = httpx.post(base, content=b"SELECT count() FROM items", auth=auth, timeout=30)
        assert r.status_code == 401, (auth[0], r.status_code)
        no_secret_in(r.content)
    assert httpx.post(base, content=b"SELECT 1", timeout=30).status_code == 401
    ok = httpx.post(base, content=b"SELECT count() FROM items", auth=(BI_USER, BI_PASSWORD), timeout=30)
    assert ok.status_code == 200 and int(ok.text) >= 1
    # The API does not take the BI credential either.
    r = httpx.get(f"{world.service.base}/v1/kpis", headers={"Authorization": f"Bearer {BI_PASSWORD}"}, timeout=30)
    assert r.status_code == 401


def test_a_service_without_a_bi_password_serves_no_bi_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    service = Service(data).start(60)
    try:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{service.bi_port}/ping", timeout=5)
        assert "BI access is off" in service.log() and "REPLENISH_BI_PASSWORD" in service.log()
        r = httpx.get(f"{service.base}/v1/kpis/turnover", headers={"Authorization": f"Bearer {KEYS['buyer']}"},
                      timeout=30)
        assert r.status_code == 200
    finally:
        service.stop()


def test_replay_projections_rebuilds_inside_the_service_and_reports_rows_per_second(world: World) -> None:
    from .support import run_cli

    before = {name: world.kpi(name)["rows"] for name in ("turnover", "unit_cost", "compliance_events")}
    started = datetime.now()
    done = run_cli("replay", "--projections", "--url", world.service.base, "--key", KEYS["admin"],
                   data_dir=world.service.data_dir, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rebuilt" in done.stdout and "rows/s" in done.stdout, done.stdout
    no_secret_in(done.stdout)
    assert datetime.now() - started < timedelta(minutes=5)
    after = {name: world.kpi(name)["rows"] for name in before}
    assert after == before
    refused = run_cli("replay", "--projections", "--url", world.service.base, "--key", KEYS["buyer"],
                      data_dir=world.service.data_dir, timeout=60)
    assert refused.returncode != 0 and "403" in refused.stdout


def test_replay_projections_works_on_the_data_directory_when_the_service_is_stopped(tmp_path: Path) -> None:
    from .support import run_cli

    data = tmp_path / "data"
    data.mkdir()
    service = Service(data).start(60)
    try:
        clients = {role: service.client(role) for role in KEYS}
        t = now()
        setup_master(clients, t - timedelta(days=2))
        assert statuses(post_events(clients["scanner"], [{
            "event_id": "u-1", "type": "receipt", "occurred_at": iso(t - timedelta(days=1)), "site": SITE,
            "location": "W3", "sku": SKU, "lot": "L1", "quantity": 10, "unit": "each",
            "expiry": (t + timedelta(days=300)).date().isoformat()}])) == ["accepted"]
        busy = run_cli("replay", "--projections", data_dir=data, timeout=120)
        assert busy.returncode == 2 and "--url" in busy.stdout, busy.stdout + busy.stderr
    finally:
        service.stop()
    done = run_cli("replay", "--projections", data_dir=data, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rebuilt" in done.stdout and "rows/s" in done.stdout
    again = Service(data).start(60)
    try:
        r = again.client("auditor").get("/v1/kpis/days_of_supply", params={"location": "W3"})
        assert r.status_code == 200 and [row["on_hand"] for row in r.json()["rows"]] == [10.0]
    finally:
        again.stop()


def _thread_niceness(pid: int) -> dict[int, tuple[str, int]]:
    """Thread id -> (thread name, nice value), from /proc (Linux)."""
    found: dict[int, tuple[str, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        found[int(task.name)] = (name, int(stat[stat.rindex(")") + 2:].split()[16]))  # stat field 19
    return found


def test_the_read_side_runs_below_ingest_in_cpu_priority(world: World) -> None:
    """The engine's threads (inserts, merges, queries) start from the projection follower after it
    lowered its priority, or from the service's low-priority threads that run the API's calls
    into the engine, so they run 10 nice steps (REPLENISH_PROJECTIONS_NICENESS) below the
    threads that take events in (the process's main thread, the processor). A rebuild and KPI
    queries, many at once, run first, so that the engine's pools grow from the threads that run
    them."""
    assert world.service.proc is not None
    pid = world.service.proc.pid
    rebuilt = world.clients["admin"].post("/v1/admin/projections/rebuild", timeout=300)
    assert rebuilt.status_code == 200 and '"done":true' in rebuilt.text, rebuilt.text
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda name: world.clients["buyer"].get(f"/v1/kpis/{name}").status_code,
                                sorted(queries.KPIS) * 3))
    assert answers == [200] * len(answers)
    threads = _thread_niceness(pid)
    main = threads[pid][1]  # the main thread's: the event loop that takes requests in
    engine = {tid: (name, nice) for tid, (name, nice) in threads.items()
              if name in ("MergeMutate", "BgSchPool", "ThreadPool")}
    assert engine, threads
    assert {nice for _, nice in engine.values()} == {min(19, main + 10)}, (
        "engine threads at another priority:", {t: v for t, v in engine.items() if v[1] != min(19, main + 10)},
        "all:", sorted(set(threads.values())))
