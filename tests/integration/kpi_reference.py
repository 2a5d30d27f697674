"""The KPI queries as first written: straight over the base tables (stock_daily,
consumption_daily, forecast_vs_actual_daily, po_lines, events_raw, lot_expiries, items), with
window functions over every stock-point-day. They are the reference the queries of
``projections.queries`` (which read the summary tables, fast at millions of events) are held
to: the same KPIs, the same rows. Not used by the service.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from domain.kpis import EMPTY

# A stock point is out of stock when its book on-hand is at most ``EMPTY`` (float sums of
# deltas); the KPIs' definitions (stockout day, fill rate, stock value, days of supply) live
# once in ``domain.kpis``, which the simulator counts with too.


@dataclass(frozen=True)
class Filters:
    site: str | None = None
    location: str | None = None
    sku: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass
class KpiResult:
    name: str
    columns: list[str]
    rows: list[dict[str, Any]]
    filters: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kpi": self.name, "filters": self.filters, "columns": self.columns, "rows": self.rows}


@dataclass(frozen=True)
class Kpi:
    name: str
    definition: str
    query: Callable[[Any, Filters], tuple[str, dict[str, Any]]]


KPIS: dict[str, Kpi] = {}


def kpi(fn: Callable[[Any, Filters], tuple[str, dict[str, Any]]]) -> Callable[..., Any]:
    """Register a KPI; its docstring is its definition."""
    KPIS[fn.__name__] = Kpi(fn.__name__, " ".join((fn.__doc__ or "").split()), fn)
    return fn


class UnknownKpi(KeyError):
    pass


# -- filters -------------------------------------------------------------------------------
def as_instant(value: date | datetime | str | None) -> datetime | None:
    """An instant from a date (its UTC midnight), a datetime (naive means UTC) or ISO text."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.combine(value, time(), UTC)


def make_filters(site: str | None = None, location: str | None = None, sku: str | None = None,
                 start: date | datetime | str | None = None,
                 end: date | datetime | str | None = None) -> Filters:
    return Filters(site or None, location or None, sku or None, as_instant(start), as_instant(end))


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _day_bounds(f: Filters, default_days: int | None = None,
                first_day: date | None = None) -> tuple[date, date]:
    """[start, end) in whole UTC days: end defaults to tomorrow (today included), start to
    ``default_days`` before end, else to ``first_day`` (the first day with data)."""
    if f.end is not None:
        end = f.end.date() + (timedelta(days=1) if f.end.time() != time() else timedelta())
    else:
        end = datetime.now(UTC).date() + timedelta(days=1)
    if f.start is not None:
        start = f.start.date()
    elif default_days is not None:
        start = end - timedelta(days=default_days)
    else:
        start = first_day or end
    return start, end


class _Where:
    """WHERE conditions with bound parameters, for one table's column names."""

    def __init__(self, f: Filters, params: dict[str, Any], sku: str = "sku",
                 location: str = "location", site: str | None = "site") -> None:
        self.parts: list[str] = []
        if f.sku:
            params["sku"] = f.sku
            self.parts.append(f"{sku} = {{sku:String}}")
        if f.location:
            params["location"] = f.location
            self.parts.append(f"{location} = {{location:String}}")
        if f.site:
            params["site"] = f.site
            # Events need not name their site: a location registered at the site counts.
            in_site = f"{location} IN (SELECT location FROM locations WHERE site = {{site:String}})"
            self.parts.append(f"({site} = {{site:String}} OR {in_site})" if site else in_site)

    def add(self, condition: str) -> _Where:
        self.parts.append(condition)
        return self

    def sql(self) -> str:
        return " AND ".join(self.parts) if self.parts else "1"


def _first_day(client: Any, f: Filters) -> date | None:
    params: dict[str, Any] = {}
    where = _Where(f, params).sql()
    day = client.query(f"SELECT min(day) FROM stock_daily WHERE {where}", parameters=params).result_rows[0][0]
    return day if isinstance(day, date) and day.year > 1970 else None


def _time_params(f: Filters, params: dict[str, Any], column: str, where: _Where) -> None:
    if f.start is not None:
        params["start_ts"] = _ts(f.start)
        where.add(f"{column} >= toDateTime64({{start_ts:String}}, 6, 'UTC')")
    if f.end is not None:
        params["end_ts"] = _ts(f.end)
        where.add(f"{column} < toDateTime64({{end_ts:String}}, 6, 'UTC')")


