-- Procurement on the read side (issue 8): requisitions (streams req:<id>) with their lines and
-- status changes, supplier scorecards, the notices about suppliers in ``alerts``, and which
-- purchase order lines only bill consigned stock already used. Flattened in the engine as in
-- 0008_flatten.sql (``projections/processors.py`` is the reference, in Python).

-- Purchase order lines: ``bill_only`` (1: the line pays for consigned stock already used, so
-- nothing is in transit) and the requisition the order came from ('' for an ERP's order).
ALTER TABLE po_lines ADD COLUMN IF NOT EXISTS bill_only UInt8;

ALTER TABLE po_lines ADD COLUMN IF NOT EXISTS requisition_id String;

-- Alerts: the supplier a notice on a supplier's scorecard is about ('' for a stock point's).
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS supplier LowCardinality(String);

DROP VIEW IF EXISTS alerts_current;

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
       argMaxIf(message, notification_id, change = 'raised') AS message,
       argMax(supplier, notification_id) AS supplier
FROM alerts
GROUP BY alert_id;

-- A requisition as raised: its kind (purchase, consignment or transfer), supplier (a purchase's),
-- site and (a transfer's) source location.
CREATE TABLE IF NOT EXISTS requisitions
(
    requisition_id String,
    notification_id UInt64,
    kind LowCardinality(String),
    supplier LowCardinality(String),
    site LowCardinality(String),
    source LowCardinality(String),
    opened_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (requisition_id, notification_id);

-- Each line a need added to a requisition (in notification order within it), in base units:
-- the supplier, offer (source: contract, quote or item_master; a transfer's source location)
-- and price chosen, the candidates considered (eligible: not excluded) and the expected total
-- cost of the one chosen (price + expected lateness + quality cost, ``domain.procurement``).
CREATE TABLE IF NOT EXISTS requisition_lines
(
    requisition_id String,
    notification_id UInt64,
    sku LowCardinality(String),
    location LowCardinality(String),
    supplier LowCardinality(String),
    source LowCardinality(String),
    reference String,
    need_quantity Nullable(Float64),
    quantity Float64,
    unit_price Nullable(Float64),
    value Float64,
    promised_lead_time_days Nullable(Float64),
    criticality LowCardinality(String),
    flags Array(LowCardinality(String)),
    candidates UInt16,
    eligible UInt16,
    chosen_total Nullable(Float64),
    decided_at DateTime64(6, 'UTC'),
    cause_event_id String
)
ENGINE = ReplacingMergeTree
ORDER BY (requisition_id, notification_id);

-- Each change of a requisition's status, the latest (by notification id) standing: opened
-- (collecting), submitted (pending_approval, approved; a transfer request: open), approved
-- (awaiting_second_approval, approved), rejected, ordered (with the purchase order), fulfilled.
CREATE TABLE IF NOT EXISTS requisition_status
(
    requisition_id String,
    notification_id UInt64,
    change LowCardinality(String),
    status LowCardinality(String),
    principal LowCardinality(String),
    role LowCardinality(String),
    reason String,
    needs_buyer Array(LowCardinality(String)),
    approvals_needed UInt8,
    po_id String,
    at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (requisition_id, notification_id);

-- Each recorded change of a supplier's scorecard: its score and the rates it came from (the
-- latest, by notification id, standing), and the items it covers.
CREATE TABLE IF NOT EXISTS supplier_scores
(
    supplier LowCardinality(String),
    notification_id UInt64,
    scored_at DateTime64(6, 'UTC'),
    score Nullable(Float64),
    peak Nullable(Float64),
    on_time_rate Nullable(Float64),
    fill_rate Nullable(Float64),
    batch_pass_rate Nullable(Float64),
    accepted_share Nullable(Float64),
    price_vs_contract Nullable(Float64),
    recalls Nullable(Float64),
    recall_response_days Nullable(Float64),
    contract_breaches UInt32,
    lead_time_mean_days Nullable(Float64),
    lead_time_sd_days Nullable(Float64),
    lead_time_receipts UInt32,
    deliveries Nullable(Float64),
    inspections Nullable(Float64),
    review_open UInt8,
    cause_event_id String,
    skus Array(LowCardinality(String))
)
ENGINE = ReplacingMergeTree
ORDER BY (supplier, notification_id);

-- The stage: a supplier's notices are parsed like a stock point's alerts (``x``); ``q`` holds
-- the fields of a requisition's or scorecard's state, ``ln`` a requisition line, ``sc`` a card.
ALTER TABLE notifications_stage MODIFY COLUMN x Tuple(id Nullable(String), kind Nullable(String), severity Nullable(String), status Nullable(String), message Nullable(String), change Nullable(String), new_expiry Nullable(String), base_unit Nullable(String), units Map(String, Nullable(Float64)), pack_size Nullable(Float64), criticality Nullable(String), lead_time_days Nullable(Float64), unit_cost Nullable(Float64), currency Nullable(String), description Nullable(String), name Nullable(String), timezone Nullable(String), restocked_from Nullable(String))
    MATERIALIZED JSONExtract(if(stored_kind IN ('StockPoint.AlertRaised', 'SupplierScorecard.AlertRaised', 'MasterRecord.Registered', 'Lot.Changed'), fact, '{}'),
                             'Tuple(id Nullable(String), kind Nullable(String), severity Nullable(String), status Nullable(String), message Nullable(String), change Nullable(String), new_expiry Nullable(String), base_unit Nullable(String), units Map(String, Nullable(Float64)), pack_size Nullable(Float64), criticality Nullable(String), lead_time_days Nullable(Float64), unit_cost Nullable(Float64), currency Nullable(String), description Nullable(String), name Nullable(String), timezone Nullable(String), restocked_from Nullable(String))');

ALTER TABLE notifications_stage ADD COLUMN IF NOT EXISTS q Tuple(role Nullable(String), needs_buyer Array(Nullable(String)), approvals_needed Nullable(Float64), po_id Nullable(String), line Nullable(String), card Nullable(String))
    MATERIALIZED JSONExtract(if(startsWith(stored_kind, 'Requisition.') OR stored_kind = 'SupplierScorecard.Scored', state, '{}'),
                             'Tuple(role Nullable(String), needs_buyer Array(Nullable(String)), approvals_needed Nullable(Float64), po_id Nullable(String), line Nullable(String), card Nullable(String))');

ALTER TABLE notifications_stage ADD COLUMN IF NOT EXISTS ln Tuple(sku Nullable(String), location Nullable(String), supplier Nullable(String), source Nullable(String), reference Nullable(String), need_quantity Nullable(Float64), quantity Nullable(Float64), unit_price Nullable(Float64), value Nullable(Float64), promised_lead_time_days Nullable(Float64), criticality Nullable(String), flags Array(Nullable(String)), candidates Array(Nullable(String)), decided_at Nullable(String), cause_event_id Nullable(String))
    MATERIALIZED JSONExtract(if(stored_kind = 'Requisition.LineAdded' AND startsWith(ifNull(q.line, ''), '{'), q.line, '{}'),
                             'Tuple(sku Nullable(String), location Nullable(String), supplier Nullable(String), source Nullable(String), reference Nullable(String), need_quantity Nullable(Float64), quantity Nullable(Float64), unit_price Nullable(Float64), value Nullable(Float64), promised_lead_time_days Nullable(Float64), criticality Nullable(String), flags Array(Nullable(String)), candidates Array(Nullable(String)), decided_at Nullable(String), cause_event_id Nullable(String))');

ALTER TABLE notifications_stage ADD COLUMN IF NOT EXISTS sc Tuple(supplier Nullable(String), scored_at Nullable(String), score Nullable(Float64), peak Nullable(Float64), on_time_rate Nullable(Float64), fill_rate Nullable(Float64), batch_pass_rate Nullable(Float64), accepted_share Nullable(Float64), price_vs_contract Nullable(Float64), recalls Nullable(Float64), recall_response_days Nullable(Float64), contract_breaches Nullable(Float64), lead_time_mean_days Nullable(Float64), lead_time_sd_days Nullable(Float64), lead_time_receipts Nullable(Float64), deliveries Nullable(Float64), inspections Nullable(Float64), cause_event_id Nullable(String))
    MATERIALIZED JSONExtract(if(stored_kind = 'SupplierScorecard.Scored' AND startsWith(ifNull(q.card, ''), '{'), q.card, '{}'),
                             'Tuple(supplier Nullable(String), scored_at Nullable(String), score Nullable(Float64), peak Nullable(Float64), on_time_rate Nullable(Float64), fill_rate Nullable(Float64), batch_pass_rate Nullable(Float64), accepted_share Nullable(Float64), price_vs_contract Nullable(Float64), recalls Nullable(Float64), recall_response_days Nullable(Float64), contract_breaches Nullable(Float64), lead_time_mean_days Nullable(Float64), lead_time_sd_days Nullable(Float64), lead_time_receipts Nullable(Float64), deliveries Nullable(Float64), inspections Nullable(Float64), cause_event_id Nullable(String))');

-- alerts: a stock point's and a supplier's (a scorecard's stream is scorecard:<supplier>).
DROP VIEW IF EXISTS stage_alerts;

CREATE VIEW IF NOT EXISTS stage_alerts AS
SELECT ifNull(x.id, '') AS alert_id, notification_id, 'raised' AS change,
       ifNull(x.kind, '') AS kind, ifNull(x.severity, '') AS severity, ifNull(f.site, '') AS site,
       ifNull(f.location, '') AS location, ifNull(f.sku, '') AS sku, ifNull(f.lot, '') AS lot,
       ifNull(parseDateTime64BestEffortOrNull(if(match(ifNull(f.raised_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), f.raised_at, NULL), 6, 'UTC'), recorded_at) AS at,
       if(ifNull(x.status, '') != '', x.status, 'open') AS status,
       ifNull(f.event_id, '') AS event_id, ifNull(x.message, '') AS message,
       if(ifNull(f.supplier, '') != '', f.supplier, if(startsWith(stream_id, 'scorecard:'), substring(stream_id, 11), '')) AS supplier
FROM notifications_stage
WHERE stored_kind IN ('StockPoint.AlertRaised', 'SupplierScorecard.AlertRaised')
UNION ALL
SELECT ifNull(top.alert_id, '') AS alert_id, notification_id,
       if(ifNull(top.status, '') != '', top.status, 'changed') AS change,
       '' AS kind, '' AS severity, '' AS site, sp_location AS location, sp_sku AS sku, '' AS lot,
       recorded_at AS at, ifNull(top.status, '') AS status, '' AS event_id, ifNull(top.reason, '') AS message,
       if(startsWith(stream_id, 'scorecard:'), substring(stream_id, 11), '') AS supplier
FROM notifications_stage
WHERE stored_kind IN ('StockPoint.AlertChanged', 'SupplierScorecard.AlertChanged');

-- po_lines: as in 0008, with bill_only (Python's truth of the order's ``bill_only``) and the
-- requisition the order came from.
DROP VIEW IF EXISTS stage_po_lines;

CREATE VIEW IF NOT EXISTS stage_po_lines AS
SELECT ifNull(f.po_id, '') AS po_id, toUInt16(i - 1) AS line_index, notification_id,
       ifNull(f.supplier, '') AS supplier, ifNull(f.site, '') AS site,
       if(ifNull(l.location, '') != '', l.location, ifNull(f.location, '')) AS location,
       ifNull(l.sku, '') AS sku,
       ifNull(l.quantity, 0) AS quantity,
       ifNull(l.unit, '') AS unit,
       if(l.sent_quantity IS NOT NULL AND ifNull(l.quantity, 0) != 0, l.unit_price * l.sent_quantity / l.quantity, l.unit_price) AS unit_price,
       ifNull(occurred_at, recorded_at) AS issued_at,
       coalesce(parseDateTime64BestEffortOrNull(if(match(ifNull(l.expected_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), l.expected_at, NULL), 6, 'UTC'), parseDateTime64BestEffortOrNull(if(match(ifNull(po.expected_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), po.expected_at, NULL), 6, 'UTC')) AS expected_at,
       toUInt8(bill) AS bill_only,
       ifNull(requisition, '') AS requisition_id
FROM
(
    SELECT notification_id, f, po, occurred_at, recorded_at, i,
           JSONExtract(line, 'Tuple(location Nullable(String), sku Nullable(String), quantity Nullable(Float64), unit Nullable(String), unit_price Nullable(Float64), sent_quantity Nullable(Float64), expected_at Nullable(String))') AS l,
           multiIf(JSONType(fact, 'bill_only') = 'Bool', JSONExtractBool(fact, 'bill_only'), JSONType(fact, 'bill_only') IN ('Int64', 'UInt64', 'Double'), JSONExtractFloat(fact, 'bill_only') != 0, JSONType(fact, 'bill_only') = 'String', JSONExtractString(fact, 'bill_only') != '', JSONType(fact, 'bill_only') IN ('Array', 'Object'), JSONLength(fact, 'bill_only') > 0, false) AS bill,
           JSONExtract(fact, 'requisition_id', 'Nullable(String)') AS requisition
    FROM notifications_stage
    ARRAY JOIN po.lines AS line, arrayEnumerate(po.lines) AS i
    WHERE f.type = 'po_issued' AND NOT endsWith(stored_kind, 'Refused') AND startsWith(line, '{')
);

-- requisitions, their lines and status changes; the requisition is named by its stream, req:<id>.
CREATE VIEW IF NOT EXISTS stage_requisitions AS
SELECT if(startsWith(stream_id, 'req:'), substring(stream_id, 5), '') AS requisition_id, notification_id,
       ifNull(JSONExtract(fact, 'kind', 'Nullable(String)'), '') AS kind,
       ifNull(f.supplier, '') AS supplier, ifNull(f.site, '') AS site,
       ifNull(JSONExtract(fact, 'source', 'Nullable(String)'), '') AS source,
       recorded_at AS opened_at
FROM notifications_stage
WHERE stored_kind = 'Requisition.Opened';

CREATE VIEW IF NOT EXISTS stage_requisition_lines AS
SELECT if(startsWith(stream_id, 'req:'), substring(stream_id, 5), '') AS requisition_id, notification_id,
       ifNull(ln.sku, '') AS sku, ifNull(ln.location, '') AS location, ifNull(ln.supplier, '') AS supplier,
       ifNull(ln.source, '') AS source, ifNull(ln.reference, '') AS reference,
       ln.need_quantity AS need_quantity, ifNull(ln.quantity, 0) AS quantity, ln.unit_price AS unit_price,
       ifNull(ln.value, 0) AS value, ln.promised_lead_time_days AS promised_lead_time_days,
       ifNull(ln.criticality, '') AS criticality,
       arrayMap(v -> ifNull(v, ''), ln.flags) AS flags,
       arrayMap(c -> JSONExtract(assumeNotNull(c), 'Tuple(supplier Nullable(String), source Nullable(String), reference Nullable(String), excluded Nullable(String), total Nullable(Float64))'),
                arrayFilter(c -> startsWith(ifNull(c, ''), '{'), ln.candidates)) AS cands,
       toUInt16(length(cands)) AS candidates,
       toUInt16(countEqual(arrayMap(c -> c.excluded IS NULL, cands), 1)) AS eligible,
       if(arrayExists(c -> c.excluded IS NULL AND ifNull(c.supplier, '') = ifNull(ln.supplier, '') AND ifNull(c.source, '') = ifNull(ln.source, '') AND ifNull(c.reference, '') = ifNull(ln.reference, ''), cands),
          arrayFirst(c -> c.excluded IS NULL AND ifNull(c.supplier, '') = ifNull(ln.supplier, '') AND ifNull(c.source, '') = ifNull(ln.source, '') AND ifNull(c.reference, '') = ifNull(ln.reference, ''), cands).total, NULL) AS chosen_total,
       ifNull(parseDateTime64BestEffortOrNull(if(match(ifNull(ln.decided_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), ln.decided_at, NULL), 6, 'UTC'), recorded_at) AS decided_at,
       ifNull(ln.cause_event_id, '') AS cause_event_id
FROM notifications_stage
WHERE stored_kind = 'Requisition.LineAdded';

CREATE VIEW IF NOT EXISTS stage_requisition_status AS
SELECT if(startsWith(stream_id, 'req:'), substring(stream_id, 5), '') AS requisition_id, notification_id,
       trim(LEADING '_' FROM lower(replaceRegexpAll(splitByChar('.', stored_kind)[-1], '([A-Z])', '_\\1'))) AS change,
       multiIf(stored_kind = 'Requisition.Opened', 'collecting', stored_kind = 'Requisition.Rejected', 'rejected',
               stored_kind = 'Requisition.Ordered', 'ordered', stored_kind = 'Requisition.Fulfilled', 'fulfilled',
               ifNull(top.status, '')) AS status,
       ifNull(top.by, '') AS principal, ifNull(q.role, '') AS role, ifNull(top.reason, '') AS reason,
       arrayMap(v -> ifNull(v, ''), q.needs_buyer) AS needs_buyer,
       toUInt8(ifNull(q.approvals_needed, 0)) AS approvals_needed,
       ifNull(q.po_id, '') AS po_id,
       recorded_at AS at
FROM notifications_stage
WHERE stored_kind IN ('Requisition.Opened', 'Requisition.Submitted', 'Requisition.Approved', 'Requisition.Rejected',
                      'Requisition.Ordered', 'Requisition.Fulfilled');

-- supplier_scores: the card of each SupplierScorecard.Scored.
CREATE VIEW IF NOT EXISTS stage_supplier_scores AS
SELECT if(ifNull(sc.supplier, '') != '', sc.supplier, if(startsWith(stream_id, 'scorecard:'), substring(stream_id, 11), '')) AS supplier,
       notification_id,
       ifNull(parseDateTime64BestEffortOrNull(if(match(ifNull(sc.scored_at, ''), '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)$'), sc.scored_at, NULL), 6, 'UTC'), recorded_at) AS scored_at,
       sc.score AS score, sc.peak AS peak, sc.on_time_rate AS on_time_rate, sc.fill_rate AS fill_rate,
       sc.batch_pass_rate AS batch_pass_rate, sc.accepted_share AS accepted_share,
       sc.price_vs_contract AS price_vs_contract, sc.recalls AS recalls,
       sc.recall_response_days AS recall_response_days,
       toUInt32(ifNull(sc.contract_breaches, 0)) AS contract_breaches,
       sc.lead_time_mean_days AS lead_time_mean_days, sc.lead_time_sd_days AS lead_time_sd_days,
       toUInt32(ifNull(sc.lead_time_receipts, 0)) AS lead_time_receipts,
       sc.deliveries AS deliveries, sc.inspections AS inspections,
       toUInt8(multiIf(JSONType(assumeNotNull(q.card), 'review_open') = 'Bool', JSONExtractBool(assumeNotNull(q.card), 'review_open'), JSONType(assumeNotNull(q.card), 'review_open') IN ('Int64', 'UInt64', 'Double'), JSONExtractFloat(assumeNotNull(q.card), 'review_open') != 0, JSONType(assumeNotNull(q.card), 'review_open') = 'String', JSONExtractString(assumeNotNull(q.card), 'review_open') != '', JSONType(assumeNotNull(q.card), 'review_open') IN ('Array', 'Object'), JSONLength(assumeNotNull(q.card), 'review_open') > 0, false)) AS review_open,
       ifNull(sc.cause_event_id, '') AS cause_event_id,
       arraySort(JSONExtract(assumeNotNull(q.card), 'skus', 'Array(String)')) AS skus
FROM notifications_stage
WHERE stored_kind = 'SupplierScorecard.Scored';
