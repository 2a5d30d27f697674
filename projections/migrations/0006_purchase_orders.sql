-- Purchase order lines in base units; a re-issued order's lines replace the earlier ones
-- (the latest notification of a po_id counts).
CREATE TABLE IF NOT EXISTS po_lines
(
    po_id String,
    line_index UInt16,
    notification_id UInt64,
    supplier LowCardinality(String),
    site LowCardinality(String),
    location LowCardinality(String),
    sku LowCardinality(String),
    quantity Float64,
    unit LowCardinality(String),
    unit_price Nullable(Float64),
    issued_at DateTime64(6, 'UTC'),
    expected_at Nullable(DateTime64(6, 'UTC'))
)
ENGINE = ReplacingMergeTree
ORDER BY (po_id, line_index, notification_id);
