-- alerts: as in 0011, and each repeat of an open alert's condition (issue 13: a grouped alert
-- counts its repeats; ``StockPoint.AlertRepeated``) as a row with change 'repeated'.
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
WHERE stored_kind IN ('StockPoint.AlertChanged', 'SupplierScorecard.AlertChanged')
UNION ALL
SELECT ifNull(top.alert_id, '') AS alert_id, notification_id, 'repeated' AS change,
       '' AS kind, '' AS severity, '' AS site, sp_location AS location, sp_sku AS sku, '' AS lot,
       recorded_at AS at, '' AS status, ifNull(top.event_id, '') AS event_id, '' AS message,
       '' AS supplier
FROM notifications_stage
WHERE stored_kind = 'StockPoint.AlertRepeated';

-- An alert's current state: a repeat says nothing of its status (an acknowledged alert stays
-- acknowledged while its condition repeats); ``repeats`` counts them.
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
       argMaxIf(status, notification_id, change != 'repeated') AS status,
       max(at) AS updated_at,
       argMaxIf(event_id, notification_id, change = 'raised') AS event_id,
       argMaxIf(message, notification_id, change = 'raised') AS message,
       argMaxIf(supplier, notification_id, change != 'repeated') AS supplier,
       countIf(change = 'repeated') AS repeats
FROM alerts
GROUP BY alert_id;
