"""The summary tables the KPIs read (migrations/0010_kpi_tables.sql), kept up to date by the
follower after each catch-up.

A summary row is recomputed from the projection tables, never added to: the closing book
on-hand of a day depends on every earlier day, the standing forecast on the last decision
before it, an order line on the order's latest issue. After a catch-up, the stock points, lots
and orders the new notifications touched are recomputed (a stock point from the first day the
new facts concern, or the day after its last row if that is earlier) with a higher ``version``;
reads take the latest version of each row (FINAL). Everything is recomputed at once after a
rebuild, or when the summaries are far behind. Where the summaries are is recorded like the
follower's position (follower ``summaries``), so a crash between a catch-up and its refresh is
made good by the next one. Rows only ever get added or replaced: a stock point's days, its
lots and an order's lines never disappear from the log's projection.

What a refresh recomputes is first written to the small ``refresh_*`` tables (so each
statement reads it instead of working it out again).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from projections.queries import EMPTY
from projections.schema import SUMMARY_TABLES

log = logging.getLogger(__name__)

NAME = "summaries"
# Past this many notifications to bring in, every summary is recomputed from scratch.
FULL_AFTER = 200_000

_RANGE = "notification_id BETWEEN {first:UInt64} AND {last:UInt64}"

# -- what to recompute --------------------------------------------------------------------------
# Stock points a range of notifications touched, from the first day the facts concern (or the
# day after the stock point's last summarised day, when that is earlier: the days between are
# new too; or the day after the end of its forecast-vs-actual grid, when that is earlier: new
# usage or a new forecast may bring the days between into the grid).
_TOUCHED_SPS = f"""
    INSERT INTO refresh_sps
    SELECT t.sku, t.location,
           if(e.sku = '', t.d0, least(t.d0, e.grid_end + 1, if(e.fva_end > toDate(0), e.fva_end + 1, e.grid_end + 1)))
    FROM
    (
        SELECT sku, location, min(day) AS d0
        FROM
        (
            SELECT sku, location, toDate(occurred_at) AS day FROM stock_moves WHERE {_RANGE}
            UNION ALL
            SELECT sku, location, toDate(occurred_at) AS day FROM events_raw
            WHERE kind = 'StockPoint.Recorded' AND type IN ('usage', 'waste', 'return') AND {_RANGE}
            UNION ALL
            SELECT sku, location, toDate(decided_at) AS day FROM decisions
            WHERE demand_mean IS NOT NULL AND {_RANGE}
        )
        GROUP BY sku, location
    ) AS t
    LEFT JOIN (SELECT sku, location, grid_end, fva_end FROM sp_extent FINAL) AS e
        ON e.sku = t.sku AND e.location = t.location"""

_ALL_SPS = """
    INSERT INTO refresh_sps
    SELECT DISTINCT sku, location, toDate('1970-01-02') FROM
    (
        SELECT DISTINCT sku, location FROM stock_daily
        UNION ALL SELECT DISTINCT sku, location FROM consumption_daily
        UNION ALL SELECT DISTINCT sku, location FROM forecast_daily
    )"""

# Lots of the stock points a range touched, and every stock point's lots whose expiry it told.
_TOUCHED_LOTS = f"""
    INSERT INTO refresh_lots
    SELECT DISTINCT sku, location, lot FROM stock_moves WHERE {_RANGE}
    UNION DISTINCT
    SELECT DISTINCT sku, location, lot FROM stock_daily
    WHERE (sku, lot) IN (SELECT sku, lot FROM lot_expiries WHERE {_RANGE})"""

_ALL_LOTS = "INSERT INTO refresh_lots SELECT DISTINCT sku, location, lot FROM stock_daily"

_TOUCHED_POS = f"""
    INSERT INTO refresh_pos
    SELECT DISTINCT po_id FROM po_lines WHERE {_RANGE}
    UNION DISTINCT
    SELECT DISTINCT po_id FROM receipts WHERE po_id != '' AND {_RANGE}"""

_ALL_POS = "INSERT INTO refresh_pos SELECT DISTINCT po_id FROM po_lines"

_IN_SPS = "(sku, location) IN (SELECT sku, location FROM refresh_sps)"

# -- the recomputations ---------------------------------------------------------------------------
# Each stock point's bounds: its first stock movement, its grid (the days from its first
# movement, usage or standing forecast to its last) and its closing book on-hand (the sum of
# every movement: the closing of its last day, carried after it), and the end of its
# forecast-vs-actual grid (its last forecast's or usage's day, once it has a forecast).
_SP_EXTENT = f"""
    INSERT INTO sp_extent (sku, location, site, has_stock, first_move, grid_start, grid_end, last_closing, version,
                           fva_end)
    SELECT sku, location, anyIf(site, src = 3), countIf(src = 1) > 0, minIf(first, src = 1),
           min(if(src = 3, first + 1, first)), max(last), sumIf(net, src = 1), {{version:UInt64}},
           if(countIf(src = 3) > 0, greatest(maxIf(last, src = 3), maxIf(last, src = 2)), toDate(0))
    FROM
    (
        SELECT sku, location, 1 AS src, min(day) AS first, max(day) AS last, sum(net_change) AS net, '' AS site
        FROM stock_daily WHERE {_IN_SPS} GROUP BY sku, location
        UNION ALL
        SELECT sku, location, 2 AS src, min(day), max(day), 0., '' FROM consumption_daily
        WHERE {_IN_SPS} GROUP BY sku, location
        UNION ALL
        SELECT sku, location, 3 AS src, min(day), max(day), 0., any(site) FROM forecast_daily
        WHERE {_IN_SPS} GROUP BY sku, location
    )
    GROUP BY sku, location"""

# Each stock point's days from d0 to the end of its grid. The window starts a day earlier (the
# naive error of d0 needs the usage of the day before) from the book on-hand it opened with.
_SP_DAYS = f"""
    INSERT INTO sp_days (day, sku, location, site, in_stock, closing, used, in_fva, forecast, naive, version)
    WITH
    spans AS
    (
        SELECT r.sku AS sku, r.location AS location, e.site AS site, e.has_stock AS has_stock,
               e.first_move AS first_move, e.grid_end AS grid_end,
               greatest(r.d0, e.grid_start) AS d0, greatest(r.d0 - 1, e.grid_start) AS window_from
        FROM refresh_sps AS r
        INNER JOIN (SELECT * FROM sp_extent FINAL WHERE {_IN_SPS}) AS e
            ON e.sku = r.sku AND e.location = r.location
        WHERE greatest(r.d0, e.grid_start) <= e.grid_end
    ),
    fc_bounds AS
    (
        SELECT sku, location, min(day) + 1 AS fva_start, max(day) AS last_f FROM forecast_daily
        WHERE {_IN_SPS} GROUP BY sku, location
    ),
    last_use AS
    (
        SELECT sku, location, max(day) AS last_u FROM consumption_daily WHERE {_IN_SPS} GROUP BY sku, location
    ),
    opening AS
    (
        SELECT s.sku AS sku, s.location AS location, sum(s.net_change) AS net
        FROM stock_daily AS s INNER JOIN spans AS p ON p.sku = s.sku AND p.location = s.location
        WHERE s.day < p.window_from
        GROUP BY sku, location
    ),
    moves AS
    (
        SELECT s.sku AS sku, s.location AS location, s.day AS day, sum(s.net_change) AS net
        FROM stock_daily AS s INNER JOIN spans AS p ON p.sku = s.sku AND p.location = s.location
        WHERE s.day >= p.window_from
        GROUP BY sku, location, day
    ),
    usage AS
    (
        SELECT c.sku AS sku, c.location AS location, c.day AS day, sum(c.used) AS used
        FROM consumption_daily AS c INNER JOIN spans AS p ON p.sku = c.sku AND p.location = c.location
        WHERE c.day >= p.window_from
        GROUP BY sku, location, day
    ),
    fc_from AS
    (
        SELECT f.sku AS sku, f.location AS location, max(f.day) AS day
        FROM forecast_daily AS f INNER JOIN spans AS p ON p.sku = f.sku AND p.location = f.location
        WHERE f.day < p.window_from
        GROUP BY sku, location
    ),
    fc AS
    (
        SELECT f.sku AS sku, f.location AS location, f.day + 1 AS valid_from, argMaxMerge(f.demand_mean) AS mean
        FROM forecast_daily AS f
        INNER JOIN spans AS p ON p.sku = f.sku AND p.location = f.location
        LEFT JOIN fc_from AS b ON b.sku = f.sku AND b.location = f.location
        WHERE f.day >= if(b.sku = '', p.window_from, b.day)
        GROUP BY sku, location, f.day
    ),
    days AS
    (
        SELECT p.sku AS sku, p.location AS location, p.site AS site, p.d0 AS d0, p.has_stock AS has_stock,
               p.first_move AS first_move, b.sku != '' AS has_f, b.fva_start AS fva_start,
               greatest(b.last_f, if(u.sku = '', b.last_f, u.last_u)) AS fva_end,
               toDate(arrayJoin(range(toUInt32(p.window_from), toUInt32(p.grid_end) + 1))) AS day
        FROM spans AS p
        LEFT JOIN fc_bounds AS b ON b.sku = p.sku AND b.location = p.location
        LEFT JOIN last_use AS u ON u.sku = p.sku AND u.location = p.location
    ),
    windowed AS
    (
        SELECT d.sku AS sku, d.location AS location, d.site AS site, d.d0 AS d0, d.has_stock AS has_stock,
               d.first_move AS first_move, d.has_f AS has_f, d.fva_start AS fva_start, d.fva_end AS fva_end,
               d.day AS day, o.net + sum(m.net) OVER w AS closing, u.used AS used,
               lagInFrame(u.used, 1, 0.) OVER w AS used_before
        FROM days AS d
        LEFT JOIN opening AS o ON o.sku = d.sku AND o.location = d.location
        LEFT JOIN moves AS m ON m.sku = d.sku AND m.location = d.location AND m.day = d.day
        LEFT JOIN usage AS u ON u.sku = d.sku AND u.location = d.location AND u.day = d.day
        WINDOW w AS (PARTITION BY d.sku, d.location ORDER BY d.day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
    SELECT x.day, x.sku, x.location, x.site,
           x.has_stock AND x.day >= x.first_move AS in_stock,
           if(in_stock, x.closing, 0.),
           x.used,
           x.has_f AND x.day >= x.fva_start AND x.day <= x.fva_end AS in_fva,
           if(in_fva, f.mean, 0.),
           if(in_fva AND x.day > x.fva_start, abs(x.used - x.used_before), NULL),
           {{version:UInt64}}
    FROM windowed AS x
    ASOF LEFT JOIN fc AS f ON f.sku = x.sku AND f.location = x.location AND x.day >= f.valid_from
    WHERE x.day >= x.d0"""

# The ISO weeks of the days recomputed, summed again from sp_days.
_SP_WEEKS = f"""
    INSERT INTO sp_weeks
    SELECT toMonday(d.day) AS week, d.sku, d.location, any(d.site),
           countIf(d.in_stock = 1), sumIf(d.closing, d.in_stock = 1),
           countIf(d.in_stock = 1 AND d.closing <= {EMPTY}),
           groupArrayIf(d.used, d.in_stock = 1 AND d.closing <= {EMPTY}),
           countIf(d.in_stock = 1 AND d.closing > {EMPTY}), sumIf(d.used, d.in_stock = 1 AND d.closing > {EMPTY}),
           sumIf(d.used, d.in_stock = 1), sum(d.used),
           countIf(d.in_fva = 1), sumIf(d.forecast, d.in_fva = 1), sumIf(d.used, d.in_fva = 1),
           sumIf(abs(d.forecast - d.used), d.in_fva = 1), sumIf(d.forecast - d.used, d.in_fva = 1),
           sumIf(assumeNotNull(d.naive), d.naive IS NOT NULL AND toDayOfWeek(d.day) != 1),
           countIf(d.naive IS NOT NULL AND toDayOfWeek(d.day) != 1),
           sumIf(assumeNotNull(d.naive), d.naive IS NOT NULL AND toDayOfWeek(d.day) = 1),
           countIf(d.naive IS NOT NULL AND toDayOfWeek(d.day) = 1),
           {{version:UInt64}}
    FROM sp_days AS d FINAL
    INNER JOIN refresh_sps AS r ON r.sku = d.sku AND r.location = d.location
    WHERE d.day >= (SELECT toMonday(min(d0)) FROM refresh_sps) AND d.day >= toMonday(r.d0)
    GROUP BY week, d.sku, d.location"""

_PO_RECEIPTS = """
    INSERT INTO po_receipt_transit
    SELECT r.notification_id, r.po_id, r.sku, l.present, l.supplier, l.site, l.location, r.occurred_at,
           l.expected_at, (toUnixTimestamp64Micro(r.occurred_at) - toUnixTimestamp64Micro(l.issued_at)) / 86400e6,
           {version:UInt64}
    FROM receipts AS r
    LEFT JOIN (SELECT * FROM po_line_status FINAL WHERE po_id IN (SELECT po_id FROM refresh_pos)) AS l
        ON l.po_id = r.po_id AND l.sku = r.sku
    WHERE r.po_id IN (SELECT po_id FROM refresh_pos)"""

_SP_LOTS = """
    INSERT INTO sp_lots (sku, location, lot, site, first_day, balance, has_expiry, expiry, balance_at_expiry, version)
    WITH expiries AS
    (
        SELECT sku, lot, argMax(expiry, notification_id) AS expiry
        FROM lot_expiries WHERE (sku, lot) IN (SELECT sku, lot FROM refresh_lots)
        GROUP BY sku, lot
    )
    SELECT s.sku, s.location, s.lot, any(s.site), min(s.day), sum(s.net_change), e.sku != '', any(e.expiry),
           sumIf(s.net_change, e.sku != '' AND s.day <= e.expiry), {version:UInt64}
    FROM stock_daily AS s
    LEFT JOIN expiries AS e ON e.sku = s.sku AND e.lot = s.lot
    WHERE (s.sku, s.location, s.lot) IN (SELECT sku, location, lot FROM refresh_lots)
    GROUP BY s.sku, s.location, s.lot, e.sku"""

# An order whose latest issue is bill-only (it pays for consigned stock already used: nothing is
# to arrive) has no line ``present``: no fill rate, no time in transit.
_PO_LINES = """
    INSERT INTO po_line_status
    WITH
    orders AS
    (
        SELECT po_id, max(notification_id) AS latest, min(notification_id) AS first_notification,
               min(issued_at) AS first_issued, argMax(bill_only, notification_id) AS bill_only
        FROM po_lines WHERE po_id IN (SELECT po_id FROM refresh_pos)
        GROUP BY po_id
    ),
    got AS
    (
        SELECT po_id, sku, arraySort(groupArray((occurred_at, ifNull(quantity, 0.)))) AS receipts
        FROM receipts WHERE po_id IN (SELECT po_id FROM refresh_pos)
        GROUP BY po_id, sku
    )
    SELECT o.first_notification, l.po_id, l.sku, max(l.notification_id = o.latest AND o.bill_only = 0) AS present,
           anyIf(l.supplier, l.notification_id = o.latest), anyIf(l.site, l.notification_id = o.latest),
           anyIf(l.location, l.notification_id = o.latest), sumIf(l.quantity, l.notification_id = o.latest),
           any(o.first_issued), minIf(l.expected_at, l.notification_id = o.latest) AS expected,
           ifNull(expected, any(o.first_issued)) AS due, any(r.receipts) AS got,
           arraySum(arrayMap(x -> x.2, got)),
           arraySum(arrayMap(x -> x.2, arrayFilter(x -> x.1 < toStartOfDay(ifNull(expected, due)) + INTERVAL 1 DAY, got))),
           if(empty(got), toDateTime64(0, 6, 'UTC'), arrayMax(arrayMap(x -> x.1, got))),
           {version:UInt64}
    FROM po_lines AS l
    INNER JOIN orders AS o ON o.po_id = l.po_id
    LEFT JOIN got AS r ON r.po_id = l.po_id AND r.sku = l.sku
    WHERE l.po_id IN (SELECT po_id FROM refresh_pos)
    GROUP BY o.first_notification, l.po_id, l.sku"""


def read_position(client: Any) -> int:
    rows = client.query("SELECT position FROM projection_positions WHERE follower = {name:String} "
                        "ORDER BY seq DESC LIMIT 1", parameters={"name": NAME}).result_rows
    return int(rows[0][0]) if rows else 0


def _save_position(client: Any, position: int) -> None:
    seq = client.query("SELECT max(seq) FROM projection_positions WHERE follower = {name:String}",
                       parameters={"name": NAME}).result_rows[0][0] or 0
    client.insert("projection_positions", [[NAME, position, 0, 0, seq + 1, datetime.now(UTC)]],
                  column_names=["follower", "position", "pending_from", "pending_to", "seq", "updated_at"])


def _count(client: Any, table: str) -> int:
    return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])


def refresh(client: Any, position: int, full: bool | None = None) -> float:
    """Bring the summaries from where they are to ``position`` (the follower's); returns the
    seconds it took. ``full``: recompute everything (default: when far behind or never done)."""
    done = read_position(client)
    if done >= position and not full:
        return 0.0
    started = time.perf_counter()
    if full is None:
        full = done == 0 or position - done > FULL_AFTER
    params = {"first": done + 1, "last": position, "version": position}
    for table in ("refresh_sps", "refresh_lots", "refresh_pos"):
        client.command(f"TRUNCATE TABLE {table}")
    client.command(_ALL_SPS if full else _TOUCHED_SPS, parameters=params)
    if _count(client, "refresh_sps"):
        client.command(_SP_EXTENT, parameters=params)
        client.command(_SP_DAYS, parameters=params)
        client.command(_SP_WEEKS, parameters=params)
    client.command(_ALL_LOTS if full else _TOUCHED_LOTS, parameters=params)
    if _count(client, "refresh_lots"):
        client.command(_SP_LOTS, parameters=params)
    client.command(_ALL_POS if full else _TOUCHED_POS, parameters=params)
    if _count(client, "refresh_pos"):
        client.command(_PO_LINES, parameters=params)
        client.command(_PO_RECEIPTS, parameters=params)
    if full:  # one part each: what the reads' FINAL would otherwise have to merge
        for table in SUMMARY_TABLES:
            client.command(f"OPTIMIZE TABLE {table} FINAL")
    _save_position(client, position)
    seconds = time.perf_counter() - started
    log.debug("projections: summaries %s to %d in %.3f s", "rebuilt" if full else "refreshed", position, seconds)
    return seconds
