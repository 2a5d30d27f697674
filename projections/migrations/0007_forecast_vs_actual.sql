-- The standing forecast against what was used, per stock point and UTC day: the forecast of
-- day d is the last decision's demand mean (per day) recorded before d began (predict, then
-- learn), the actual is the day's usage. Days run from the day after a stock point's first
-- forecast to its last day with a forecast or usage; days without usage count as 0 used.
CREATE VIEW IF NOT EXISTS forecast_vs_actual_daily AS
WITH
    fc AS
    (
        SELECT sku, location, day, any(site) AS site, argMaxMerge(demand_mean) AS demand_mean,
               argMaxMerge(demand_spread) AS demand_spread
        FROM forecast_daily
        GROUP BY sku, location, day
    ),
    act AS
    (
        SELECT sku, location, day, sum(used) AS used
        FROM consumption_daily
        GROUP BY sku, location, day
    ),
    grid AS
    (
        SELECT s.sku AS sku, s.location AS location, s.site AS site,
               toDate(arrayJoin(range(toUInt32(s.first_day) + 1,
                                      toUInt32(greatest(s.last_day, ifNull(a.last_day, s.last_day))) + 1))) AS day
        FROM
        (
            SELECT sku, location, any(site) AS site, min(day) AS first_day, max(day) AS last_day
            FROM fc
            GROUP BY sku, location
        ) AS s
        LEFT JOIN
        (
            SELECT sku, location, max(day) AS last_day
            FROM act
            GROUP BY sku, location
        ) AS a ON s.sku = a.sku AND s.location = a.location
    )
SELECT g.site AS site, g.sku AS sku, g.location AS location, g.day AS day,
       f.demand_mean AS forecast, f.demand_spread AS forecast_spread, ifNull(a.used, 0) AS actual
FROM grid AS g
ASOF LEFT JOIN
(
    SELECT sku, location, day + 1 AS valid_from, demand_mean, demand_spread
    FROM fc
) AS f ON g.sku = f.sku AND g.location = f.location AND g.day >= f.valid_from
LEFT JOIN act AS a ON g.sku = a.sku AND g.location = a.location AND g.day = a.day;
