"""Named KPI queries: each KPI's definition lives here once, in its docstring and its SQL.

Every KPI takes the same filters (``site``, ``location``, ``sku``, ``start``/``end`` — the
``from``/``to`` of the API, ``start`` inclusive, ``end`` exclusive — and ``supplier``, for the
KPIs about suppliers, orders and requisitions) and returns rows. Days
and ISO weeks (Monday first) are UTC; quantities are in the item's base unit; values are
in the currency of the item's registered unit cost. Call them by name:
``run(client, "fill_rate", site="H1", start="2026-03-01")``.
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
    supplier: str | None = None


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
                 end: date | datetime | str | None = None, supplier: str | None = None) -> Filters:
    return Filters(site or None, location or None, sku or None, as_instant(start), as_instant(end),
                   supplier or None)


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
    """WHERE conditions with bound parameters, for one table's column names (``supplier``: the
    table's supplier column, for the KPIs the supplier filter applies to)."""

    def __init__(self, f: Filters, params: dict[str, Any], sku: str = "sku",
                 location: str = "location", site: str | None = "site", supplier: str | None = None) -> None:
        self.parts: list[str] = []
        if f.supplier and supplier:
            params["supplier"] = f.supplier
            self.parts.append(f"{supplier} = {{supplier:String}}")
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


# The summary tables (migrations/0010_kpi_tables.sql) hold each stock point's days (sp_days) and
# ISO weeks (sp_weeks); a period [start, end) of days is read as its whole weeks from sp_weeks,
# the days before its first and after its last whole week from sp_days, and the days after a
# stock point's last day (its last closing carried, nothing used) from sp_extent.
_FIRST, _LAST = date(1970, 1, 5), date(2149, 1, 1)
_FULL_WEEKS = "week >= {weeks_from:Date} AND week < {weeks_to:Date}"
_EDGE_DAYS = ("((day >= {start:Date} AND day < {weeks_from:Date}) "
              "OR (day >= {weeks_to:Date} AND day < {end:Date}))")
_TAIL_WEEKS = """
    SELECT sku, location, last_closing, last_closing <= """ + str(EMPTY) + """ AS out, week,
           toUInt32(greatest(0, toInt64(least(week + 7, {{end:Date}})) - toInt64(greatest(week, tail_from)))) AS n
    FROM
    (
        SELECT sku, location, last_closing, greatest(grid_end + 1, {{start:Date}}) AS tail_from,
               toDate(arrayJoin(range(toUInt32(toMonday(tail_from)), toUInt32({{end:Date}}), 7))) AS week
        FROM sp_extent FINAL
        WHERE {where} AND has_stock = 1 AND grid_end + 1 < {{end:Date}}
    )
    WHERE n > 0"""


