-- Usage, waste and returns per stock point and UTC day, in base units.
CREATE TABLE IF NOT EXISTS consumption_daily
(
    sku LowCardinality(String),
    location LowCardinality(String),
    day Date,
    site LowCardinality(String),
    used Float64,
    wasted Float64,
    returned Float64,
    used_in_cases Float64,
    usage_events UInt64
)
ENGINE = SummingMergeTree((used, wasted, returned, used_in_cases, usage_events))
ORDER BY (sku, location, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS consumption_daily_mv TO consumption_daily AS
SELECT sku, location, toDate(occurred_at) AS day, site,
       if(type = 'usage', ifNull(quantity, 0), 0) AS used,
       if(type = 'waste', ifNull(quantity, 0), 0) AS wasted,
       if(type = 'return', ifNull(quantity, 0), 0) AS returned,
       if(type = 'usage' AND case_id != '', ifNull(quantity, 0), 0) AS used_in_cases,
       toUInt64(type = 'usage') AS usage_events
FROM events_raw
WHERE kind = 'StockPoint.Recorded' AND type IN ('usage', 'waste', 'return');
