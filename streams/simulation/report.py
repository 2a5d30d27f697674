"""The comparison as a terminal table, a JSON document and a self-contained HTML page with
inline SVG plots (stock over time against the reorder point and safety stock, the policy
comparison, forecast against actual use). No plotting library: a few SVG primitives."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from domain.kpis import DEFAULT_CRITICALITY_WEIGHTS
from streams.simulation.runner import Comparison, RunResult, service_short, weighted
from streams.simulation.runner import Table as TableResult
from streams.simulation.scenarios import WARM_UP_DAYS

COLOURS = {"static_par": "#8c564b", "fixed_rop": "#9467bd", "batch_forecast": "#ff7f0e",
           "moving_window": "#2ca02c", "dynamic": "#1f77b4"}
CLASSES = ("critical", "high", "normal")
TABLE_TITLES = {"model_only": "Model only: every policy at the criticality service levels and a 7-day cycle",
                "full_system": "Full system: service allocated by cost (never below the criticality target) and "
                               "economic order cycles; static_par as hospitals run it"}
HEADERS = ("policy", "safety factor", "weighted stockout-days", "stockout-days", "stockout-days crit / high / normal",
           "cycle service crit / high / normal", "fill rate", "avg inventory value", "orders", "order lines",
           "expired value", "service kept")


def fmt(value: Any, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _cells(label: str, r: RunResult, weights: dict[str, float] | None) -> list[str]:
    f = r.figures
    by = f["by_criticality"]
    short = service_short(f)
    return [label, f"{f['safety_factor']:.2f}", f"{weighted(f, weights):,.0f}", f"{f['stockout_days']:,}",
            " / ".join(str(by[c]["stockout_days"]) if c in by else "-" for c in CLASSES),
            " / ".join(f"{by[c]['cycle_service']:.1%}" if c in by else "-" for c in CLASSES),
            fmt(f["fill_rate"], "{:.2%}"), fmt(f["avg_inventory_value"], "{:,.0f}"), f"{f['orders']:,}",
            f"{f['order_lines']:,}", fmt(f["expired_value"], "{:,.0f}"),
            "yes" if not short else "no: " + ", ".join(short)]


def rows(t: TableResult, weights: dict[str, float] | None = None) -> list[list[str]]:
    """A table's rows: each policy at safety factor 1; dynamic tuned to the leanest baseline's
    average inventory value; each baseline tuned to dynamic's."""
    out = [_cells(name, r, weights) for name, r in t.results.items()]
    if t.dynamic_tuned is not None:
        d = t.dynamic_tuned
        out.append(_cells(f"dynamic at {t.leanest}'s inventory" + ("" if d.met_target else " (not reached)"),
                          d.result, weights))
    for name, cal in t.baselines_tuned.items():
        out.append(_cells(f"{name} at dynamic's inventory" + ("" if cal.met_target else " (not reached)"),
                          cal.result, weights))
    return out


def alert_line(t: TableResult) -> str:
    """A sentence on dynamic's alerts at safety factor 1 (none when it has no figures)."""
    a = t.results["dynamic"].figures.get("alerts")
    if not a:
        return ""
    share = a["stockout_risk_followed_by_stockout"]
    kinds = ", ".join(f"{k} {v:.2f}" for k, v in a["by_kind_per_stock_point_month"].items())
    return (f"dynamic's alerts: {a['per_stock_point_month']:.2f} per stock point and month ({kinds}; "
            f"{a['repeats']} repeats counted on open alerts); stockout_risk followed by a stockout within "
            f"the lead time: {'-' if share is None else f'{share:.0%}'} of {a['stockout_risk']}")


def table(c: Comparison) -> list[Table]:
    """The comparison's tables for the terminal."""
    out = []
    for name, t in c.tables.items():
        rt = Table(title=f"{TABLE_TITLES[name]}\nscenario {c.scenario}, seed {c.seed}, {c.days} days "
                         f"(first {WARM_UP_DAYS} are warm-up), {c.n_items} items")
        for i, h in enumerate(HEADERS):
            rt.add_column(h, justify="left" if i == 0 else "right")
        for row in rows(t, c.weights):
            rt.add_row(*row)
        rt.caption = alert_line(t)
        out.append(rt)
    return out


def markdown(c: Comparison) -> str:
    """The tables in Markdown (for the README)."""
    parts = []
    for name, t in c.tables.items():
        parts.append(f"*{TABLE_TITLES[name]}*\n")
        parts.append("| " + " | ".join(HEADERS) + " |")
        parts.append("|" + " --- |" * len(HEADERS))
        parts.extend("| " + " | ".join(row) + " |" for row in rows(t, c.weights))
        parts.append("")
        if alert_line(t):
            parts.extend([alert_line(t) + ".", ""])
    return "\n".join(parts)


def write_json(c: Comparison, path: Path) -> None:
    path.write_text(json.dumps(c.as_json(), indent=2, sort_keys=False) + "\n")


