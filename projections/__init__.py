"""The ClickHouse read side, Snuba-style: the ``follower`` reads the event store's notification
log and hands each batch to the engine as stored; the ``writer`` fills the tables from it with
the flattening views of the numbered ``migrations`` (``processors`` says the same in Python, as
the reference the tests hold the engine to); materialized views keep daily sums; ``summaries``
keeps the small per-stock-point-day, per-week and per-order-line tables the named KPI
``queries`` read; ``bi_http`` is ClickHouse's HTTP interface over the embedded engine,
read-only, for BI tools; ``service`` runs all of it in the service process.

Everything goes through ``clickhouse-connect`` (``client.connect``): ``chdb:///dir`` embedded,
``http(s)://`` for a server. This package imports nothing of ours but ``domain``: the follower
takes notifications, not the store.
"""
