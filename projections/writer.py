"""The batched writer: one columnar insert per table for a whole batch of stored events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from projections.processors import COLUMNS, Row, Rows
from projections.schema import SOURCE_TABLES


class Writer:
    """Writes processor rows through a ``clickhouse-connect`` client.

    Tables are written in ``SOURCE_TABLES`` order, ``events_raw`` last; each table gets one
    insert (one block, so one part: it is in the table entirely or not at all).
    """

    def __init__(self, client: Any, columns: Mapping[str, tuple[str, ...]] = COLUMNS) -> None:
        self.client = client
        self.columns = columns

    def write(self, rows: Rows, tables: Iterable[str] | None = None) -> int:
        """Insert ``rows`` (by table); returns the number of rows written."""
        written = 0
        for table in tables if tables is not None else SOURCE_TABLES:
            if rows.get(table):
                written += self.insert(table, rows[table])
        unknown = set(rows) - set(self.columns)
        if unknown:
            raise ValueError(f"no table for rows of {sorted(unknown)}")
        return written

    def insert(self, table: str, rows: list[Row]) -> int:
        names = self.columns[table]
        data = [[row[name] for row in rows] for name in names]
        self.client.insert(table, data, column_names=list(names), column_oriented=True)
        return len(rows)
