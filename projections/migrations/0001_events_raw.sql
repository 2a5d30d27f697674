-- Every stored event, one row each, keyed by its notification id (the position in the
-- event store's log): re-inserting a row replaces it, so inserts are idempotent. Sorted by
-- kind and type first, so a KPI reading one kind of fact (receipts, waste) reads only those.
CREATE TABLE IF NOT EXISTS events_raw
(
    notification_id UInt64,
    stream_id String,
    stream_version UInt64,
    kind LowCardinality(String),
    type LowCardinality(String),
    event_id String,
    occurred_at DateTime64(6, 'UTC'),
    recorded_at DateTime64(6, 'UTC'),
    site LowCardinality(String),
    location LowCardinality(String),
    sku LowCardinality(String),
    lot String,
    side LowCardinality(String),
    quantity Nullable(Float64),
    unit LowCardinality(String),
    supplier LowCardinality(String),
    po_id String,
    case_id String,
    unit_price Nullable(Float64),
    expiry Nullable(Date),
    refused UInt8,
    error_codes Array(LowCardinality(String)),
    flags Array(LowCardinality(String)),
    recorded_by LowCardinality(String),
    payload String
)
ENGINE = ReplacingMergeTree
ORDER BY (kind, type, notification_id);

-- The follower's position in the log, and the batch it was writing (pending_from..pending_to)
-- when it last wrote this row: a restart finishes that batch before going on.
CREATE TABLE IF NOT EXISTS projection_positions
(
    follower LowCardinality(String),
    position UInt64,
    pending_from UInt64,
    pending_to UInt64,
    seq UInt64,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(seq)
ORDER BY follower;
