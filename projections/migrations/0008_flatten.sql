-- Flattening inside the engine. The follower stages a batch of the notification log as it
-- is stored (id, stream, version, topic and the JSON state) and writes each table with one
-- INSERT ... SELECT from its view ``stage_<table>``: here a stored event becomes rows.
-- ``projections/processors.py`` says the same in Python: the reference these views are tested
-- against. No decision rule lives here, only flattening.
--
-- Conventions, as in processors.py: text is '' when absent; an instant is ISO 8601 with a zone
-- (else NULL), in UTC; a date is YYYY-MM-DD. A number is NULL unless the JSON holds a number:
-- refusals keep whatever was sent, so theirs are checked; accepted events were validated before
-- they were stored, so theirs are read as numbers.
--
-- The stage parses each state once, as it is inserted (its MATERIALIZED columns): ``top`` holds
-- the state's fields, ``fact`` the record it carries (the first of event, alert, decision and
-- key that is an object) and ``f`` that record's common fields; ``x`` (alerts, lots, master
-- data), ``d`` (decisions) and ``po`` (purchase orders) are parsed for the events that need them
-- (and a refusal's numbers are checked to be numbers). The views read those columns, which keeps
-- both the parsing and the engine's query analysis short.
CREATE TABLE IF NOT EXISTS notifications_stage
(
    notification_id UInt64,
    stream_id String,
    stream_version UInt64,
    topic LowCardinality(String),
    state String,
    stored_kind LowCardinality(String) MATERIALIZED splitByChar(':', topic)[-1],
    top Tuple(timestamp Nullable(String), event Nullable(String), alert Nullable(String), decision Nullable(String), key Nullable(String), errors Array(Tuple(code Nullable(String))), flags Array(Nullable(String)), recorded_by Nullable(String), by Nullable(String), event_id Nullable(String), effects Array(Tuple(Nullable(String), Float64)), alert_id Nullable(String), status Nullable(String), reason Nullable(String), expiry Nullable(String))
        MATERIALIZED JSONExtract(state, 'Tuple(timestamp Nullable(String), event Nullable(String), alert Nullable(String), decision Nullable(String), key Nullable(String), errors Array(Tuple(code Nullable(String))), flags Array(Nullable(String)), recorded_by Nullable(String), by Nullable(String), event_id Nullable(String), effects Array(Tuple(Nullable(String), Float64)), alert_id Nullable(String), status Nullable(String), reason Nullable(String), expiry Nullable(String))'),
    fact String MATERIALIZED multiIf(startsWith(top.event, '{'), top.event, startsWith(top.alert, '{'), top.alert,
                                     startsWith(top.decision, '{'), top.decision, startsWith(top.key, '{'), top.key, '{}'),
    recorded_at DateTime64(6, 'UTC') MATERIALIZED ifNull(parseDateTime64BestEffortOrNull(if(match(ifNull(top.timestamp, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), top.timestamp, NULL), 6, 'UTC'), toDateTime64(0, 6, 'UTC')),
    -- a stock point's stream is sp:<sku>@<location>
    sp_sku String MATERIALIZED if(startsWith(stream_id, 'sp:') AND position(stream_id, '@') > 0,
                                  substring(stream_id, 4, length(stream_id) - position(reverse(stream_id), '@') - 3), ''),
    sp_location String MATERIALIZED if(startsWith(stream_id, 'sp:') AND position(stream_id, '@') > 0,
                                       substring(stream_id, length(stream_id) - position(reverse(stream_id), '@') + 2), ''),
    f Tuple(type Nullable(String), event_id Nullable(String), occurred_at Nullable(String), raised_at Nullable(String), decided_at Nullable(String), site Nullable(String), location Nullable(String), sku Nullable(String), lot Nullable(String), side Nullable(String), quantity Nullable(Float64), unit Nullable(String), supplier Nullable(String), po_id Nullable(String), case_id Nullable(String), unit_price Nullable(Float64), sent_quantity Nullable(Float64), expiry Nullable(String))
        MATERIALIZED JSONExtract(fact, 'Tuple(type Nullable(String), event_id Nullable(String), occurred_at Nullable(String), raised_at Nullable(String), decided_at Nullable(String), site Nullable(String), location Nullable(String), sku Nullable(String), lot Nullable(String), side Nullable(String), quantity Nullable(Float64), unit Nullable(String), supplier Nullable(String), po_id Nullable(String), case_id Nullable(String), unit_price Nullable(Float64), sent_quantity Nullable(Float64), expiry Nullable(String))'),
    occurred_at Nullable(DateTime64(6, 'UTC')) MATERIALIZED parseDateTime64BestEffortOrNull(if(match(ifNull(f.occurred_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), f.occurred_at, NULL), 6, 'UTC'),
    x Tuple(id Nullable(String), kind Nullable(String), severity Nullable(String), status Nullable(String), message Nullable(String), change Nullable(String), new_expiry Nullable(String), base_unit Nullable(String), units Map(String, Nullable(Float64)), pack_size Nullable(Float64), criticality Nullable(String), lead_time_days Nullable(Float64), unit_cost Nullable(Float64), currency Nullable(String), description Nullable(String), name Nullable(String), timezone Nullable(String), restocked_from Nullable(String))
        MATERIALIZED JSONExtract(if(stored_kind IN ('StockPoint.AlertRaised', 'MasterRecord.Registered', 'Lot.Changed'), fact, '{}'),
                                 'Tuple(id Nullable(String), kind Nullable(String), severity Nullable(String), status Nullable(String), message Nullable(String), change Nullable(String), new_expiry Nullable(String), base_unit Nullable(String), units Map(String, Nullable(Float64)), pack_size Nullable(Float64), criticality Nullable(String), lead_time_days Nullable(Float64), unit_cost Nullable(Float64), currency Nullable(String), description Nullable(String), name Nullable(String), timezone Nullable(String), restocked_from Nullable(String))'),
    d Tuple(as_of Nullable(String), cause_event_id Nullable(String), old Nullable(Float64), new Nullable(Float64), demand_mean_per_day Nullable(Float64), demand_mean Nullable(Float64), mean_daily_demand Nullable(Float64), demand_sd_per_day Nullable(Float64), demand_spread Nullable(Float64), demand_sd Nullable(Float64), lead_time_days Nullable(Float64), lead_time_mean Nullable(Float64), lead_time_sd_days Nullable(Float64), lead_time_spread Nullable(Float64), lead_time_sd Nullable(Float64), service_level Nullable(Float64), safety_stock Nullable(Float64), reorder_point Nullable(Float64), order_up_to Nullable(Float64), formula Nullable(String), policy Tuple(demand_mean_per_day Nullable(Float64), demand_mean Nullable(Float64), mean_daily_demand Nullable(Float64), demand_sd_per_day Nullable(Float64), demand_spread Nullable(Float64), demand_sd Nullable(Float64), lead_time_days Nullable(Float64), lead_time_mean Nullable(Float64), lead_time_sd_days Nullable(Float64), lead_time_spread Nullable(Float64), lead_time_sd Nullable(Float64), service_level Nullable(Float64), safety_stock Nullable(Float64), reorder_point Nullable(Float64), order_up_to Nullable(Float64), formula Nullable(String), inputs Tuple(demand_mean_per_day Nullable(Float64), demand_mean Nullable(Float64), mean_daily_demand Nullable(Float64), demand_sd_per_day Nullable(Float64), demand_spread Nullable(Float64), demand_sd Nullable(Float64), lead_time_days Nullable(Float64), lead_time_mean Nullable(Float64), lead_time_sd_days Nullable(Float64), lead_time_spread Nullable(Float64), lead_time_sd Nullable(Float64), service_level Nullable(Float64), safety_stock Nullable(Float64), reorder_point Nullable(Float64), order_up_to Nullable(Float64), formula Nullable(String))), inputs Tuple(demand_mean_per_day Nullable(Float64), demand_mean Nullable(Float64), mean_daily_demand Nullable(Float64), demand_sd_per_day Nullable(Float64), demand_spread Nullable(Float64), demand_sd Nullable(Float64), lead_time_days Nullable(Float64), lead_time_mean Nullable(Float64), lead_time_sd_days Nullable(Float64), lead_time_spread Nullable(Float64), lead_time_sd Nullable(Float64), service_level Nullable(Float64), safety_stock Nullable(Float64), reorder_point Nullable(Float64), order_up_to Nullable(Float64), formula Nullable(String)))
        MATERIALIZED JSONExtract(if(position(stored_kind, 'Decided') > 0, fact, '{}'), 'Tuple(as_of Nullable(String), cause_event_id Nullable(String), old Nullable(Float64), new Nullable(Float64), demand_mean_per_day Nullable(Float64), demand_mean Nullable(Float64), mean_daily_demand Nullable(Float64), demand_sd_per_day Nullable(Float64), demand_spread Nullable(Float64), demand_sd Nullable(Float64), lead_time_days Nullable(Float64), lead_time_mean Nullable(Float64), lead_time_sd_days Nullable(Float64), lead_time_spread Nullable(Float64), lead_time_sd Nullable(Float64), service_level Nullable(Float64), safety_stock Nullable(Float64), reorder_point Nullable(Float64), order_up_to Nullable(Float64), formula Nullable(String), policy Tuple(demand_mean_per_day Nullable(Float64), demand_mean Nullable(Float64), mean_daily_demand Nullable(Float64), demand_sd_per_day Nullable(Float64), demand_spread Nullable(Float64), demand_sd Nullable(Float64), lead_time_days Nullable(Float64), lead_time_mean Nullable(Float64), lead_time_sd_days Nullable(Float64), lead_time_spread Nullable(Float64), lead_time_sd Nullable(Float64), service_level Nullable(Float64), safety_stock Nullable(Float64), reorder_point Nullable(Float64), order_up_to Nullable(Float64), formula Nullable(String), inputs Tuple(demand_mean_per_day Nullable(Float64), demand_mean Nullable(Float64), mean_daily_demand Nullable(Float64), demand_sd_per_day Nullable(Float64), demand_spread Nullable(Float64), demand_sd Nullable(Float64), lead_time_days Nullable(Float64), lead_time_mean Nullable(Float64), lead_time_sd_days Nullable(Float64), lead_time_spread Nullable(Float64), lead_time_sd Nullable(Float64), service_level Nullable(Float64), safety_stock Nullable(Float64), reorder_point Nullable(Float64), order_up_to Nullable(Float64), formula Nullable(String))), inputs Tuple(demand_mean_per_day Nullable(Float64), demand_mean Nullable(Float64), mean_daily_demand Nullable(Float64), demand_sd_per_day Nullable(Float64), demand_spread Nullable(Float64), demand_sd Nullable(Float64), lead_time_days Nullable(Float64), lead_time_mean Nullable(Float64), lead_time_sd_days Nullable(Float64), lead_time_spread Nullable(Float64), lead_time_sd Nullable(Float64), service_level Nullable(Float64), safety_stock Nullable(Float64), reorder_point Nullable(Float64), order_up_to Nullable(Float64), formula Nullable(String)))'),
    -- a purchase order's lines, as JSON (a line that is not an object gives no row)
    po Tuple(expected_at Nullable(String), lines Array(Nullable(String)))
        MATERIALIZED JSONExtract(if(position(state, 'po_issued') > 0, fact, '{}'), 'Tuple(expected_at Nullable(String), lines Array(Nullable(String)))')
)
ENGINE = Memory;

-- events_raw: one row per stored event.
CREATE VIEW IF NOT EXISTS stage_events_raw AS
SELECT notification_id, stream_id, stream_version, stored_kind AS kind,
       if(ifNull(f.type, '') != '', f.type,
          trim(LEADING '_' FROM lower(replaceRegexpAll(splitByChar('.', stored_kind)[-1], '([A-Z])', '_\\1')))) AS type,
       if(ifNull(f.event_id, '') != '', f.event_id, ifNull(top.event_id, '')) AS event_id,
       coalesce(occurred_at, parseDateTime64BestEffortOrNull(if(match(ifNull(f.raised_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), f.raised_at, NULL), 6, 'UTC'), parseDateTime64BestEffortOrNull(if(match(ifNull(f.decided_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), f.decided_at, NULL), 6, 'UTC'), recorded_at) AS occurred_at,
       recorded_at,
       ifNull(f.site, '') AS site,
       if(ifNull(f.location, '') != '', f.location, sp_location) AS location,
       if(ifNull(f.sku, '') != '', f.sku, sp_sku) AS sku,
       ifNull(f.lot, '') AS lot,
       ifNull(f.side, '') AS side,
       if(endsWith(stored_kind, 'Refused'), if(JSONType(fact, 'quantity') IN ('Int64', 'UInt64', 'Double'), f.quantity, NULL), f.quantity) AS quantity,
       ifNull(f.unit, '') AS unit,
       ifNull(f.supplier, '') AS supplier,
       ifNull(f.po_id, '') AS po_id,
       ifNull(f.case_id, '') AS case_id,
       if(endsWith(stored_kind, 'Refused'), if(JSONType(fact, 'unit_price') IN ('Int64', 'UInt64', 'Double'), f.unit_price, NULL), f.unit_price) AS price,
       if(endsWith(stored_kind, 'Refused'), if(JSONType(fact, 'sent_quantity') IN ('Int64', 'UInt64', 'Double'), f.sent_quantity, NULL), f.sent_quantity) AS sent,
       if(sent IS NOT NULL AND ifNull(quantity, 0) != 0, price * sent / quantity, price) AS unit_price,
       if(match(ifNull(f.expiry, ''), '^\\d{4}-\\d{2}-\\d{2}$'), toDateOrNull(f.expiry), NULL) AS expiry,
       toUInt8(endsWith(stored_kind, '.Refused')) AS refused,
       arrayMap(e -> ifNull(e.code, ''), top.errors) AS error_codes,
       arrayMap(v -> ifNull(v, ''), top.flags) AS flags,
       if(ifNull(top.recorded_by, '') != '', top.recorded_by, ifNull(top.by, '')) AS recorded_by,
       state AS payload
FROM notifications_stage;

-- stock_moves: each recorded stock fact's effects on its lots' balances.
CREATE VIEW IF NOT EXISTS stage_stock_moves AS
SELECT notification_id, toUInt16(i - 1) AS effect_index,
       ifNull(f.event_id, '') AS event_id, ifNull(f.type, '') AS type, ifNull(f.side, '') AS side,
       ifNull(f.site, '') AS site,
       if(ifNull(f.location, '') != '', f.location, sp_location) AS location,
       if(ifNull(f.sku, '') != '', f.sku, sp_sku) AS sku,
       ifNull(effect.1, '') AS lot,
       ifNull(occurred_at, recorded_at) AS occurred_at,
       effect.2 AS delta
FROM notifications_stage
ARRAY JOIN top.effects AS effect, arrayEnumerate(top.effects) AS i
WHERE stored_kind = 'StockPoint.Recorded';

-- items and locations: master data registrations.
CREATE VIEW IF NOT EXISTS stage_items AS
SELECT ifNull(f.sku, '') AS sku,
       ifNull(occurred_at, recorded_at) AS effective_from,
       notification_id,
       ifNull(x.base_unit, '') AS base_unit,
       CAST(mapApply((k, v) -> (k, assumeNotNull(v)), mapFilter((k, v) -> v IS NOT NULL, x.units)) AS Map(String, Float64)) AS units,
       if(ifNull(x.pack_size, 0) != 0, assumeNotNull(x.pack_size), 1.) AS pack_size,
       if(ifNull(x.criticality, '') != '', x.criticality, 'normal') AS criticality,
       x.lead_time_days AS lead_time_days,
       ifNull(f.supplier, '') AS supplier,
       x.unit_cost AS unit_cost,
       ifNull(x.currency, '') AS currency,
       ifNull(x.description, '') AS description
FROM notifications_stage
WHERE stored_kind = 'MasterRecord.Registered' AND f.type = 'item_registered';

CREATE VIEW IF NOT EXISTS stage_locations AS
SELECT ifNull(f.location, '') AS location,
       ifNull(occurred_at, recorded_at) AS effective_from,
       notification_id,
       ifNull(f.site, '') AS site,
       if(ifNull(x.name, '') != '', x.name, ifNull(f.location, '')) AS name,
       if(ifNull(x.kind, '') != '', x.kind, 'ward') AS kind,
       if(ifNull(x.timezone, '') != '', x.timezone, 'UTC') AS timezone,
       ifNull(x.restocked_from, '') AS restocked_from
FROM notifications_stage
WHERE stored_kind = 'MasterRecord.Registered' AND f.type = 'location_registered';

-- lot_expiries: what each lot event says of the lot's expiry. The lot is named by the record,
-- else by its stream lot:<sku>/<lot>.
CREATE VIEW IF NOT EXISTS stage_lot_expiries AS
SELECT if(named OR NOT startsWith(stream_id, 'lot:'), ifNull(f.sku, ''), splitByChar('/', substring(stream_id, 5), 2)[1]) AS sku,
       if(named OR NOT startsWith(stream_id, 'lot:'), ifNull(f.lot, ''),
          if(position(stream_id, '/') > 0, substring(stream_id, position(stream_id, '/') + 1), '')) AS lot,
       notification_id,
       assumeNotNull(day) AS expiry,
       multiIf(stored_kind = 'Lot.Opened', 'opened', stored_kind = 'Lot.ExpiryLearned', 'learned', 'corrected') AS source,
       ifNull(f.sku, '') != '' AND ifNull(f.lot, '') != '' AS named,
       multiIf(stored_kind = 'Lot.Opened', f.expiry, stored_kind = 'Lot.ExpiryLearned', top.expiry, x.new_expiry) AS text,
       if(match(ifNull(text, ''), '^\\d{4}-\\d{2}-\\d{2}$'), toDateOrNull(text), NULL) AS day
FROM notifications_stage
WHERE (stored_kind IN ('Lot.Opened', 'Lot.ExpiryLearned') OR (stored_kind = 'Lot.Changed' AND x.change = 'expiry_corrected'))
      AND day IS NOT NULL;

-- po_lines: the lines of each purchase order issued, in base units.
CREATE VIEW IF NOT EXISTS stage_po_lines AS
SELECT ifNull(f.po_id, '') AS po_id, toUInt16(i - 1) AS line_index, notification_id,
       ifNull(f.supplier, '') AS supplier, ifNull(f.site, '') AS site,
       if(ifNull(l.location, '') != '', l.location, ifNull(f.location, '')) AS location,
       ifNull(l.sku, '') AS sku,
       ifNull(l.quantity, 0) AS quantity,
       ifNull(l.unit, '') AS unit,
       if(l.sent_quantity IS NOT NULL AND ifNull(l.quantity, 0) != 0, l.unit_price * l.sent_quantity / l.quantity, l.unit_price) AS unit_price,
       ifNull(occurred_at, recorded_at) AS issued_at,
       coalesce(parseDateTime64BestEffortOrNull(if(match(ifNull(l.expected_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), l.expected_at, NULL), 6, 'UTC'), parseDateTime64BestEffortOrNull(if(match(ifNull(po.expected_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), po.expected_at, NULL), 6, 'UTC')) AS expected_at
FROM
(
    SELECT notification_id, f, po, occurred_at, recorded_at, i,
           JSONExtract(line, 'Tuple(location Nullable(String), sku Nullable(String), quantity Nullable(Float64), unit Nullable(String), unit_price Nullable(Float64), sent_quantity Nullable(Float64), expected_at Nullable(String))') AS l
    FROM notifications_stage
    ARRAY JOIN po.lines AS line, arrayEnumerate(po.lines) AS i
    WHERE f.type = 'po_issued' AND NOT endsWith(stored_kind, 'Refused') AND startsWith(line, '{')
);

-- alerts: raised (with everything known of the alert) and status changes.
CREATE VIEW IF NOT EXISTS stage_alerts AS
SELECT ifNull(x.id, '') AS alert_id, notification_id, 'raised' AS change,
       ifNull(x.kind, '') AS kind, ifNull(x.severity, '') AS severity, ifNull(f.site, '') AS site,
       ifNull(f.location, '') AS location, ifNull(f.sku, '') AS sku, ifNull(f.lot, '') AS lot,
       ifNull(parseDateTime64BestEffortOrNull(if(match(ifNull(f.raised_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), f.raised_at, NULL), 6, 'UTC'), recorded_at) AS at,
       if(ifNull(x.status, '') != '', x.status, 'open') AS status,
       ifNull(f.event_id, '') AS event_id, ifNull(x.message, '') AS message
FROM notifications_stage
WHERE stored_kind = 'StockPoint.AlertRaised'
UNION ALL
SELECT ifNull(top.alert_id, '') AS alert_id, notification_id,
       if(ifNull(top.status, '') != '', top.status, 'changed') AS change,
       '' AS kind, '' AS severity, '' AS site, sp_location AS location, sp_sku AS sku, '' AS lot,
       recorded_at AS at, ifNull(top.status, '') AS status, '' AS event_id, ifNull(top.reason, '') AS message
FROM notifications_stage
WHERE stored_kind = 'StockPoint.AlertChanged';

-- decisions: each number is taken from the first place that has it: the decision, its
-- policy, the policy's inputs, the decision's inputs (a place that is not an object has none).
CREATE VIEW IF NOT EXISTS stage_decisions AS
SELECT notification_id,
       ifNull(f.type, '') AS decision_type,
       ifNull(f.site, '') AS site,
       if(ifNull(f.location, '') != '', f.location, sp_location) AS location,
       if(ifNull(f.sku, '') != '', f.sku, sp_sku) AS sku,
       coalesce(parseDateTime64BestEffortOrNull(if(match(ifNull(d.as_of, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), d.as_of, NULL), 6, 'UTC'), parseDateTime64BestEffortOrNull(if(match(ifNull(f.decided_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), f.decided_at, NULL), 6, 'UTC'), recorded_at) AS decided_at,
       ifNull(d.cause_event_id, '') AS cause_event_id,
       coalesce(d.demand_mean_per_day, d.demand_mean, d.mean_daily_demand,
                d.policy.demand_mean_per_day, d.policy.demand_mean, d.policy.mean_daily_demand,
                d.policy.inputs.demand_mean_per_day, d.policy.inputs.demand_mean, d.policy.inputs.mean_daily_demand,
                d.inputs.demand_mean_per_day, d.inputs.demand_mean, d.inputs.mean_daily_demand) AS demand_mean,
       coalesce(d.demand_sd_per_day, d.demand_spread, d.demand_sd,
                d.policy.demand_sd_per_day, d.policy.demand_spread, d.policy.demand_sd,
                d.policy.inputs.demand_sd_per_day, d.policy.inputs.demand_spread, d.policy.inputs.demand_sd,
                d.inputs.demand_sd_per_day, d.inputs.demand_spread, d.inputs.demand_sd) AS demand_spread,
       coalesce(d.lead_time_days, d.lead_time_mean, d.policy.lead_time_days, d.policy.lead_time_mean,
                d.policy.inputs.lead_time_days, d.policy.inputs.lead_time_mean,
                d.inputs.lead_time_days, d.inputs.lead_time_mean) AS lead_time_days,
       coalesce(d.lead_time_sd_days, d.lead_time_spread, d.lead_time_sd,
                d.policy.lead_time_sd_days, d.policy.lead_time_spread, d.policy.lead_time_sd,
                d.policy.inputs.lead_time_sd_days, d.policy.inputs.lead_time_spread, d.policy.inputs.lead_time_sd,
                d.inputs.lead_time_sd_days, d.inputs.lead_time_spread, d.inputs.lead_time_sd) AS lead_time_spread,
       coalesce(d.service_level, d.policy.service_level, d.policy.inputs.service_level, d.inputs.service_level) AS service_level,
       coalesce(d.safety_stock, d.policy.safety_stock, d.policy.inputs.safety_stock, d.inputs.safety_stock) AS safety_stock,
       coalesce(d.reorder_point, d.policy.reorder_point, d.policy.inputs.reorder_point, d.inputs.reorder_point) AS reorder_point,
       coalesce(d.order_up_to, d.policy.order_up_to, d.policy.inputs.order_up_to, d.inputs.order_up_to) AS order_up_to,
       f.quantity AS quantity,
       d.old AS old_value,
       d.new AS new_value,
       ifNull(coalesce(d.formula, d.policy.formula, d.policy.inputs.formula, d.inputs.formula), '') AS formula,
       fact AS decision
FROM notifications_stage
WHERE position(stored_kind, 'Decided') > 0;