# -- SVG ---------------------------------------------------------------------------------------
def _line_chart(series: dict[str, list[float | None]], colours: dict[str, str], title: str,
                width: int = 720, height: int = 220, start: int = 0, dashed: frozenset[str] = frozenset()) -> str:
    values = [v for s in series.values() for v in s[start:] if v is not None]
    top = max(values, default=1.0) or 1.0
    n = max((len(s) for s in series.values()), default=1)
    pad_l, pad_b, pad_t = 50, 24, 22
    w, h = width - pad_l - 10, height - pad_b - pad_t

    def x(i: int) -> float:
        return pad_l + w * (i - start) / max(n - 1 - start, 1)

    def y(v: float) -> float:
        return pad_t + h * (1 - v / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{pad_l}" y="14" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#999"/>',
             f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#999"/>',
             f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{top:,.0f}</text>',
             f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end">0</text>',
             f'<text x="{pad_l}" y="{height - 6}">day {start}</text>',
             f'<text x="{pad_l + w}" y="{height - 6}" text-anchor="end">day {n - 1}</text>']
    for k, (name, s) in enumerate(series.items()):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s) if i >= start and v is not None)
        dash = ' stroke-dasharray="4 3"' if name in dashed else ""
        parts.append(f'<polyline fill="none" stroke="{colours.get(name, "#333")}" stroke-width="1.3"{dash} '
                     f'points="{points}"/>')
        parts.append(f'<text x="{pad_l + 8 + 150 * k}" y="{pad_t + 12}" fill="{colours.get(name, "#333")}">'
                     f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _bar_chart(values: dict[str, float], title: str, pattern: str, width: int = 340, height: int = 190) -> str:
    top = max(values.values(), default=1.0) or 1.0
    bar_w = (width - 40) / max(len(values), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="10" y="14" font-weight="bold">{html.escape(title)}</text>']
    for i, (name, v) in enumerate(values.items()):
        bh = (height - 60) * v / top
        x0 = 20 + i * bar_w
        parts.append(f'<rect x="{x0 + 6:.1f}" y="{height - 30 - bh:.1f}" width="{bar_w - 12:.1f}" '
                     f'height="{bh:.1f}" fill="{COLOURS.get(name, "#555")}"/>')
        parts.append(f'<text x="{x0 + bar_w / 2:.1f}" y="{height - 34 - bh:.1f}" text-anchor="middle">'
                     f'{html.escape(pattern.format(v))}</text>')
        parts.append(f'<text x="{x0 + bar_w / 2:.1f}" y="{height - 14}" text-anchor="middle">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_html(c: Comparison, path: Path) -> None:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    tables = "".join(
        f"<h2>{html.escape(TABLE_TITLES[name])}</h2><table><tr>{head}</tr>"
        + "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                  for row in rows(t, c.weights)) + "</table>"
        + f"<p>{html.escape(alert_line(t))}</p>"
        + '<div class="grid">'
        + _bar_chart({n: weighted(r.figures, c.weights) for n, r in t.results.items()},
                     "weighted stockout-days (safety factor 1)", "{:,.0f}")
        + _bar_chart({n: float(r.figures["avg_inventory_value"]) for n, r in t.results.items()},
                     "avg inventory value (safety factor 1)", "{:,.0f}")
        + (_bar_chart({n: weighted(cal.result.figures, c.weights) for n, cal in t.baselines_tuned.items()}
                      | {"dynamic": weighted(t.results["dynamic"].figures, c.weights)},
                      "weighted stockout-days at dynamic's inventory", "{:,.0f}") if t.baselines_tuned else "")
        + "</div>"
        for name, t in c.tables.items())
    stock_plots, forecast_plots = [], []
    for sp in c.world.tracked:
        for name in ("dynamic", "batch_forecast"):
            r = c.results.get(name)
            if r is None or sp not in r.series:
                continue
            s = r.series[sp]
            stock_plots.append(_line_chart(
                {"on hand": s["on_hand"], "reorder point": s["reorder_point"], "safety stock": s["safety_stock"]},
                {"on hand": COLOURS.get(name, "#333"), "reorder point": "#d62728", "safety stock": "#2ca02c"},
                f"{sp}: {name}", dashed=frozenset({"reorder point", "safety stock"})))
        r = c.results.get("dynamic")
        if r is not None and sp in r.series:
            s = r.series[sp]
            forecast_plots.append(_line_chart({"actual demand": s["demand"], "forecast (per day)": s["forecast"]},
                                              {"actual demand": "#999", "forecast (per day)": "#1f77b4"},
                                              f"{sp}: forecast vs actual", start=WARM_UP_DAYS))
    tries = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(cal.policy)}</td><td>{f:.3f}</td><td>{v:,.0f}</td>"
        f"<td>{w:,.0f}</td></tr>"
        for name, t in c.tables.items()
        for cal in ([t.dynamic_tuned] if t.dynamic_tuned else []) + list(t.baselines_tuned.values())
        for f, v, w in cal.tries)
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>replenish simulate: {html.escape(c.scenario)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1500px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}
.grid{{display:flex;flex-wrap:wrap;gap:12px}}</style></head><body>
<h1>Policy comparison: scenario <code>{html.escape(c.scenario)}</code>, seed {c.seed}</h1>
<p>{c.days} simulated days; the first {WARM_UP_DAYS} are warm-up and excluded from every figure.
{c.n_items} items, {len(c.world.hospital.stock_points)} stock points. Demand that stock cannot meet is lost
(not backordered). Figures follow <code>domain/kpis.py</code>. Stockout-days are weighted by criticality
({html.escape(", ".join(f"{k} {v:g}" for k, v in (c.weights or DEFAULT_CRITICALITY_WEIGHTS).items()))}).
Every policy is tuned to equal inventory by one safety factor (a multiplier on its safety stock): dynamic
to the leanest baseline's average inventory value, each baseline to dynamic's; no tuning takes a class's
cycle service more than one point below its target.</p>
{tables}
<h2>Stock over time against the reorder point and safety stock (full system, safety factor 1)</h2>
<div class="grid">{"".join(stock_plots)}</div>
<h2>Forecast against actual use (dynamic, after warm-up)</h2><div class="grid">{"".join(forecast_plots)}</div>
<h2>Calibration tries</h2><table><tr><th>table</th><th>policy</th><th>safety factor</th><th>avg inventory value</th>
<th>weighted stockout-days</th></tr>{tries}</table></body></html>"""
    path.write_text(doc)
