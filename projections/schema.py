"""The ClickHouse schema: numbered migrations (``migrations/NNNN_name.sql``) applied in order.

Each file holds statements separated by a ``;`` at the end of a line; every statement is
``CREATE ... IF NOT EXISTS``, so a migration interrupted half-way is simply run again. The
versions applied are recorded in ``schema_migrations`` of the same database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# Tables the follower fills (each row carries the notification id it came from), in the order
# a batch writes them; materialized views feed the daily tables from them.
SOURCE_TABLES = ("items", "locations", "lot_expiries", "po_lines", "alerts", "requisitions",
                 "requisition_lines", "requisition_status", "supplier_scores", "decisions",
                 "stock_moves", "events_raw")
# Everything a rebuild compares: source tables and the tables the materialized views fill.
DERIVED_TABLES = ("stock_daily", "consumption_daily", "forecast_daily", "receipts", "lot_prices", "waste",
                  "compliance_facts")
# The summaries the follower recomputes after each catch-up (``projections.summaries``): each
# row's latest version counts.
SUMMARY_TABLES = ("sp_days", "sp_weeks", "sp_extent", "sp_lots", "po_line_status", "po_receipt_transit")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file: split at a ``;`` that ends a line, comments dropped."""
    statements, current = [], []
    for line in sql.splitlines():
        if line.lstrip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            text = "\n".join(current).strip().rstrip(";").strip()
            if text:
                statements.append(text)
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), tuple(split_statements(path.read_text()))))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {directory}")
    return found


def applied(client: Any) -> set[int]:
    client.command("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
                   "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
                   "ENGINE = ReplacingMergeTree ORDER BY version")
    return {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}


def migrate(client: Any) -> list[int]:
    """Apply the migrations not yet applied to the client's database; returns their versions."""
    done = applied(client)
    ran = []
    for m in migrations():
        if m.version in done:
            continue
        for statement in m.statements:
            client.command(statement)
        client.insert("schema_migrations", [[m.version, m.name]], column_names=["version", "name"])
        ran.append(m.version)
    return ran


def drop_all(client: Any) -> None:
    """Drop every table and view of the schema (views first), and the migration record."""
    rows = client.query(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase()").result_rows
    views = [name for name, engine in rows if engine in ("MaterializedView", "View")]
    tables = [name for name, engine in rows if engine not in ("MaterializedView", "View")]
    for name in views + tables:
        client.command(f"DROP TABLE IF EXISTS `{name}` SYNC")


# How to read each table for a comparison: physical rows of the tables the follower writes
# (so a duplicate shows), merged rows of the tables the materialized views fill.
_MERGED = {
    "stock_daily": "SELECT sku, location, lot, day, any(site), round(sum(net_change), 6), sum(moves) "
                   "FROM stock_daily GROUP BY sku, location, lot, day",
    "consumption_daily": "SELECT sku, location, day, any(site), round(sum(used), 6), round(sum(wasted), 6), "
                         "round(sum(returned), 6), round(sum(used_in_cases), 6), sum(usage_events) "
                         "FROM consumption_daily GROUP BY sku, location, day",
    "forecast_daily": "SELECT sku, location, day, any(site), argMaxMerge(demand_mean), "
                      "argMaxMerge(demand_spread) FROM forecast_daily GROUP BY sku, location, day",
    "lot_prices": "SELECT sku, lot, round(sum(value), 6), round(sum(quantity), 6) FROM lot_prices GROUP BY sku, lot",
}


def contents(client: Any, table: str) -> list[tuple[Any, ...]]:
    """A table's rows in a canonical order, to compare two projections of the same log
    (summaries: their latest versions, without the version; sums rounded to 6 places)."""
    query = _MERGED.get(table, f"SELECT * FROM {table}")
    if table in SUMMARY_TABLES:
        columns = client.query(f"DESCRIBE TABLE {table}").result_rows
        shown = [f"round({name}, 6)" if kind == "Float64" else
                 f"arrayMap(x -> round(x, 6), {name})" if kind == "Array(Float64)" else name
                 for name, kind, *_ in columns if name != "version"]
        query = f"SELECT {', '.join(shown)} FROM {table} FINAL"
    return [tuple(row) for row in client.query(f"SELECT * FROM ({query}) ORDER BY ALL").result_rows]