def _period(params: dict[str, Any], start: date, end: date) -> None:
    """Bind a period [start, end) of days and its whole ISO weeks [weeks_from, weeks_to)."""
    weeks_from = start + timedelta(days=(7 - start.weekday()) % 7)
    weeks_to = end - timedelta(days=end.weekday())
    if weeks_to <= weeks_from:  # no whole week: every day is read from sp_days
        weeks_from = weeks_to = end
    params.update(start=start, end=end, weeks_from=weeks_from, weeks_to=weeks_to)


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
    where = _Where(f, params).sql()
    start = f.start.date() if f.start is not None else _FIRST
    end = _day_bounds(f)[1] if f.end is not None else _LAST
    _period(params, start, end)
    sql = f"""
    WITH
    sp_week AS
    (
        SELECT sku, location, week, fva_days AS days, fc_sum AS fc, act_sum AS act, abs_err, err,
               naive_sum + if(week = {{start:Date}}, 0, naive_monday) AS naive,
               naive_count + if(week = {{start:Date}}, 0, naive_monday_count) AS naive_n
        FROM sp_weeks FINAL
        WHERE {where} AND fva_days > 0 AND {_FULL_WEEKS}
        UNION ALL
        SELECT sku, location, toMonday(day) AS week, count(), sum(forecast), sum(used),
               sum(abs(forecast - used)), sum(forecast - used),
               sumIf(assumeNotNull(naive), naive IS NOT NULL AND day > {{start:Date}}),
               countIf(naive IS NOT NULL AND day > {{start:Date}})
        FROM sp_days FINAL
        WHERE {where} AND in_fva = 1 AND {_EDGE_DAYS}
        GROUP BY sku, location, week
    ),
    per_sp AS
    (
        SELECT sku AS sp_sku, location, sum(naive) / sum(naive_n) AS scale,
               groupArray((week, abs_err, err, fc, act, days)) AS weeks
        FROM sp_week
        GROUP BY sku, location
    )
    SELECT w.1 AS week, sp_sku AS sku,
           sum(w.2) / nullIf(sum(w.5), 0) AS wape,
           sum(w.3) / nullIf(sum(w.5), 0) AS bias,
           avgIf(w.2 / w.6 / scale, scale > 0) AS mase,
           sum(w.4) AS forecast, sum(w.5) AS actual,
           count() AS stock_points, sum(w.6) AS stock_point_days
    FROM per_sp
    ARRAY JOIN weeks AS w
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
    _period(params, start, end)
    sql = f"""
    WITH
    per_week AS
    (
        SELECT sku, location, week, stock_days, stockout_days, stockout_used, instock_days, instock_used,
               used_stock
        FROM sp_weeks FINAL
        WHERE {where} AND {_FULL_WEEKS}
        UNION ALL
        SELECT sku, location, toMonday(day) AS week, toUInt32(1), toUInt32(closing <= {EMPTY}),
               if(closing <= {EMPTY}, [used], []), toUInt32(closing > {EMPTY}),
               if(closing > {EMPTY}, used, 0.), used
        FROM sp_days FINAL
        WHERE {where} AND in_stock = 1 AND {_EDGE_DAYS}
        UNION ALL
        SELECT sku, location, week, n, if(out, n, 0), arrayWithConstant(if(out, n, 0), 0.), if(out, 0, n),
               0., 0.
        FROM ({_TAIL_WEEKS.format(where=where)})
    ),
    -- each stock point's mean use on its in-stock days, then its weeks again
    per_sp AS
    (
        SELECT ifNull(sum(instock_used) / nullIf(sum(instock_days), 0), 0) AS rate,
               groupArray((week, stock_days, stockout_days, used_stock, stockout_used)) AS weeks
        FROM per_week
        GROUP BY sku, location
    )
    SELECT w.1 AS week, sum(w.2) AS stock_point_days, sum(w.3) AS stockout_days,
           stockout_days / stock_point_days AS stockout_rate,
           sum(w.4) AS demand_met,
           sum(arraySum(arrayMap(u -> greatest(rate - u, 0), w.5))) AS demand_unmet,
           demand_unmet / nullIf(demand_met + demand_unmet, 0) AS unmet_share
    FROM per_sp
    ARRAY JOIN weeks AS w
    GROUP BY week
    ORDER BY week"""
    return sql, params


@kpi
def fill_rate(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Supplier fill rate per ISO week of the due date and supplier: for purchase order lines
    due in the period (expected date, else issue date; a re-issued order's latest lines),
    the share of the ordered quantity received against the order (receipts with its po_id
    and sku, up to the end of the period), each line counting at most its ordered quantity;
    on-time fill rate counts only what arrived by the end of the expected UTC day. Bill-only
    orders (consigned stock already used) have nothing to deliver and are left out."""
    params: dict[str, Any] = {}
    where = _Where(f, params, supplier="supplier")
    _time_params(f, params, "due_at", where)
    # The receipts' sums hold unless some receipt came at or after the period's end.
    cut = "toDateTime64({end_ts:String}, 6, 'UTC')" if f.end is not None else "toDateTime64('2299-12-31', 6, 'UTC')"
    sql = f"""
    SELECT week, supplier, sum(n) AS lines, sum(o) AS ordered, sum(fl) AS filled,
           filled / nullIf(ordered, 0) AS fill_rate,
           sum(ft) AS filled_on_time, filled_on_time / nullIf(ordered, 0) AS on_time_fill_rate
    FROM
    (
        SELECT toMonday(due_at) AS week, supplier, count() AS n, sum(ordered) AS o,
               sum(least(received, ordered)) AS fl, sum(least(received_on_time, ordered)) AS ft
        FROM po_line_status FINAL
        WHERE present = 1 AND last_receipt_at < {cut} AND {where.sql()}
        GROUP BY week, supplier
        UNION ALL
        SELECT toMonday(due_at) AS week, supplier, count(), sum(ordered),
               sum(least(arraySum(arrayMap(r -> r.2, arrayFilter(r -> r.1 < {cut}, receipts))), ordered)),
               sum(least(arraySum(arrayMap(r -> r.2, arrayFilter(
                   r -> r.1 < {cut} AND r.1 < toStartOfDay(ifNull(expected_at, due_at)) + INTERVAL 1 DAY,
                   receipts))), ordered))
        FROM po_line_status FINAL
        WHERE present = 1 AND last_receipt_at >= {cut} AND {where.sql()}
        GROUP BY week, supplier
    )
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
    later AS
    (
        SELECT sku, location, lot, sum(net_change) AS net
        FROM stock_daily
        WHERE day >= {{end:Date}} AND {where}
        GROUP BY sku, location, lot
    ),
    on_hand AS
    (
        SELECT l.sku AS sku, l.location AS location, any(l.site) AS site,
               sumIf(l.balance - a.net, NOT l.has_expiry OR l.expiry >= {{end:Date}}) AS on_hand
        FROM (SELECT * FROM sp_lots FINAL WHERE first_day < {{end:Date}} AND {where}) AS l
        LEFT JOIN later AS a ON a.sku = l.sku AND a.location = l.location AND a.lot = l.lot
        GROUP BY sku, location
    ),
    usage AS
    (
        SELECT sku, location, sum(used) AS used
        FROM sp_days FINAL
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
    _period(params, start, end)
    params["days"] = max((end - start).days, 1)
    sql = f"""
    WITH per_sp AS
    (
        SELECT sku, location, stock_days, closing_sum, used_all
        FROM sp_weeks FINAL
        WHERE {where} AND {_FULL_WEEKS}
        UNION ALL
        SELECT sku, location, toUInt32(in_stock), if(in_stock = 1, closing, 0.), used
        FROM sp_days FINAL
        WHERE {where} AND {_EDGE_DAYS}
        UNION ALL
        SELECT sku, location, n, n * last_closing, 0.
        FROM ({_TAIL_WEEKS.format(where=where)})
    )
    SELECT sku, location, sum(used_all) AS used, sum(closing_sum) / sum(stock_days) AS mean_on_hand,
           sum(stock_days) AS days_stocked,
           used / nullIf(mean_on_hand, 0) AS turnover,
           turnover * 365 / {{days:UInt32}} AS annual_turnover
    FROM per_sp
    GROUP BY sku, location
    HAVING days_stocked > 0
    ORDER BY sku, location"""
    return sql, params



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
    lot_where = _Where(f, params, site=None)
    if f.start is not None:
        params["start"] = f.start.date()
        lot_where.add("expiry >= {start:Date}")
    if f.end is not None:
        params["end"] = _day_bounds(f)[1]
        lot_where.add("expiry < {end:Date}")
    sql = f"""
    WITH
    unit_costs AS
    (
        SELECT sku, effective_from, assumeNotNull(unit_cost) AS unit_cost
        FROM items WHERE unit_cost IS NOT NULL
    ),
    prices AS
    (
        SELECT sku, lot, sum(value) / sum(quantity) AS price FROM lot_prices GROUP BY sku, lot
    ),
    wasted AS
    (
        SELECT w.occurred_at AS at, w.quantity AS quantity, w.reason AS reason,
               w.quantity * if(p.price > 0, p.price, c.unit_cost) AS value
        FROM (SELECT sku, lot, occurred_at, quantity, reason FROM waste WHERE {waste_where.sql()}) AS w
        ASOF LEFT JOIN unit_costs AS c ON w.sku = c.sku AND w.occurred_at >= c.effective_from
        LEFT JOIN prices AS p ON w.sku = p.sku AND w.lot = p.lot
    ),
    expired AS
    (
        SELECT x.expiry AS expiry, x.quantity AS quantity,
               x.quantity * if(p.price > 0, p.price, c.unit_cost) AS value
        FROM
        (
            SELECT sku, lot, expiry, toDateTime64(expiry, 6, 'UTC') AS expiry_at, balance_at_expiry AS quantity
            FROM sp_lots FINAL
            WHERE has_expiry = 1 AND first_day <= expiry AND balance_at_expiry > {EMPTY} AND {lot_where.sql()}
        ) AS x
        ASOF LEFT JOIN unit_costs AS c ON x.sku = c.sku AND x.expiry_at >= c.effective_from
        LEFT JOIN prices AS p ON x.sku = p.sku AND x.lot = p.lot
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
        FROM wasted
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
    where = _Where(f, params, supplier="supplier")
    _time_params(f, params, "occurred_at", where)
    sql = f"""
    SELECT toMonday(occurred_at) AS week, sku, supplier, count() AS receipts,
           sum(assumeNotNull(quantity)) AS received_quantity,
           sum(assumeNotNull(quantity) * assumeNotNull(unit_price)) / nullIf(received_quantity, 0) AS mean_unit_cost,
           min(unit_price) AS min_unit_cost, max(unit_price) AS max_unit_cost
    FROM receipts
    WHERE unit_price IS NOT NULL AND {where.sql()}
    GROUP BY week, sku, supplier
    ORDER BY week, sku, supplier"""
    return sql, params


@kpi
def in_transit_time(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Time from purchase order issued to receipt, per ISO week of receipt and supplier, over
    receipts that name a purchase order line (po_id and sku): mean, median and 90th
    percentile in days (interpolated), from the order's first issue, and the share of
    receipts by the end of the expected UTC day (of those whose order gave an expected
    date). Bill-only orders (consigned stock already used) are never in transit."""
    params: dict[str, Any] = {}
    where = _Where(f, params, supplier="supplier")
    _time_params(f, params, "received_at", where)
    sql = f"""
    SELECT week, supplier, receipts, mean_days, q[1] AS median_days, q[2] AS p90_days, on_time_share
    FROM
    (
        SELECT toMonday(received_at) AS week, supplier, count() AS receipts,
               avg(days) AS mean_days, quantilesExactInclusive(0.5, 0.9)(days) AS q,
               countIf(expected_at IS NOT NULL
                       AND received_at < toStartOfDay(assumeNotNull(expected_at)) + INTERVAL 1 DAY)
                 / nullIf(countIf(expected_at IS NOT NULL), 0) AS on_time_share
        FROM po_receipt_transit FINAL
        WHERE present = 1 AND {where.sql()}
        GROUP BY week, supplier
    )
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
    FROM compliance_facts
    WHERE {where.sql()}
    GROUP BY week, category, detail
    ORDER BY week, category, detail"""
    return sql, params


@kpi
def supplier_scorecard(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Each supplier's scorecard as it stood at the end of the period (``to``, default now):
    the latest score recorded before then (0-100, ``domain.procurement.supplier_score``:
    on-time rate 30 %, fill rate 20 %, batch pass rate 25 %, price against contract 15 %,
    recalls 10 %) and its peak since the last review, the rates it came from (on-time and fill
    rates of its deliveries, share of inspected batches passed and of units accepted, price
    paid over contract price), recalls (decayed count), contract breaches, the learned lead
    time (mean and standard deviation, days, over ``lead_time_receipts`` receipts) and whether
    a review is open; ``rescored``: the changes of its score in the period; ``score_change``:
    the score at the end less the one standing at ``from`` (null without ``from`` or an
    earlier score). Lowest score first. ``supplier`` picks one supplier, ``sku`` the suppliers
    whose card covers the item; site and location do not apply (a card is per supplier)."""
    params: dict[str, Any] = {}
    where = _Where(Filters(supplier=f.supplier), params, supplier="supplier")
    if f.end is not None:
        params["end_ts"] = _ts(f.end)
        where.add("scored_at < toDateTime64({end_ts:String}, 6, 'UTC')")
    having = "1"
    if f.sku:
        params["sku"] = f.sku
        having = "has(argMax(skus, notification_id), {sku:String})"
    if f.start is not None:
        params["start_ts"] = _ts(f.start)
        before = "scored_at < toDateTime64({start_ts:String}, 6, 'UTC')"
        rescored = f"countIf(NOT ({before}))"
        change = (f"if(countIf({before}) > 0, "
                  f"argMax(score, notification_id) - argMaxIf(score, notification_id, {before}), NULL)")
    else:
        rescored, change = "count()", "CAST(NULL AS Nullable(Float64))"
    sql = f"""
    SELECT supplier, argMax(scored_at, notification_id) AS last_scored_at,
           argMax(score, notification_id) AS latest_score, argMax(peak, notification_id) AS peak_score,
           {change} AS score_change, {rescored} AS rescored,
           argMax(on_time_rate, notification_id) AS on_time, argMax(fill_rate, notification_id) AS fill,
           argMax(batch_pass_rate, notification_id) AS batch_pass,
           argMax(accepted_share, notification_id) AS accepted,
           argMax(price_vs_contract, notification_id) AS price_ratio,
           argMax(recalls, notification_id) AS recalls_now,
           argMax(contract_breaches, notification_id) AS breaches,
           argMax(lead_time_mean_days, notification_id) AS lead_time_mean,
           argMax(lead_time_sd_days, notification_id) AS lead_time_sd,
           argMax(lead_time_receipts, notification_id) AS lead_time_n,
           argMax(review_open, notification_id) AS review
    FROM supplier_scores
    WHERE {where.sql()}
    GROUP BY supplier
    HAVING {having}"""
    # The names a reader sees (the aggregates' own names must differ from the columns').
    shown = ("supplier", "last_scored_at AS scored_at", "latest_score AS score", "peak_score AS peak",
             "score_change", "rescored", "on_time AS on_time_rate", "fill AS fill_rate",
             "batch_pass AS batch_pass_rate", "accepted AS accepted_share",
             "price_ratio AS price_vs_contract", "recalls_now AS recalls", "breaches AS contract_breaches",
             "lead_time_mean AS lead_time_mean_days", "lead_time_sd AS lead_time_sd_days",
             "lead_time_n AS lead_time_receipts", "review AS review_open")
    return f"SELECT {', '.join(shown)} FROM ({sql}) ORDER BY score ASC NULLS LAST, supplier", params


@kpi
def requisitions(client: Any, f: Filters) -> tuple[str, dict[str, Any]]:
    """Requisitions raised in the period (opened from ``from`` to ``to``), by kind (purchase,
    consignment, transfer) and by status at the end of the period (its latest change before
    ``to``, default now: collecting, pending_approval, awaiting_second_approval, approved,
    rejected, ordered; a transfer request: open, fulfilled): how many, their lines and value
    (Σ line quantity × unit price, in base units; transfers carry none), how many waited for a
    buyer's approval, and the mean hours from raised to ordered (of those ordered by then).
    ``site`` and ``supplier`` match the requisition's; ``sku`` and ``location`` keep the
    requisitions with such a line and count only those lines."""
    params: dict[str, Any] = {}
    heads = _Where(Filters(supplier=f.supplier), params, supplier="supplier")
    if f.site:
        params["site"] = f.site
        heads.add("site = {site:String}")
    _time_params(f, params, "raised_at", heads)
    lines = _Where(Filters(location=f.location, sku=f.sku), params)
    changes = "1"
    if f.end is not None:
        lines.add("decided_at < toDateTime64({end_ts:String}, 6, 'UTC')")
        changes = "at < toDateTime64({end_ts:String}, 6, 'UTC')"
    join = "INNER" if f.sku or f.location else "LEFT"
    sql = f"""
    WITH
    heads AS
    (
        SELECT requisition_id, any(kind) AS req_kind, min(opened_at) AS raised_at
        FROM requisitions
        GROUP BY requisition_id, supplier, site
        HAVING {heads.sql()}
    ),
    changes AS
    (
        SELECT requisition_id, argMax(status, notification_id) AS latest_status,
               countIf(change = 'submitted' AND status = 'pending_approval') > 0 AS waited,
               minIf(at, change = 'ordered') AS ordered_at, countIf(change = 'ordered') > 0 AS was_ordered
        FROM requisition_status
        WHERE {changes}
        GROUP BY requisition_id
    ),
    line_sums AS
    (
        SELECT requisition_id, count() AS n, sum(value) AS line_value
        FROM requisition_lines
        WHERE {lines.sql()}
        GROUP BY requisition_id
    )
    SELECT h.req_kind AS kind, if(c.latest_status = '', 'collecting', c.latest_status) AS status,
           count() AS requisitions, sum(l.n) AS lines, sum(l.line_value) AS value,
           countIf(c.waited) AS waited_for_approval,
           avgIf((toUnixTimestamp64Micro(c.ordered_at) - toUnixTimestamp64Micro(h.raised_at)) / 3600e6,
                 c.was_ordered) AS mean_hours_to_order
    FROM heads AS h
    {join} JOIN line_sums AS l ON l.requisition_id = h.requisition_id
    LEFT JOIN changes AS c ON c.requisition_id = h.requisition_id
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
    start, end, supplier); NaN and infinities come back as None."""
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
