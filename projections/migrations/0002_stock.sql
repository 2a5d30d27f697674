-- Each stock fact's effect on one lot's current balance (the ``effects`` decided when it
-- was recorded), so a stock point's balance over time is a running sum of ``delta``.
CREATE TABLE IF NOT EXISTS stock_moves
(
    notification_id UInt64,
    effect_index UInt16,
    event_id String,
    type LowCardinality(String),
    side LowCardinality(String),
    site LowCardinality(String),
    location LowCardinality(String),
    sku LowCardinality(String),
    lot String,
    occurred_at DateTime64(6, 'UTC'),
    delta Float64
)
ENGINE = ReplacingMergeTree
ORDER BY (sku, location, occurred_at, notification_id, effect_index);

-- Net change of each lot's balance per stock point and UTC day.
CREATE TABLE IF NOT EXISTS stock_daily
(
    sku LowCardinality(String),
    location LowCardinality(String),
    lot String,
    day Date,
    site LowCardinality(String),
    net_change Float64,
    moves UInt64
)
ENGINE = SummingMergeTree((net_change, moves))
ORDER BY (sku, location, lot, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS stock_daily_mv TO stock_daily AS
SELECT sku, location, lot, toDate(occurred_at) AS day, site, delta AS net_change, toUInt64(1) AS moves
FROM stock_moves;

-- Closing balance of each lot per stock point, on the days its balance changed.
CREATE VIEW IF NOT EXISTS stock_balance_daily AS
SELECT sku, location, lot, day, site, net_change,
       sum(net_change) OVER (PARTITION BY sku, location, lot ORDER BY day ROWS UNBOUNDED PRECEDING) AS closing
FROM
(
    SELECT sku, location, lot, day, any(site) AS site, sum(net_change) AS net_change
    FROM stock_daily
    GROUP BY sku, location, lot, day
);
