-- Small tables the KPI queries read, so that each answers in milliseconds over millions of
-- events. Two kinds:
--  * narrow fact tables filled by materialized views from events_raw (receipts, waste,
--    compliance facts) and a per-lot price sum;
--  * summaries per stock point and day (sp_days), per stock point and ISO week (sp_weeks), per
--    stock point (sp_extent), per stock point and lot (sp_lots) and per purchase order line
--    (po_line_status). They are not sums an insert can add to (running balances, standing
--    forecasts, latest order lines), so the follower recomputes the rows of what each batch
--    touched (``projections/summaries.py``); each recomputation carries a higher ``version`` and
--    reads take the latest (FINAL).
-- The KPI definitions stay in projections/queries.py; these tables only hold their inputs.

-- Finding what a batch touched: the notification ids of these tables are in insertion order.
ALTER TABLE stock_moves ADD INDEX IF NOT EXISTS notification_idx notification_id TYPE minmax GRANULARITY 1;

ALTER TABLE decisions ADD INDEX IF NOT EXISTS notification_idx notification_id TYPE minmax GRANULARITY 1;

ALTER TABLE lot_expiries ADD INDEX IF NOT EXISTS notification_idx notification_id TYPE minmax GRANULARITY 1;

ALTER TABLE po_lines ADD INDEX IF NOT EXISTS notification_idx notification_id TYPE minmax GRANULARITY 1;

