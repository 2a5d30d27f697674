"""The comparison as a terminal table, a JSON document and a self-contained HTML page with
inline SVG plots (stock over time against the reorder point and safety stock, the policy
comparison, forecast against actual use). No plotting library: a few SVG primitives."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from streams.simulation.runner import Comparison
from streams.simulation.scenarios import WARM_UP_DAYS

COLUMNS = [("stockout_days", "stockout days", "{:,.0f}"), ("stockout_events", "stockout events", "{:,.0f}"),
           ("fill_rate", "fill rate", "{:.2%}"), ("avg_inventory_value", "avg inventory value", "{:,.0f}"),
           ("days_of_supply", "days of supply", "{:.1f}"), ("expired_value", "expired value", "{:,.0f}"),
           ("orders", "orders", "{:,.0f}"), ("order_lines", "order lines", "{:,.0f}"),
           ("emergency_orders", "emergency orders", "{:,.0f}")]
COLOURS = {"static_par": "#8c564b", "fixed_rop": "#9467bd", "batch_forecast": "#ff7f0e", "dynamic": "#1f77b4"}


def fmt(value: Any, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def table(c: Comparison) -> Table:
    t = Table(title=f"scenario {c.scenario}, seed {c.seed}, {c.days} days "
                    f"(first {WARM_UP_DAYS} are warm-up), {c.n_items} items")
    t.add_column("policy")
    for _, label, _ in COLUMNS:
        t.add_column(label, justify="right")
    t.add_column("stockout days vs dynamic", justify="right")
    dyn = c.results.get("dynamic")
    for name, r in c.results.items():
        ratio = ""
        if dyn is not None and name != "dynamic":
            d = dyn.figures["stockout_days"]
            ratio = f"{r.figures['stockout_days'] / d:.1f}×" if d else "∞"
        t.add_row(name, *(fmt(r.figures.get(k), p) for k, _, p in COLUMNS), ratio)
    return t


def markdown(c: Comparison) -> str:
    """The table in Markdown (for the README)."""
    head = "| policy | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    rows = [head, "|" + " --- |" * (len(COLUMNS) + 1)]
    for name, r in c.results.items():
        rows.append(f"| {name} | " + " | ".join(fmt(r.figures.get(k), p) for k, _, p in COLUMNS) + " |")
    return "\n".join(rows)


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
    rows = "".join(
        "<tr><td>" + html.escape(name) + "</td>"
        + "".join(f"<td>{html.escape(fmt(r.figures.get(k), p))}</td>" for k, _, p in COLUMNS) + "</tr>"
        for name, r in c.results.items())
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COLUMNS)
    bars = "".join(_bar_chart({n: float(r.figures.get(k) or 0) for n, r in c.results.items()}, label, p)
                   for k, label, p in (COLUMNS[0], COLUMNS[2], COLUMNS[3], COLUMNS[5]))
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
    calib = "".join(f"<tr><td>{s:,.1f}</td><td>{v:,.0f}</td><td>{n}</td></tr>" for s, v, n in c.calibration)
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>replenish simulate: {html.escape(c.scenario)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1500px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}
.grid{{display:flex;flex-wrap:wrap;gap:12px}}</style></head><body>
<h1>Policy comparison: scenario <code>{html.escape(c.scenario)}</code>, seed {c.seed}</h1>
<p>{c.days} simulated days; the first {WARM_UP_DAYS} are warm-up and excluded from every figure.
{c.n_items} items, {len(c.world.hospital.stock_points)} stock points. Demand that stock cannot meet is lost
(not backordered). Figures follow <code>domain/kpis.py</code>. <code>dynamic</code>'s service levels, allocated by cost, were
calibrated so that its average inventory value is no higher than the leanest baseline's
({c.target_inventory:,.0f}).</p>
<table><tr><th>policy</th>{head}</tr>{rows}</table>
<h2>Policy comparison</h2><div class="grid">{bars}</div>
<h2>Stock over time against the reorder point and safety stock</h2><div class="grid">{"".join(stock_plots)}</div>
<h2>Forecast against actual use (dynamic, after warm-up)</h2><div class="grid">{"".join(forecast_plots)}</div>
<h2>Calibration of dynamic</h2><table><tr><th>cost of a stockout occasion (service allocated by cost)</th><th>avg inventory value</th>
<th>stockout days</th></tr>{calib}</table></body></html>"""
    path.write_text(doc)
