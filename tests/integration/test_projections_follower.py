"""The projection follower against the real ClickHouse engine: replay equals live, and a
crash between a batch's inserts and its position update neither skips nor duplicates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from projections import queries
from projections.follower import Follower, json_state, rebuild
from projections.processors import COLUMNS
from projections.schema import DERIVED_TABLES, SOURCE_TABLES, SUMMARY_TABLES, contents
from projections.writer import Writer
from streams.store import EventStore, sqlite_env

from .projections_world import Hospital

ROOT = Path(__file__).resolve().parents[2]
TABLES = SOURCE_TABLES + DERIVED_TABLES + SUMMARY_TABLES
PERIOD: dict[str, Any] = {"start": "2026-03-02", "end": "2026-03-16"}


@pytest.fixture(scope="session")
def servers() -> dict[str, str]:
    """These tests need ClickHouse only: not the Kafka and PostgreSQL servers of conftest."""
    return {}


def sqlite_hospital(path: Path) -> Hospital:
    hospital = Hospital(store=EventStore(env=sqlite_env(str(path))))
    hospital.register()
    return hospital


def rounded(rows: Any) -> Any:
    """KPI rows with floats to 12 significant digits: sums taken in another order (parts merged
    differently) may differ in the last bits."""
    return json.loads(json.dumps(rows, default=str), parse_float=lambda x: float(f"{float(x):.12g}"))


def assert_same_projection(a: Any, b: Any) -> None:
    for table in TABLES:
        assert contents(a, table) == contents(b, table), table
    for name in queries.KPIS:
        assert rounded(queries.run(a, name, **PERIOD).rows) == rounded(queries.run(b, name, **PERIOD).rows), name


def test_table_columns_are_the_columns_the_processors_fill(ch: Any) -> None:
    for table, columns in COLUMNS.items():
        described = [row[0] for row in ch.query(f"DESCRIBE TABLE {table}").result_rows]
        assert tuple(described) == columns, table


def test_tables_rebuilt_from_the_store_equal_the_tables_built_live(databases: Any, tmp_path: Path) -> None:
    hospital = sqlite_hospital(tmp_path / "events.sqlite")
    store = hospital.store
    live = databases.open("live")
    follower = Follower(live, batch_size=7)
    follower.catch_up(store.notifications, store.mapper.to_domain_event)
    for _ in hospital.run(days=14, per_batch=3):
        follower.catch_up(store.notifications, store.mapper.to_domain_event)

    rebuilt = databases.open("rebuilt")
    report = rebuild(rebuilt, store.notifications, json_state, batch_size=1000)

    last = store.recorder.max_notification_id()
    assert report.events == last and follower.position() == last
    assert contents(live, "events_raw")[-1][0] == last
    assert len(contents(live, "decisions")) > 50 and len(contents(live, "alerts")) > 5
    assert_same_projection(live, rebuilt)


def test_following_again_with_nothing_new_writes_nothing(ch: Any) -> None:
    hospital = Hospital()
    hospital.register()
    for _ in hospital.run(days=3, per_batch=50):
        pass
    follower = Follower(ch, batch_size=100)
    first = follower.catch_up(hospital.store.notifications, hospital.store.mapper.to_domain_event)
    again = Follower(ch).catch_up(hospital.store.notifications, hospital.store.mapper.to_domain_event)
    assert first.events > 0 and again.events == 0 and again.rows == 0
    assert len(contents(ch, "events_raw")) == first.events


class Crash(Exception):
    pass


class CrashingWriter(Writer):
    """Writes the first ``tables`` tables of batch ``at`` and then dies, before the follower
    can record its position (``tables=None``: every table, the whole batch is in)."""

    def __init__(self, client: Any, at: int, tables: int | None) -> None:
        super().__init__(client)
        self.at, self.tables, self.batches = at, tables, 0

    def write(self, tables: Any = None) -> None:
        self.batches += 1
        if self.batches == self.at:
            present = list(tables if tables is not None else SOURCE_TABLES)
            super().write(present[: self.tables] if self.tables is not None else present)
            raise Crash(f"killed after writing batch {self.at}")
        super().write(tables)


@pytest.mark.parametrize("tables_written", [None, 0, 2, 5], ids=["all", "none", "two", "five"])
def test_restart_after_a_crash_between_insert_and_position_neither_skips_nor_duplicates(
        databases: Any, tables_written: int | None) -> None:
    hospital = Hospital()
    hospital.register()
    for _ in hospital.run(days=10, per_batch=40):
        pass
    store = hospital.store
    crashed = databases.open("crashed")
    follower = Follower(crashed, batch_size=25, writer=CrashingWriter(crashed, at=3, tables=tables_written))
    with pytest.raises(Crash):
        follower.catch_up(store.notifications, store.mapper.to_domain_event)
    before = Follower(crashed).read_position()
    assert (before.position, before.pending_from, before.pending_to) == (50, 51, 75)

    restarted = Follower(crashed, batch_size=25).catch_up(store.notifications, store.mapper.to_domain_event)

    assert restarted.position == store.recorder.max_notification_id()
    reference = databases.open("reference")
    rebuild(reference, store.notifications, json_state)
    assert_same_projection(crashed, reference)
    ids = [row[0] for row in contents(crashed, "events_raw")]
    assert ids == list(range(1, restarted.position + 1))  # no gap, no duplicate


KILLED_FOLLOWER = """
import os, signal, sys
sys.path[:0] = [{root!r}, {tests!r}]
from projections.client import open_projections
from projections.follower import Follower
from projections.writer import Writer
from streams.store import EventStore, sqlite_env

