"""The KPI queries read small summary tables (sp_days, sp_weeks, po_line_status, ...) kept up
to date by the follower: they answer exactly what the KPIs' first queries, straight over the
base tables (``kpi_reference``), answer. Checked on the hand-worked log and on a hospital
followed live in small batches (late events included), with every kind of filter: periods that
start and end mid-week or mid-day, open periods, sites, locations, items. Also: the flattening
in the engine gives the rows the Python processors give."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from projections import queries
from projections.follower import Follower, json_state
from projections.processors import COLUMNS, process_batch, stored_event

from . import kpi_reference
from .projections_world import Hospital
from .test_projections_kpis import known_log


@pytest.fixture(scope="session")
def servers() -> dict[str, str]:
    """These tests need ClickHouse only: not the Kafka and PostgreSQL servers of conftest."""
    return {}


FILTERS: list[dict[str, Any]] = [
    {"start": "2026-03-02", "end": "2026-03-16"},
    {"start": "2026-03-02", "end": "2026-03-09"},
    {"start": "2026-03-03", "end": "2026-03-12"},                      # mid-week to mid-week
    {"start": "2026-03-04", "end": "2026-03-06"},                      # inside one week
    {"start": "2026-03-03T10:00:00+00:00", "end": "2026-03-08T12:00:00+01:00"},
    {"start": "2026-02-20", "end": "2026-04-20"},                      # days after the last data
    {"start": "2026-03-05"},
    {"end": "2026-03-10"},
    {"site": "H1", "start": "2026-03-02", "end": "2026-03-16"},
    {"site": "H2", "start": "2026-03-03", "end": "2026-03-11"},
    {"location": "W1", "start": "2026-03-01", "end": "2026-03-13"},
    {"location": "W2", "sku": "GLV", "start": "2026-03-02", "end": "2026-03-16"},
    {"sku": "A", "start": "2026-03-02", "end": "2026-03-09"},
    {"sku": "IVC", "start": "2026-03-04", "end": "2026-03-14"},
]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def assert_kpis_equal_the_reference(client: Any) -> None:
    for name in queries.KPIS:
        for filters in FILTERS:
            got = queries.run(client, name, **filters)
            want = kpi_reference.run(client, name, **filters)
            assert got.columns == want.columns, (name, filters)
            assert same(got.rows, want.rows), (name, filters, got.rows[:5], want.rows[:5])


def test_the_hand_worked_log_gives_the_reference_answers(databases: Any) -> None:
    client = databases.open("known")
    Follower(client, batch_size=3).follow(known_log().notifications, json_state)
    assert_kpis_equal_the_reference(client)


def test_a_hospital_followed_live_gives_the_reference_answers(databases: Any) -> None:
    hospital = Hospital(seed=11)
    hospital.register()
    live = databases.open("live")
    follower = Follower(live, batch_size=9)
    for _ in hospital.run(days=14, per_batch=7):
        follower.catch_up(hospital.store.notifications)
    assert_kpis_equal_the_reference(live)
    rebuilt = databases.open("rebuilt")
    Follower(rebuilt, batch_size=10_000).catch_up(hospital.store.notifications)
    for name in queries.KPIS:
        for filters in FILTERS[:6]:
            assert same(queries.run(live, name, **filters).rows, queries.run(rebuilt, name, **filters).rows), name


def _normal(value: Any, column: str) -> Any:
    if column in ("payload", "decision"):
        return orjson.loads(value) if isinstance(value, str | bytes) else value
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, dict):
        return dict(sorted(value.items()))
    return value


@pytest.mark.parametrize("world", ["hospital", "known"])
def test_the_engine_flattens_stored_events_as_the_python_processors_do(databases: Any, world: str) -> None:
    if world == "hospital":
        hospital = Hospital(seed=3)
        hospital.register()
        for _ in hospital.run(days=6, per_batch=30):
            pass
        notifications = list(hospital.store.notifications())
    else:
        notifications = known_log().notifications
    client = databases.open(world)
    Follower(client, batch_size=17).follow(notifications, json_state)
    reference = process_batch(stored_event(n, json_state(n)) for n in notifications)
    for table, columns in COLUMNS.items():
        got = sorted((tuple(_normal(v, c) for v, c in zip(row, columns, strict=True))
                      for row in client.query(f"SELECT {', '.join(columns)} FROM {table}").result_rows), key=repr)
        want = sorted((tuple(_normal(row[c], c) for c in columns) for row in reference.get(table, [])), key=repr)
        assert got == want, table


PROCUREMENT_FILTERS: list[dict[str, Any]] = [
    {}, {"start": "2026-03-02", "end": "2026-03-09"}, {"start": "2026-03-05"}, {"end": "2026-03-04"},
    {"start": "2026-03-02T10:00:00+00:00", "end": "2026-03-08T12:00:00+01:00"}, {"site": "H1"},
    {"sku": "CATH"}, {"sku": "GAUZE", "start": "2026-03-01"}, {"location": "OR1", "end": "2026-03-12"},
    {"start": "2025-10-01", "end": "2026-01-01"},
]


def test_a_purchasing_hospital_gives_the_reference_answers(databases: Any) -> None:
    import itertools as it

    from .test_projections_procurement import Purchasing
    world = Purchasing()
    world.setup()
    live = databases.open("purchasing")
    follower = Follower(live, batch_size=11)
    for _ in it.chain(world.history(), world.fortnight()):
        follower.catch_up(world.store.notifications)
    bad = []
    for name in queries.KPIS:
        for filters in PROCUREMENT_FILTERS:
            got = queries.run(live, name, **filters)
            want = kpi_reference.run(live, name, **filters)
            assert got.columns == want.columns, (name, filters)
            if not same(got.rows, want.rows):
                bad.append((name, filters))
    assert not bad, bad
    assert queries.run(live, "requisitions").rows and queries.run(live, "supplier_scorecard").rows