def _daily_grid(where: str) -> str:
    """CTEs ``runs`` and ``sp_days``: the closing book on-hand (all lots) of every stock point
    on every day of [start, end) from its first stock movement on, carried over days
    without movement."""
    return f"""
    changes AS
    (
        SELECT sku, location, day, sum(net_change) AS net
        FROM stock_daily
        WHERE {where} AND day < {{end:Date}}
        GROUP BY sku, location, day
    ),
    runs AS
    (
        SELECT sku, location, day,
               sum(net) OVER (PARTITION BY sku, location ORDER BY day ROWS UNBOUNDED PRECEDING) AS closing,
               leadInFrame(day, 1, {{end:Date}}) OVER (PARTITION BY sku, location ORDER BY day
                                                      ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_day
        FROM changes
    ),
    sp_days AS
    (
        SELECT sku, location, closing,
               toDate(arrayJoin(range(toUInt32(greatest(day, {{start:Date}})), toUInt32(next_day)))) AS day
        FROM runs
        WHERE next_day > {{start:Date}}
    )"""


_LATEST_PO_LINES = """
    SELECT l.po_id AS po_id, l.sku AS sku, any(l.supplier) AS supplier, any(l.site) AS site,
           any(l.location) AS location, sum(l.quantity) AS ordered, any(o.first_issued) AS issued_at,
           min(l.expected_at) AS expected_at
    FROM po_lines AS l
    INNER JOIN
    (
        SELECT po_id, max(notification_id) AS latest, min(issued_at) AS first_issued,
               argMax(bill_only, notification_id) AS latest_bill_only
        FROM po_lines
        GROUP BY po_id
    ) AS o ON l.po_id = o.po_id AND l.notification_id = o.latest
    WHERE o.latest_bill_only = 0
    GROUP BY po_id, sku"""

_RECEIPTS = "kind = 'StockPoint.Recorded' AND type = 'receipt'"