class DiesAfterInserting(Writer):
    batches = 0
    def write(self, tables=None):
        super().write(tables)
        DiesAfterInserting.batches += 1
        if DiesAfterInserting.batches == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # the inserts are in; the position is not

store = EventStore(env=sqlite_env({store!r}))
client = open_projections({dsn!r}, "killed")
follower = Follower(client, batch_size=40, writer=DiesAfterInserting(client))
follower.catch_up(store.notifications, store.mapper.to_domain_event)
"""

RESTARTED_FOLLOWER = """
import json, sys
sys.path[:0] = [{root!r}, {tests!r}]
from projections import queries
from projections.client import open_projections
from projections.follower import Follower, json_state, rebuild
from projections.schema import DERIVED_TABLES, SOURCE_TABLES, SUMMARY_TABLES, contents
from streams.store import EventStore, sqlite_env

store = EventStore(env=sqlite_env({store!r}))
client = open_projections({dsn!r}, "killed")
found = Follower(client).read_position()
report = Follower(client, batch_size=40).catch_up(store.notifications, store.mapper.to_domain_event)
reference = open_projections({dsn!r}, "reference")
rebuild(reference, store.notifications, json_state)
different = [t for t in SOURCE_TABLES + DERIVED_TABLES + SUMMARY_TABLES
             if contents(client, t) != contents(reference, t)]
def rounded(rows):
    return json.loads(json.dumps(rows, default=str), parse_float=lambda x: float(f"{{float(x):.12g}}"))
different += [k for k in queries.KPIS if rounded(queries.run(client, k, start="2026-03-02", end="2026-03-16").rows)
              != rounded(queries.run(reference, k, start="2026-03-02", end="2026-03-16").rows)]
ids = [row[0] for row in contents(client, "events_raw")]
print(json.dumps({{"found": [found.position, found.pending_from, found.pending_to],
                  "position": report.position, "different": different,
                  "ids_ok": ids == list(range(1, report.position + 1))}}))
"""


def test_follower_killed_between_insert_and_position_update_resumes_exactly(tmp_path: Path) -> None:
    """A real kill (SIGKILL) of a follower process after it wrote a batch and before it
    recorded the position; a new process finishes the batch and goes on."""
    hospital = sqlite_hospital(tmp_path / "events.sqlite")
    for _ in hospital.run(days=6, per_batch=60):
        pass
    dsn = os.environ.get("REPLENISH_TEST_CLICKHOUSE_URL") or f"chdb://{tmp_path / 'chdb'}"
    fill = {"root": str(ROOT), "tests": str(ROOT / "tests" / "integration"),
            "store": str(tmp_path / "events.sqlite"), "dsn": dsn}
    killed = subprocess.run([sys.executable, "-c", KILLED_FOLLOWER.format(**fill)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]

    restarted = subprocess.run([sys.executable, "-c", RESTARTED_FOLLOWER.format(**fill)],
                               capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    outcome = json.loads(restarted.stdout.strip().splitlines()[-1])
    assert outcome["found"] == [40, 41, 80]
    assert outcome["position"] == hospital.store.recorder.max_notification_id()
    assert outcome["different"] == [] and outcome["ids_ok"]


def test_a_repeat_of_an_alert_is_a_row_of_its_own(databases: Any) -> None:
    """Two refused scans of the recalled lot in the world: one alert raised, its repeat a row
    with change 'repeated', the same built live (``projections.processors``) and rebuilt."""
    hospital = Hospital()
    hospital.register()
    for _ in hospital.run(days=10, per_batch=50):
        pass
    for name in ("repeats_live", "repeats_rebuilt"):
        db = databases.open(name)
        if name.endswith("live"):
            Follower(db, batch_size=100).catch_up(hospital.store.notifications,
                                                  hospital.store.mapper.to_domain_event)
        else:
            rebuild(db, hospital.store.notifications, json_state, batch_size=1000)
        rows = [r[:3] for r in contents(db, "alerts")]
        ids = {r[0] for r in contents(db, "alerts") if "recalled_lot_scanned" in r}
        assert len(ids) == 1, name
        changes = sorted(r[2] for r in contents(db, "alerts") if r[0] in ids)
        assert changes == ["raised", "repeated"], (name, rows)
        (current,) = db.query(f"SELECT status, repeats FROM alerts_current WHERE alert_id = '{ids.pop()}'").result_rows
        assert current == ("open", 1), name
