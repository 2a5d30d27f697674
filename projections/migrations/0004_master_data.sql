-- Item registrations, each effective from its occurred_at (unit cost, units, criticality).
CREATE TABLE IF NOT EXISTS items
(
    sku LowCardinality(String),
    effective_from DateTime64(6, 'UTC'),
    notification_id UInt64,
    base_unit LowCardinality(String),
    units Map(String, Float64),
    pack_size Float64,
    criticality LowCardinality(String),
    lead_time_days Nullable(Float64),
    supplier LowCardinality(String),
    unit_cost Nullable(Float64),
    currency LowCardinality(String),
    description String
)
ENGINE = ReplacingMergeTree
ORDER BY (sku, effective_from, notification_id);

CREATE TABLE IF NOT EXISTS locations
(
    location LowCardinality(String),
    effective_from DateTime64(6, 'UTC'),
    notification_id UInt64,
    site LowCardinality(String),
    name String,
    kind LowCardinality(String),
    timezone LowCardinality(String),
    restocked_from LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (location, effective_from, notification_id);

-- What is known of each lot's expiry, in recording order: the latest row wins.
CREATE TABLE IF NOT EXISTS lot_expiries
(
    sku LowCardinality(String),
    lot String,
    notification_id UInt64,
    expiry Date,
    source LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (sku, lot, notification_id);
