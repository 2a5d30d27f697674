"""The batched writer: a batch of the notification log is staged in the engine as stored (the
JSON states), then each table is written with one ``INSERT ... SELECT`` from its flattening
view (``stage_<table>``, migrations/0008_flatten.sql): the engine does the flattening, in C++
and on every core, and Python only hands over bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from projections.processors import COLUMNS
from projections.schema import SOURCE_TABLES

STAGE = "notifications_stage"
STAGE_COLUMNS = ("notification_id", "stream_id", "stream_version", "topic", "state")
# One insert stream whose blocks are squashed into one (so one part: the batch's rows are in
# the table entirely or not at all).
_ONE_BLOCK = {"max_insert_threads": 1, "min_insert_block_size_rows": 1 << 40,
              "min_insert_block_size_bytes": 1 << 40}


# The stored events that can give each table rows, by kind (``Aggregate.Event``): a filter the
# writer applies before asking the engine (each INSERT costs some milliseconds of planning);
# the views decide. ``None``: every kind.
FEEDS: dict[str, Callable[[str], bool] | None] = {
    "items": lambda kind: kind == "MasterRecord.Registered",
    "locations": lambda kind: kind == "MasterRecord.Registered",
    "lot_expiries": lambda kind: kind in ("Lot.Opened", "Lot.ExpiryLearned", "Lot.Changed"),
    "po_lines": lambda kind: not kind.endswith("Refused"),  # and the state names po_issued
    "alerts": lambda kind: kind in ("StockPoint.AlertRaised", "StockPoint.AlertChanged"),
    "decisions": lambda kind: "Decided" in kind,
    "stock_moves": lambda kind: kind == "StockPoint.Recorded",
    "events_raw": None,
}


def tables_for(topics: Iterable[str], states: Iterable[bytes]) -> list[str]:
    """The tables a batch with these topics (and states) may give rows, in writing order."""
    kinds = {topic.rpartition(":")[2] for topic in topics}
    tables = []
    for table in SOURCE_TABLES:
        feeds = FEEDS.get(table)
        if feeds is None or any(feeds(kind) for kind in kinds):
            if table != "po_lines" or any(b"po_issued" in state for state in states):
                tables.append(table)
    return tables


class Writer:
    """Writes staged batches through a ``clickhouse-connect`` client.

    Tables are written in ``SOURCE_TABLES`` order, ``events_raw`` last; the materialized views
    on them (daily sums) follow each insert.
    """

    def __init__(self, client: Any, columns: Mapping[str, tuple[str, ...]] = COLUMNS) -> None:
        self.client = client
        self.columns = columns

    def stage(self, columns: Sequence[list[Any]]) -> list[str]:
        """Replace the staged batch with ``columns`` (ids, stream ids, versions, topics, states);
        returns the tables it may give rows."""
        self.client.command(f"TRUNCATE TABLE {STAGE}")
        if not columns or not columns[0]:
            return []
        self.client.insert(STAGE, list(columns), column_names=list(STAGE_COLUMNS), column_oriented=True)
        return tables_for(columns[3], columns[4])

    def write(self, tables: Iterable[str] | None = None) -> None:
        """Write the staged batch to ``tables`` (default: every table)."""
        for table in tables if tables is not None else SOURCE_TABLES:
            self.insert(table)

    def insert(self, table: str) -> None:
        names = ", ".join(self.columns[table])
        self.client.command(f"INSERT INTO {table} ({names}) SELECT {names} FROM stage_{table}",
                            settings=_ONE_BLOCK)

    def staged_rows(self, table: str) -> int:
        """How many rows the staged batch gives ``table``."""
        return int(self.client.query(f"SELECT count() FROM stage_{table}").result_rows[0][0])
