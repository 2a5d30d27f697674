"""The batched writer: a batch of the notification log is staged in the engine as stored (the
JSON states), then each table is written with one ``INSERT ... SELECT`` from its flattening
view (``stage_<table>``, migrations/0008_flatten.sql): the engine does the flattening, in C++,
and Python only hands over bytes. With helper connections the stage is filled, and the tables
written, on several connections at once (the engine runs them in parallel)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from projections.processors import COLUMNS
from projections.schema import SOURCE_TABLES

STAGE = "notifications_stage"
STAGE_COLUMNS = ("notification_id", "stream_id", "stream_version", "topic", "state")
# Session settings of the writing connections: one insert stream whose blocks are squashed into
# one (so one part: a batch's rows are in a table entirely or not at all), and no merging of
# the rows of an insert among themselves (the notification ids of a batch are distinct).
SETTINGS = {"max_insert_threads": 1, "min_insert_block_size_rows": 1 << 40,
            "min_insert_block_size_bytes": 1 << 40, "optimize_on_insert": 0}

# The stored events that can give each table rows, by kind (``Aggregate.Event``): a filter the
# writer applies before asking the engine (each INSERT costs some milliseconds of planning);
# the views decide. ``None``: every kind.
FEEDS: dict[str, Callable[[str], bool] | None] = {
    "items": lambda kind: kind == "MasterRecord.Registered",
    "locations": lambda kind: kind == "MasterRecord.Registered",
    "lot_expiries": lambda kind: kind in ("Lot.Opened", "Lot.ExpiryLearned", "Lot.Changed"),
    "po_lines": lambda kind: not kind.endswith("Refused"),  # and the state names po_issued
    "alerts": lambda kind: kind in ("StockPoint.AlertRaised", "StockPoint.AlertChanged", "StockPoint.AlertRepeated",
                                    "SupplierScorecard.AlertRaised", "SupplierScorecard.AlertChanged"),
    "requisitions": lambda kind: kind == "Requisition.Opened",
    "requisition_lines": lambda kind: kind == "Requisition.LineAdded",
    "requisition_status": lambda kind: kind.startswith("Requisition.") and kind != "Requisition.LineAdded",
    "supplier_scores": lambda kind: kind == "SupplierScorecard.Scored",
    "decisions": lambda kind: "Decided" in kind,
    "stock_moves": lambda kind: kind == "StockPoint.Recorded",
    "events_raw": None,
}


def tables_for(topics: Iterable[str], states: Iterable[bytes]) -> list[str]:
    """The tables a batch with these topics (and states) may give rows, in writing order."""
    kinds = {topic.rpartition(":")[2] for topic in topics}
    states = list(states)

    def fed(table: str) -> bool:
        feeds = FEEDS.get(table)
        if feeds is not None and not any(feeds(kind) for kind in kinds):
            return False
        return table != "po_lines" or any(b"po_issued" in state for state in states)
    return [table for table in SOURCE_TABLES if fed(table)]


class Writer:
    """Writes staged batches through ``clickhouse-connect`` clients on the projection database:
    ``client`` and, to work in parallel, ``helpers`` (other connections to the same database).

    Tables are written in ``SOURCE_TABLES`` order, ``events_raw`` last, on one connection; with
    helpers, ``events_raw`` (the largest) is written on its own while the others follow in
    order on a helper. The materialized views on them (daily sums) follow each insert.
    """

    def __init__(self, client: Any, helpers: Sequence[Any] = (),
                 columns: Mapping[str, tuple[str, ...]] = COLUMNS) -> None:
        self.client = client
        self.helpers = list(helpers)
        self.columns = columns
        for c in [client, *self.helpers]:
            for key, value in SETTINGS.items():
                c.set_client_setting(key, value)
        self._pool = ThreadPoolExecutor(max_workers=len(self.helpers), thread_name_prefix="projection-insert") \
            if self.helpers else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def stage(self, columns: Sequence[list[Any]]) -> list[str]:
        """Replace the staged batch with ``columns`` (ids, stream ids, versions, topics, states);
        returns the tables it may give rows."""
        self.client.command(f"TRUNCATE TABLE {STAGE}")
        n = len(columns[0]) if columns else 0
        if not n:
            return []
        clients = [self.client, *self.helpers] if n >= 1000 else [self.client]
        step = -(-n // len(clients))
        parts = [(c, [col[i * step:(i + 1) * step] for col in columns]) for i, c in enumerate(clients)]
        self._parallel([(c, lambda c=c, p=p: c.insert(STAGE, p, column_names=list(STAGE_COLUMNS),
                                                          column_oriented=True)) for c, p in parts])
        return tables_for(columns[3], columns[4])

    def write(self, tables: Iterable[str] | None = None) -> None:
        """Write the staged batch to ``tables`` (default: every table)."""
        tables = list(tables if tables is not None else SOURCE_TABLES)
        if not self.helpers or "events_raw" not in tables or len(tables) == 1:
            for table in tables:
                self.insert(table)
            return
        rest = [t for t in tables if t != "events_raw"]
        self._parallel([(self.client, lambda: self.insert("events_raw")),
                        (self.helpers[0], lambda: [self.insert(t, self.helpers[0]) for t in rest])])

    def insert(self, table: str, client: Any = None) -> None:
        names = ", ".join(self.columns[table])
        (client or self.client).command(f"INSERT INTO {table} ({names}) SELECT {names} FROM stage_{table}")

    def staged_rows(self, table: str) -> int:
        """How many rows the staged batch gives ``table``."""
        return int(self.client.query(f"SELECT count() FROM stage_{table}").result_rows[0][0])

    def _parallel(self, jobs: list[tuple[Any, Callable[[], Any]]]) -> None:
        """Run each job (the first on this thread, the others on the pool) and wait for all."""
        if len(jobs) == 1 or self._pool is None:
            for _, job in jobs:
                job()
            return
        futures = [self._pool.submit(job) for _, job in jobs[1:]]
        try:
            jobs[0][1]()
        finally:
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
