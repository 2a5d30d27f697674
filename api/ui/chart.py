"""The stock point's chart as inline SVG, drawn on the server: no script, nothing loaded.

Quantities (on hand, reorder point, safety stock, order-up-to, on order) share the left
axis; the demand forecast (per day) has its own, on the right. A policy number holds until the
next decision changes it, so those are drawn as steps; on hand steps at each stock fact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

# name -> (label, colour, dash pattern, right axis)
STYLE: dict[str, tuple[str, str, str, bool]] = {
    "on_hand": ("Balance (all lots)", "#1f5fa8", "", False),
    "reorder_point": ("Reorder point", "#c0392b", "6 3", False),
    "safety_stock": ("Safety stock", "#e08e0b", "2 3", False),
    "order_up_to": ("Order-up-to", "#7d3c98", "10 4 2 4", False),
    "on_order": ("On order", "#1e8449", "", False),
    "forecast": ("Forecast (per day, right axis)", "#555555", "1 2", True),
}
W, H = 900, 330
LEFT, RIGHT, TOP, BOTTOM = 56, 64, 16, 58


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top``."""
    if top <= 0:
        return 1.0
    step = 10 ** len(str(int(top))) / 10
    for m in (1, 2, 2.5, 5, 10):
        if m * step >= top:
            return m * step
    return 10 * step


def svg(series: dict[str, list[tuple[str, float | None]]], end: str) -> str:
    """The chart of ``series`` (``traceability.stock_point_series``) up to ``end`` (UTC ISO)."""
    points = {k: [(_t(at), v) for at, v in pts if v is not None] for k, pts in series.items() if k in STYLE}
    times = [t for pts in points.values() for t, _ in pts]
    if not times:
        return '<p class="empty">No stock facts or decisions recorded yet.</p>'
    t_end = max(_t(end), max(times))
    t0 = min(times)
    span = max(t_end - t0, 3600.0)
    left = [v for k, pts in points.items() if not STYLE[k][3] for _, v in pts] or [1.0]
    left_top = _nice(max(left) * 1.05)
    left_bottom = -_nice(-min(left) * 1.05) if min(left) < 0 else 0.0  # (a book below zero)
    right_top = _nice(max([v for _, v in points.get("forecast", [])] or [1.0]) * 1.15)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - t0) / span * pw

    def y(v: float, right: bool) -> float:
        if right:
            return TOP + ph - v / right_top * ph
        return TOP + ph - (v - left_bottom) / (left_top - left_bottom) * ph

    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="chart-title">'
           f'<title id="chart-title">On hand, reorder point, safety '
           f'stock, order-up-to, on order and forecast over time</title>']
    for i in range(5):  # grid and axes' labels
        frac = i / 4
        gy = TOP + ph - frac * ph
        out.append(f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{W - RIGHT}" y2="{gy:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">'
                   f'{left_bottom + (left_top - left_bottom) * frac:g}</text>')
        out.append(f'<text x="{W - RIGHT + 6}" y="{gy + 4:.1f}">{right_top * frac:g}</text>')
    for i in range(5):
        tt = t0 + span * i / 4
        label = datetime.fromtimestamp(tt, UTC).strftime("%d %b %H:%M UTC")
        out.append(f'<text x="{x(tt):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{label}</text>')
    for name, (label, colour, dash, right) in STYLE.items():
        pts = points.get(name) or []
        if not pts:
            continue
        path: list[str] = []
        for i, (t, v) in enumerate(pts):  # steps: a value holds until the next
            if i:
                path.append(f"{x(t):.1f},{y(pts[i - 1][1], right):.1f}")
            path.append(f"{x(t):.1f},{y(v, right):.1f}")
        path.append(f"{x(t_end):.1f},{y(pts[-1][1], right):.1f}")
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline data-series="{name}" data-last="{pts[-1][1]:g}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr} '
                   f'points="{" ".join(path)}"><title>{escape(label)}</title></polyline>')
    lx = LEFT
    for name, (label, colour, dash, _) in STYLE.items():  # the legend, below the plot
        if not points.get(name):
            continue
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        ly = H - 14
        out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 22}" y2="{ly - 4}" stroke="{colour}" '
                   f'stroke-width="2"{dash_attr}/><text x="{lx + 26}" y="{ly}">{escape(label)}</text>')
        lx += 34 + 6.2 * len(label)
    out.append("</svg>")
    return "".join(out)


__all__ = ["STYLE", "svg"]
