-- Policy decisions with the numbers they came from (demand per day, lead time, service level).
CREATE TABLE IF NOT EXISTS decisions
(
    notification_id UInt64,
    decision_type LowCardinality(String),
    site LowCardinality(String),
    location LowCardinality(String),
    sku LowCardinality(String),
    decided_at DateTime64(6, 'UTC'),
    cause_event_id String,
    demand_mean Nullable(Float64),
    demand_spread Nullable(Float64),
    lead_time_days Nullable(Float64),
    lead_time_spread Nullable(Float64),
    service_level Nullable(Float64),
    safety_stock Nullable(Float64),
    reorder_point Nullable(Float64),
    order_up_to Nullable(Float64),
    quantity Nullable(Float64),
    old_value Nullable(Float64),
    new_value Nullable(Float64),
    formula LowCardinality(String),
    decision String
)
ENGINE = ReplacingMergeTree
ORDER BY (sku, location, decided_at, notification_id);

-- The standing demand forecast (per day, base units) at the end of each UTC day: the last
-- decision's demand mean that day. argMax is idempotent, so a re-sent row changes nothing.
CREATE TABLE IF NOT EXISTS forecast_daily
(
    sku LowCardinality(String),
    location LowCardinality(String),
    day Date,
    site SimpleAggregateFunction(any, LowCardinality(String)),
    demand_mean AggregateFunction(argMax, Float64, Tuple(DateTime64(6, 'UTC'), UInt64)),
    demand_spread AggregateFunction(argMax, Float64, Tuple(DateTime64(6, 'UTC'), UInt64))
)
ENGINE = AggregatingMergeTree
ORDER BY (sku, location, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS forecast_daily_mv TO forecast_daily AS
SELECT sku, location, toDate(decided_at) AS day, any(site) AS site,
       argMaxState(assumeNotNull(d.demand_mean), (d.decided_at, d.notification_id)) AS demand_mean,
       argMaxState(ifNull(d.demand_spread, 0), (d.decided_at, d.notification_id)) AS demand_spread
FROM decisions AS d
WHERE d.demand_mean IS NOT NULL
GROUP BY sku, location, day;

-- Alert events: raised (with everything known of the alert) and status changes.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String,
    notification_id UInt64,
    change LowCardinality(String),
    kind LowCardinality(String),
    severity LowCardinality(String),
    site LowCardinality(String),
    location LowCardinality(String),
    sku LowCardinality(String),
    lot String,
    at DateTime64(6, 'UTC'),
    status LowCardinality(String),
    event_id String,
    message String
)
ENGINE = ReplacingMergeTree
ORDER BY (alert_id, notification_id);

-- Each alert as it stands: what raised it, and its latest status.
CREATE VIEW IF NOT EXISTS alerts_current AS
SELECT alert_id,
       argMaxIf(kind, notification_id, change = 'raised') AS kind,
       argMaxIf(severity, notification_id, change = 'raised') AS severity,
       argMaxIf(site, notification_id, change = 'raised') AS site,
       argMaxIf(location, notification_id, change = 'raised') AS location,
       argMaxIf(sku, notification_id, change = 'raised') AS sku,
       argMaxIf(lot, notification_id, change = 'raised') AS lot,
       minIf(at, change = 'raised') AS raised_at,
       argMax(status, notification_id) AS status,
       max(at) AS updated_at,
       argMaxIf(event_id, notification_id, change = 'raised') AS event_id,
       argMaxIf(message, notification_id, change = 'raised') AS message
FROM alerts
GROUP BY alert_id;