-- Receipts, one row each (unit cost, fill rate, in-transit time, lot prices).
CREATE TABLE IF NOT EXISTS receipts
(
    notification_id UInt64,
    po_id String,
    sku LowCardinality(String),
    lot String,
    site LowCardinality(String),
    location LowCardinality(String),
    supplier LowCardinality(String),
    occurred_at DateTime64(6, 'UTC'),
    quantity Nullable(Float64),
    unit_price Nullable(Float64)
)
ENGINE = ReplacingMergeTree
ORDER BY (po_id, sku, notification_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS receipts_mv TO receipts AS
SELECT notification_id, po_id, sku, lot, site, location, supplier, occurred_at, quantity, unit_price
FROM events_raw
WHERE kind = 'StockPoint.Recorded' AND type = 'receipt';

-- What each lot was bought at: quantity-weighted, from receipts that carry a price.
CREATE TABLE IF NOT EXISTS lot_prices
(
    sku LowCardinality(String),
    lot String,
    value Float64,
    quantity Float64
)
ENGINE = SummingMergeTree((value, quantity))
ORDER BY (sku, lot);

CREATE MATERIALIZED VIEW IF NOT EXISTS lot_prices_mv TO lot_prices AS
SELECT sku, lot, sum(q * p) AS value, sum(q) AS quantity
FROM
(
    SELECT sku, lot, assumeNotNull(quantity) AS q, assumeNotNull(unit_price) AS p
    FROM events_raw
    WHERE kind = 'StockPoint.Recorded' AND type = 'receipt' AND unit_price IS NOT NULL AND quantity > 0
)
GROUP BY sku, lot;

-- Waste, one row each, with its reason.
CREATE TABLE IF NOT EXISTS waste
(
    notification_id UInt64,
    sku LowCardinality(String),
    lot String,
    site LowCardinality(String),
    location LowCardinality(String),
    occurred_at DateTime64(6, 'UTC'),
    quantity Float64,
    reason String
)
ENGINE = ReplacingMergeTree
ORDER BY (occurred_at, notification_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS waste_mv TO waste AS
SELECT notification_id, sku, lot, site, location, occurred_at, assumeNotNull(quantity) AS quantity,
       JSONExtractString(payload, 'event', 'reason') AS reason
FROM events_raw
WHERE kind = 'StockPoint.Recorded' AND type = 'waste';

-- Compliance facts: lot changes, recalls, refusals (one per distinct code), flagged uses.
CREATE TABLE IF NOT EXISTS compliance_facts
(
    notification_id UInt64,
    occurred_at DateTime64(6, 'UTC'),
    category LowCardinality(String),
    detail LowCardinality(String),
    kind LowCardinality(String),
    site LowCardinality(String),
    location LowCardinality(String),
    sku LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (occurred_at, notification_id, category, detail);

CREATE MATERIALIZED VIEW IF NOT EXISTS compliance_lots_recalls_mv TO compliance_facts AS
SELECT notification_id, occurred_at,
       multiIf(kind = 'Lot.Changed', 'lot_changed', kind = 'Recall.Issued', 'recall_issued', 'recall_closed') AS category,
       multiIf(kind = 'Lot.Changed', JSONExtractString(payload, 'event', 'change'),
               kind = 'Recall.Issued', JSONExtractString(payload, 'event', 'recall_class'), '') AS detail,
       kind, site, location, sku
FROM events_raw
WHERE kind IN ('Lot.Changed', 'Recall.Issued', 'Recall.Closed');

CREATE MATERIALIZED VIEW IF NOT EXISTS compliance_refusals_mv TO compliance_facts AS
SELECT notification_id, occurred_at, 'refused' AS category, toString(code) AS detail, kind, site, location, sku
FROM events_raw
ARRAY JOIN arrayDistinct(error_codes) AS code
WHERE refused = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS compliance_flagged_mv TO compliance_facts AS
SELECT notification_id, occurred_at, 'flagged_use' AS category, toString(flag) AS detail, kind, site, location, sku
FROM events_raw
ARRAY JOIN flags AS flag
WHERE kind = 'StockPoint.Recorded' AND flag IN ('recalled_lot_used', 'expired_lot_used');

-- Per stock point and UTC day, every day from the stock point's first stock movement, usage or
-- standing forecast to its last: the closing book on-hand (all lots; ``in_stock`` from the first
-- movement on), the day's usage, and (``in_fva``: the forecast-vs-actual grid) the standing
-- forecast and the naive forecast's error |used - the day before's used|.
CREATE TABLE IF NOT EXISTS sp_days
(
    day Date,
    sku LowCardinality(String),
    location LowCardinality(String),
    site LowCardinality(String),
    in_stock UInt8,
    closing Float64,
    used Float64,
    in_fva UInt8,
    forecast Float64,
    naive Nullable(Float64),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (day, sku, location);

-- sp_days summed per ISO week (Monday first); the naive error of the Monday is kept apart so
-- that a period starting on that Monday can leave it out.
CREATE TABLE IF NOT EXISTS sp_weeks
(
    week Date,
    sku LowCardinality(String),
    location LowCardinality(String),
    site LowCardinality(String),
    stock_days UInt32,
    closing_sum Float64,
    stockout_days UInt32,
    stockout_used Array(Float64),
    instock_days UInt32,
    instock_used Float64,
    used_stock Float64,
    used_all Float64,
    fva_days UInt32,
    fc_sum Float64,
    act_sum Float64,
    abs_err Float64,
    err Float64,
    naive_sum Float64,
    naive_count UInt32,
    naive_monday Float64,
    naive_monday_count UInt32,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (week, sku, location);

-- Per stock point: its grids' bounds and its last closing book on-hand (carried after it).
CREATE TABLE IF NOT EXISTS sp_extent
(
    sku LowCardinality(String),
    location LowCardinality(String),
    site LowCardinality(String),
    has_stock UInt8,
    first_move Date,
    grid_start Date,
    grid_end Date,
    last_closing Float64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (sku, location);

-- Per stock point and lot: its first day with a movement, its book balance, its latest known
-- expiry and the balance it had at the end of that day.
CREATE TABLE IF NOT EXISTS sp_lots
(
    sku LowCardinality(String),
    location LowCardinality(String),
    lot String,
    site LowCardinality(String),
    first_day Date,
    balance Float64,
    has_expiry UInt8,
    expiry Date,
    balance_at_expiry Float64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (sku, location, lot);

-- Per purchase order line (po_id, sku) of the order's latest issue: what was ordered, when it
-- was first issued and is due, and the receipts against it (instant, quantity; and their sums:
-- all, by the end of the expected day, and the last receipt's instant). ``present`` is 0 for a
-- line a later issue dropped.
CREATE TABLE IF NOT EXISTS po_line_status
(
    first_notification UInt64,
    po_id String,
    sku LowCardinality(String),
    present UInt8,
    supplier LowCardinality(String),
    site LowCardinality(String),
    location LowCardinality(String),
    ordered Float64,
    issued_at DateTime64(6, 'UTC'),
    expected_at Nullable(DateTime64(6, 'UTC')),
    due_at DateTime64(6, 'UTC'),
    receipts Array(Tuple(DateTime64(6, 'UTC'), Float64)),
    received Float64,
    received_on_time Float64,
    last_receipt_at DateTime64(6, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (first_notification, po_id, sku);

-- Each receipt against a purchase order, with the line it fills (``present`` 0: no such line
-- in the order's latest issue) and its time in transit from the order's first issue, in days.
CREATE TABLE IF NOT EXISTS po_receipt_transit
(
    notification_id UInt64,
    po_id String,
    sku LowCardinality(String),
    present UInt8,
    supplier LowCardinality(String),
    site LowCardinality(String),
    location LowCardinality(String),
    received_at DateTime64(6, 'UTC'),
    expected_at Nullable(DateTime64(6, 'UTC')),
    days Float64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY notification_id;

-- What a refresh of the summaries is about to recompute (filled, then read, by one refresh).
CREATE TABLE IF NOT EXISTS refresh_sps
(
    sku String,
    location String,
    d0 Date
)
ENGINE = Memory;

CREATE TABLE IF NOT EXISTS refresh_lots
(
    sku String,
    location String,
    lot String
)
ENGINE = Memory;

CREATE TABLE IF NOT EXISTS refresh_pos
(
    po_id String
)
ENGINE = Memory;