# -- the KPIs --------------------------------------------------------------------------------
@kpi
def forecast_accuracy(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Accuracy of the standing daily demand forecast (the last decision's demand mean per
    day before the day began) against the day's usage, per ISO week, for each item (sku) and
    overall (sku empty), from ``forecast_vs_actual_daily``. WAPE = Σ|forecast − actual| /
    Σ actual; bias = Σ(forecast − actual) / Σ actual (positive: over-forecast); MASE = mean
    absolute error / mean absolute error of the naive forecast (yesterday's usage) over the
    selected period, per stock point, then averaged over the item's (or all) stock points
    (Hyndman & Koehler, IJF 2006). Null where usage or the naive error is zero."""
    params: dict[str, Any] = {}
    where = _Where(f, params)
    if f.start is not None:
        params["start"] = f.start.date()
        where.add("day >= {start:Date}")
    if f.end is not None:
        params["end"] = _day_bounds(f)[1]
        where.add("day < {end:Date}")
    sql = f"""
    SELECT week, sp_sku AS sku,
           sum(abs_error) / nullIf(sum(sp_actual), 0) AS wape,
           sum(error) / nullIf(sum(sp_actual), 0) AS bias,
           avgIf(abs_error / days / scale, scale > 0) AS mase,
           sum(sp_forecast) AS forecast, sum(sp_actual) AS actual,
           uniqExact(sp_sku, location) AS stock_points, sum(days) AS stock_point_days
    FROM
    (
        SELECT toMonday(day) AS week, sku AS sp_sku, location,
               sum(abs(forecast - actual)) AS abs_error, sum(forecast - actual) AS error,
               sum(forecast) AS sp_forecast, sum(actual) AS sp_actual, count() AS days,
               any(sp_scale) AS scale
        FROM
        (
            SELECT sku, location, day, forecast, actual,
                   sumIf(naive_error, n > 1) OVER sp / countIf(n > 1) OVER sp AS sp_scale
            FROM
            (
                SELECT sku, location, day, forecast, actual,
                       abs(actual - lagInFrame(actual, 1, actual) OVER w) AS naive_error,
                       row_number() OVER w AS n
                FROM forecast_vs_actual_daily
                WHERE {where.sql()}
                WINDOW w AS (PARTITION BY sku, location ORDER BY day
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            )
            WINDOW sp AS (PARTITION BY sku, location)
        )
        GROUP BY week, sp_sku, location
    )
    GROUP BY GROUPING SETS ((week, sp_sku), (week))
    ORDER BY week, sku"""
    return sql, params


@kpi
def stockout_rate(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Per ISO week: the share of stock-point-days whose closing book on-hand (all lots, end
    of the UTC day, from the stock point's first movement on) was zero or less, and the
    share of demand not met. The books cannot see a nurse finding an empty shelf, so the
    demand not met is estimated: on a stockout day, the stock point's mean daily usage on
    its in-stock days of the period, less what was used that day (at least 0); share =
    unmet / (used + unmet)."""
    params: dict[str, Any] = {}
    where = _Where(f, params, site=None).sql()
    start, end = _day_bounds(f, first_day=_first_day(client, f) if f.start is None else None)
    params.update(start=start, end=end)
    sql = f"""
    WITH {_daily_grid(where)}
    SELECT toMonday(day) AS week,
           count() AS stock_point_days,
           countIf(closing <= {EMPTY}) AS stockout_days,
           stockout_days / stock_point_days AS stockout_rate,
           sum(used) AS demand_met,
           sumIf(greatest(rate - used, 0), closing <= {EMPTY}) AS demand_unmet,
           demand_unmet / nullIf(demand_met + demand_unmet, 0) AS unmet_share
    FROM
    (
        SELECT day, closing, used,
               ifNull(sumIf(used, closing > {EMPTY}) OVER sp
                      / nullIf(countIf(closing > {EMPTY}) OVER sp, 0), 0) AS rate
        FROM
        (
            SELECT d.sku AS sku, d.location AS location, d.day AS day, d.closing AS closing,
                   ifNull(u.used, 0) AS used
            FROM sp_days AS d
            LEFT JOIN
            (
                SELECT sku, location, day, sum(used) AS used
                FROM consumption_daily
                WHERE {where} AND day >= {{start:Date}} AND day < {{end:Date}}
                GROUP BY sku, location, day
            ) AS u ON d.sku = u.sku AND d.location = u.location AND d.day = u.day
        )
        WINDOW sp AS (PARTITION BY sku, location)
    )
    GROUP BY week
    ORDER BY week"""
    return sql, params


@kpi
def fill_rate(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Supplier fill rate per ISO week of the due date and supplier: for purchase order lines
    due in the period (expected date, else issue date; a re-issued order's latest lines),
    the share of the ordered quantity received against the order (receipts with its po_id
    and sku, up to the end of the period), each line counting at most its ordered quantity;
    on-time fill rate counts only what arrived by the end of the expected UTC day."""
    params: dict[str, Any] = {}
    where = _Where(f, params)
    _time_params(f, params, "due_at", where)
    end_cut = "AND occurred_at < toDateTime64({end_ts:String}, 6, 'UTC')" if f.end is not None else ""
    sql = f"""
    WITH
    lines AS
    (
        SELECT *, ifNull(expected_at, issued_at) AS due_at FROM ({_LATEST_PO_LINES})
    ),
    line_receipts AS
    (
        SELECT l.po_id AS po_id, l.sku AS sku, l.supplier AS supplier, l.due_at AS due_at,
               l.expected_at AS expected_at, l.ordered AS line_ordered,
               sum(ifNull(r.quantity, 0)) AS received,
               sumIf(ifNull(r.quantity, 0),
                     r.occurred_at < toStartOfDay(ifNull(l.expected_at, l.due_at)) + INTERVAL 1 DAY) AS received_on_time
        FROM (SELECT * FROM lines WHERE {where.sql()}) AS l
        LEFT JOIN
        (
            SELECT po_id, sku, occurred_at, quantity
            FROM events_raw
            WHERE {_RECEIPTS} AND po_id != '' {end_cut}
        ) AS r ON r.po_id = l.po_id AND r.sku = l.sku
        GROUP BY po_id, sku, supplier, due_at, expected_at, line_ordered
    )
    SELECT toMonday(due_at) AS week, supplier,
           count() AS lines,
           sum(line_ordered) AS ordered,
           sum(least(received, line_ordered)) AS filled,
           filled / nullIf(ordered, 0) AS fill_rate,
           sum(least(received_on_time, line_ordered)) AS filled_on_time,
           filled_on_time / nullIf(ordered, 0) AS on_time_fill_rate
    FROM line_receipts
    GROUP BY week, supplier
    ORDER BY week, supplier"""
    return sql, params


@kpi
def days_of_supply(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Per stock point, at the end of the period (``to``, default now): usable book on-hand
    (all lots, less lots expired by then) divided by the mean daily usage over the period
    (``from``, default 28 days before ``to``). Null when nothing was used. Lowest first."""
    params: dict[str, Any] = {}
    where = _Where(f, params, site=None).sql()
    start, end = _day_bounds(f, default_days=28)
    params.update(start=start, end=end, days=max((end - start).days, 1))
    sql = f"""
    WITH
    lots AS
    (
        SELECT sku, location, lot, any(site) AS lot_site, sum(net_change) AS quantity
        FROM stock_daily
        WHERE {where} AND day < {{end:Date}}
        GROUP BY sku, location, lot
    ),
    expiries AS
    (
        SELECT sku, lot, argMax(expiry, notification_id) AS expiry
        FROM lot_expiries
        GROUP BY sku, lot
    ),
    on_hand AS
    (
        SELECT l.sku AS sku, l.location AS location, any(l.lot_site) AS site,
               sumIf(l.quantity, e.sku = '' OR e.expiry >= {{end:Date}}) AS on_hand
        FROM lots AS l LEFT JOIN expiries AS e ON l.sku = e.sku AND l.lot = e.lot
        GROUP BY sku, location
    ),
    usage AS
    (
        SELECT sku, location, sum(used) AS used
        FROM consumption_daily
        WHERE {where} AND day >= {{start:Date}} AND day < {{end:Date}}
        GROUP BY sku, location
    )
    SELECT o.site AS site, o.sku AS sku, o.location AS location, o.on_hand AS on_hand,
           ifNull(u.used, 0) / {{days:UInt32}} AS mean_daily_usage,
           o.on_hand / nullIf(mean_daily_usage, 0) AS days_of_supply
    FROM on_hand AS o LEFT JOIN usage AS u ON o.sku = u.sku AND o.location = u.location
    ORDER BY days_of_supply ASC NULLS LAST, sku, location"""
    return sql, params


@kpi
def turnover(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Inventory turnover per stock point over the period: units used / mean closing book
    on-hand over the period's days (from the stock point's first movement), and the same
    annualised (× 365 / days in the period). Null when the mean on-hand is zero."""
    params: dict[str, Any] = {}
    where = _Where(f, params, site=None).sql()
    start, end = _day_bounds(f, first_day=_first_day(client, f) if f.start is None else None)
    params.update(start=start, end=end, days=max((end - start).days, 1))
    sql = f"""
    WITH {_daily_grid(where)},
    levels AS
    (
        SELECT sku, location, avg(closing) AS mean_on_hand, count() AS days_stocked
        FROM sp_days
        GROUP BY sku, location
    ),
    usage AS
    (
        SELECT sku, location, sum(used) AS used
        FROM consumption_daily
        WHERE {where} AND day >= {{start:Date}} AND day < {{end:Date}}
        GROUP BY sku, location
    )
    SELECT l.sku AS sku, l.location AS location, ifNull(u.used, 0) AS used,
           l.mean_on_hand AS mean_on_hand, l.days_stocked AS days_stocked,
           used / nullIf(mean_on_hand, 0) AS turnover,
           turnover * 365 / {{days:UInt32}} AS annual_turnover
    FROM levels AS l LEFT JOIN usage AS u ON l.sku = u.sku AND l.location = u.location
    ORDER BY sku, location"""
    return sql, params


_COST = """
    unit_costs AS
    (
        SELECT sku, effective_from, assumeNotNull(unit_cost) AS unit_cost
        FROM items WHERE unit_cost IS NOT NULL
    ),
    lot_prices AS
    (
        SELECT sku, lot, sum(quantity * unit_price) / sum(quantity) AS price
        FROM events_raw
        WHERE kind = 'StockPoint.Recorded' AND type = 'receipt' AND unit_price IS NOT NULL AND quantity > 0
        GROUP BY sku, lot
    )"""


@kpi
def expired_value(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Per ISO week: the quantity and value of stock that expired on the shelf (lots whose
    latest known expiry date falls in the week, with a positive book balance at the stock
    point at the end of that day), and the quantity and value of waste recorded (all
    reasons; ``expired_waste_value`` for a reason mentioning expiry). Value = quantity × the
    lot's received price per base unit when its receipts carried one, else the item's
    registered unit cost in force at the time."""
    params: dict[str, Any] = {}
    waste_where = _Where(f, params)
    _time_params(f, params, "occurred_at", waste_where)
    lot_where = _Where(f, params, sku="s.sku", location="s.location", site=None)
    if f.start is not None:
        params["start"] = f.start.date()
        lot_where.add("e.expiry >= {start:Date}")
    if f.end is not None:
        params["end"] = _day_bounds(f)[1]
        lot_where.add("e.expiry < {end:Date}")
    sql = f"""
    WITH {_COST},
    waste AS
    (
        SELECT w.occurred_at AS at, w.quantity AS quantity,
               JSONExtractString(w.payload, 'event', 'reason') AS reason,
               w.quantity * if(p.price > 0, p.price, c.unit_cost) AS value
        FROM (SELECT sku, lot, occurred_at, assumeNotNull(quantity) AS quantity, payload
              FROM events_raw
              WHERE kind = 'StockPoint.Recorded' AND type = 'waste' AND {waste_where.sql()}) AS w
        ASOF LEFT JOIN unit_costs AS c ON w.sku = c.sku AND w.occurred_at >= c.effective_from
        LEFT JOIN lot_prices AS p ON w.sku = p.sku AND w.lot = p.lot
    ),
    expiries AS
    (
        SELECT sku, lot, argMax(expiry, notification_id) AS expiry
        FROM lot_expiries
        GROUP BY sku, lot
    ),
    expired AS
    (
        SELECT x.expiry AS expiry, x.quantity AS quantity,
               x.quantity * if(p.price > 0, p.price, c.unit_cost) AS value
        FROM
        (
            SELECT s.sku AS sku, s.lot AS lot, e.expiry AS expiry,
                   toDateTime64(e.expiry, 6, 'UTC') AS expiry_at, sum(s.net_change) AS quantity
            FROM stock_daily AS s INNER JOIN expiries AS e ON s.sku = e.sku AND s.lot = e.lot
            WHERE s.day <= e.expiry AND {lot_where.sql()}
            GROUP BY s.sku, s.location, s.lot, e.expiry
            HAVING quantity > {EMPTY}
        ) AS x
        ASOF LEFT JOIN unit_costs AS c ON x.sku = c.sku AND x.expiry_at >= c.effective_from
        LEFT JOIN lot_prices AS p ON x.sku = p.sku AND x.lot = p.lot
    )
    SELECT week, sum(expired_quantity) AS expired_quantity, sum(expired_value) AS expired_value,
           sum(wasted_quantity) AS wasted_quantity, sum(wasted_value) AS wasted_value,
           sum(expired_waste_value) AS expired_waste_value
    FROM
    (
        SELECT toMonday(expiry) AS week, quantity AS expired_quantity, value AS expired_value,
               0. AS wasted_quantity, 0. AS wasted_value, 0. AS expired_waste_value
        FROM expired
        UNION ALL
        SELECT toMonday(at) AS week, 0., 0., quantity, value,
               if(positionCaseInsensitive(reason, 'expir') > 0, value, 0.)
        FROM waste
    )
    GROUP BY week
    ORDER BY week"""
    return sql, params


@kpi
def unit_cost(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Unit purchase cost over time, per ISO week, item and supplier, from receipts that carry
    a ``unit_price`` (per the unit received, converted to the base unit): the quantity-
    weighted mean price per base unit, its lowest and highest, the receipts and quantity."""
    params: dict[str, Any] = {}
    where = _Where(f, params)
    _time_params(f, params, "occurred_at", where)
    sql = f"""
    SELECT toMonday(occurred_at) AS week, sku, supplier, count() AS receipts,
           sum(assumeNotNull(quantity)) AS received_quantity,
           sum(assumeNotNull(quantity) * assumeNotNull(unit_price)) / nullIf(received_quantity, 0) AS mean_unit_cost,
           min(unit_price) AS min_unit_cost, max(unit_price) AS max_unit_cost
    FROM events_raw
    WHERE {_RECEIPTS} AND unit_price IS NOT NULL AND {where.sql()}
    GROUP BY week, sku, supplier
    ORDER BY week, sku, supplier"""
    return sql, params


@kpi
def in_transit_time(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Time from purchase order issued to receipt, per ISO week of receipt and supplier, over
    receipts that name a purchase order line (po_id and sku): mean, median and 90th
    percentile in days (interpolated), from the order's first issue, and the share of
    receipts by the end of the expected UTC day (of those whose order gave an expected
    date)."""
    params: dict[str, Any] = {}
    where = _Where(f, params, sku="l.sku", location="l.location", site="l.site")
    _time_params(f, params, "r.occurred_at", where)
    sql = f"""
    WITH transit AS
    (
        SELECT r.occurred_at AS received_at, l.supplier AS supplier, l.expected_at AS expected_at,
               (toUnixTimestamp64Micro(r.occurred_at) - toUnixTimestamp64Micro(l.issued_at)) / 86400e6 AS days
        FROM (SELECT po_id, sku, occurred_at FROM events_raw WHERE {_RECEIPTS} AND po_id != '') AS r
        INNER JOIN ({_LATEST_PO_LINES}) AS l ON r.po_id = l.po_id AND r.sku = l.sku
        WHERE {where.sql()}
    )
    SELECT toMonday(received_at) AS week, supplier, count() AS receipts,
           avg(days) AS mean_days, quantileExactInclusive(0.5)(days) AS median_days,
           quantileExactInclusive(0.9)(days) AS p90_days,
           countIf(expected_at IS NOT NULL
                   AND received_at < toStartOfDay(assumeNotNull(expected_at)) + INTERVAL 1 DAY)
             / nullIf(countIf(expected_at IS NOT NULL), 0) AS on_time_share
    FROM transit
    GROUP BY week, supplier
    ORDER BY week, supplier"""
    return sql, params


@kpi
def compliance_events(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Compliance events per ISO week (of occurred_at), by category and detail: lot changes
    (by change: expiry corrected, relabelled, hold, release), recalls issued (by recall
    class) and closed, refused events (one per refusal code, e.g. recalled_lot, expired_lot,
    unknown_item) and accepted uses of recalled or expired lots (by flag). Recalls and lot
    changes concern every location, so a location or site filter keeps them."""
    params: dict[str, Any] = {}
    where = _Where(Filters(sku=f.sku), params)
    _time_params(f, params, "occurred_at", where)
    place = _Where(Filters(site=f.site, location=f.location), params)
    if place.parts:
        # Recalls and lot changes name no location: they concern every location.
        where.add(f"(kind IN ('Lot.Changed', 'Recall.Issued', 'Recall.Closed') OR ({place.sql()}))")
    sql = f"""
    SELECT toMonday(occurred_at) AS week, category, detail, count() AS events
    FROM
    (
        SELECT occurred_at,
               multiIf(kind = 'Lot.Changed', 'lot_changed', kind = 'Recall.Issued', 'recall_issued',
                       'recall_closed') AS category,
               multiIf(kind = 'Lot.Changed', JSONExtractString(payload, 'event', 'change'),
                       kind = 'Recall.Issued', JSONExtractString(payload, 'event', 'recall_class'),
                       '') AS detail
        FROM events_raw
        WHERE kind IN ('Lot.Changed', 'Recall.Issued', 'Recall.Closed') AND {where.sql()}
        UNION ALL
        SELECT occurred_at, 'refused' AS category, toString(code) AS detail
        FROM events_raw ARRAY JOIN arrayDistinct(error_codes) AS code
        WHERE refused = 1 AND {where.sql()}
        UNION ALL
        SELECT occurred_at, 'flagged_use' AS category, toString(flag) AS detail
        FROM events_raw ARRAY JOIN flags AS flag
        WHERE kind = 'StockPoint.Recorded' AND flag IN ('recalled_lot_used', 'expired_lot_used')
              AND {where.sql()}
    )
    GROUP BY week, category, detail
    ORDER BY week, category, detail"""
    return sql, params


@kpi
def supplier_scorecard(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Each supplier's latest scorecard before the end of the period (straight from the stored
    SupplierScorecard.Scored events in events_raw), the changes of its score in the period and
    its score at the end less the one standing at ``from``."""
    params: dict[str, Any] = {}
    conditions = ["1"]
    if f.end is not None:
        params["end_ts"] = _ts(f.end)
        conditions.append("scored_at < toDateTime64({end_ts:String}, 6, 'UTC')")
    if f.start is not None:
        params["start_ts"] = _ts(f.start)
    start = "toDateTime64({start_ts:String}, 6, 'UTC')" if f.start is not None else "NULL"
    sku = ""
    if f.sku:
        params["sku"] = f.sku
        sku = "WHERE has(skus, {sku:String})"
    sql = f"""
    WITH
    cards AS
    (
        SELECT notification_id AS n,
               if(JSONExtractString(payload, 'card', 'supplier') != '', JSONExtractString(payload, 'card', 'supplier'),
                  substring(stream_id, 11)) AS supplier,
               ifNull(parseDateTime64BestEffortOrNull(JSONExtractString(payload, 'card', 'scored_at'), 6, 'UTC'),
                      recorded_at) AS scored_at,
               JSONExtract(payload, 'card', 'score', 'Nullable(Float64)') AS score,
               JSONExtract(payload, 'card', 'peak', 'Nullable(Float64)') AS peak,
               JSONExtract(payload, 'card', 'on_time_rate', 'Nullable(Float64)') AS on_time_rate,
               JSONExtract(payload, 'card', 'fill_rate', 'Nullable(Float64)') AS fill_rate,
               JSONExtract(payload, 'card', 'batch_pass_rate', 'Nullable(Float64)') AS batch_pass_rate,
               JSONExtract(payload, 'card', 'accepted_share', 'Nullable(Float64)') AS accepted_share,
               JSONExtract(payload, 'card', 'price_vs_contract', 'Nullable(Float64)') AS price_vs_contract,
               JSONExtract(payload, 'card', 'recalls', 'Nullable(Float64)') AS recalls,
               toUInt32(JSONExtractFloat(payload, 'card', 'contract_breaches')) AS contract_breaches,
               JSONExtract(payload, 'card', 'lead_time_mean_days', 'Nullable(Float64)') AS lead_time_mean_days,
               JSONExtract(payload, 'card', 'lead_time_sd_days', 'Nullable(Float64)') AS lead_time_sd_days,
               toUInt32(JSONExtractFloat(payload, 'card', 'lead_time_receipts')) AS lead_time_receipts,
               toUInt8(JSONExtractBool(payload, 'card', 'review_open')) AS review_open,
               JSONExtract(payload, 'card', 'skus', 'Array(String)') AS skus
        FROM events_raw
        WHERE kind = 'SupplierScorecard.Scored'
    ),
    ranked AS
    (
        SELECT *, row_number() OVER (PARTITION BY supplier ORDER BY n DESC) AS k,
               countIf(n, scored_at >= {start}) OVER (PARTITION BY supplier) AS in_period,
               count() OVER (PARTITION BY supplier) AS all_scores
        FROM cards
        WHERE {" AND ".join(conditions)}
    ),
    at_start AS
    (
        SELECT supplier, argMax(score, n) AS start_score
        FROM cards
        WHERE scored_at < {start}
        GROUP BY supplier
    )
    SELECT r.supplier AS supplier, r.scored_at AS scored_at, r.score AS score, r.peak AS peak,
           if(s.supplier = '', NULL, r.score - s.start_score) AS score_change,
           if({start} IS NULL, r.all_scores, r.in_period) AS rescored,
           r.on_time_rate AS on_time_rate, r.fill_rate AS fill_rate, r.batch_pass_rate AS batch_pass_rate,
           r.accepted_share AS accepted_share, r.price_vs_contract AS price_vs_contract, r.recalls AS recalls,
           r.contract_breaches AS contract_breaches, r.lead_time_mean_days AS lead_time_mean_days,
           r.lead_time_sd_days AS lead_time_sd_days, r.lead_time_receipts AS lead_time_receipts,
           r.review_open AS review_open
    FROM (SELECT * FROM ranked WHERE k = 1) AS r
    LEFT JOIN at_start AS s ON s.supplier = r.supplier
    {sku}
    ORDER BY score ASC NULLS LAST, supplier"""
    return sql, params


@kpi
def requisitions(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Requisitions raised in the period by kind and status at its end (straight from the
    stored Requisition events in events_raw): how many, their lines and value, how many waited
    for a buyer, the mean hours from raised to ordered."""
    params: dict[str, Any] = {}
    raised = ["1"]
    if f.start is not None:
        params["start_ts"] = _ts(f.start)
        raised.append("raised_at >= toDateTime64({start_ts:String}, 6, 'UTC')")
    before = "1"
    if f.end is not None:
        params["end_ts"] = _ts(f.end)
        raised.append("raised_at < toDateTime64({end_ts:String}, 6, 'UTC')")
        before = "recorded_at < toDateTime64({end_ts:String}, 6, 'UTC')"
    if f.site:
        params["site"] = f.site
        raised.append("site = {site:String}")
    line_filter = ["1"]
    if f.sku:
        params["sku"] = f.sku
        line_filter.append("JSONExtractString(payload, 'line', 'sku') = {sku:String}")
    if f.location:
        params["location"] = f.location
        line_filter.append("JSONExtractString(payload, 'line', 'location') = {location:String}")
    line_time = ("AND ifNull(parseDateTime64BestEffortOrNull(JSONExtractString(payload, 'line', 'decided_at'), 6, "
                 "'UTC'), recorded_at) < toDateTime64({end_ts:String}, 6, 'UTC')") if f.end is not None else ""
    sql = f"""
    WITH
    heads AS
    (
        SELECT substring(stream_id, 5) AS rid, JSONExtractString(payload, 'key', 'kind') AS req_kind,
               JSONExtractString(payload, 'key', 'site') AS site, recorded_at AS raised_at
        FROM events_raw
        WHERE kind = 'Requisition.Opened'
    ),
    statuses AS
    (
        SELECT substring(stream_id, 5) AS rid,
               argMax(multiIf(kind = 'Requisition.Opened', 'collecting', kind = 'Requisition.Rejected', 'rejected',
                              kind = 'Requisition.Ordered', 'ordered', kind = 'Requisition.Fulfilled', 'fulfilled',
                              JSONExtractString(payload, 'status')), notification_id) AS req_status,
               countIf(kind = 'Requisition.Submitted' AND JSONExtractString(payload, 'status') = 'pending_approval') > 0
                   AS waited,
               minIf(recorded_at, kind = 'Requisition.Ordered') AS ordered_at,
               countIf(kind = 'Requisition.Ordered') > 0 AS was_ordered
        FROM events_raw
        WHERE kind LIKE 'Requisition.%' AND kind != 'Requisition.LineAdded' AND {before}
        GROUP BY rid
    ),
    line_sums AS
    (
        SELECT substring(stream_id, 5) AS rid, count() AS n,
               sum(JSONExtractFloat(payload, 'line', 'value')) AS line_value
        FROM events_raw
        WHERE kind = 'Requisition.LineAdded' AND {" AND ".join(line_filter)} {line_time}
        GROUP BY rid
    )
    SELECT h.req_kind AS kind, s.req_status AS status, count() AS requisitions, sum(l.n) AS lines,
           sum(l.line_value) AS value, countIf(s.waited) AS waited_for_approval,
           avgIf((toUnixTimestamp64Micro(s.ordered_at) - toUnixTimestamp64Micro(h.raised_at)) / 3600e6,
                 s.was_ordered) AS mean_hours_to_order
    FROM (SELECT * FROM heads WHERE {" AND ".join(raised)}) AS h
    {"INNER" if f.sku or f.location else "LEFT"} JOIN line_sums AS l ON l.rid = h.rid
    INNER JOIN statuses AS s ON s.rid = h.rid
    GROUP BY kind, status
    ORDER BY kind, status"""
    return sql, params


# -- running them -----------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(client: Any, name: str, filters: Filters | None = None, **given: Any) -> KpiResult:
    """Run the KPI ``name`` with ``filters`` (or keyword filters: site, location, sku,
    start, end); NaN and infinities come back as None."""
    found = KPIS.get(name)
    if found is None:
        raise UnknownKpi(f"unknown KPI {name!r}; known: {', '.join(sorted(KPIS))}")
    f = filters if filters is not None else make_filters(**given)
    sql, params = found.query(client, f)
    result = client.query(sql, parameters=params)
    columns = list(result.column_names)
    if not columns:  # an empty result from the embedded engine carries no header
        described = client.query(f"DESCRIBE ({sql})", parameters=params).result_rows
        columns = [row[0] for row in described]
    rows = [{c: _clean(v) for c, v in zip(columns, row, strict=True)} for row in result.result_rows]
    shown = {k: (v.isoformat() if isinstance(v, datetime) else v)
             for k, v in vars(f).items() if v is not None}
    return KpiResult(name, columns, rows, shown)


def definitions() -> dict[str, str]:
    """Each KPI's name and definition."""
    return {name: k.definition for name, k in sorted(KPIS.items())}
