"""The ClickHouse read side, Snuba-style: pure ``processors`` (stored event -> rows), a
batched ``writer``, the ``follower`` that reads the event store's notification log and records
its position in ClickHouse, numbered ``migrations``, named KPI ``queries``, and ``bi_http``
(ClickHouse's HTTP interface over the embedded engine, read-only, for BI tools).

Everything goes through ``clickhouse-connect`` (``client.connect``): ``chdb:///dir`` embedded,
``http(s)://`` for a server. This package imports nothing of ours but ``domain``: the follower
takes notifications and a decoder, not the store.
"""
