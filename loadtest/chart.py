"""A self-contained SVG line chart of a load test's time series.

Plain SVG with no script and no external reference, so a browser, a Markdown
viewer or a CI artefact page shows it as it is.
"""

from __future__ import annotations

import math
from html import escape

__all__ = ["render_svg"]

WIDTH = 900
HEIGHT = 360
MARGIN_LEFT = 60
MARGIN_RIGHT = 20
MARGIN_TOP = 40
MARGIN_BOTTOM = 70

# (series key, label, colour, dash pattern)
LINES = (
    ("target_rate", "target rate (webhooks/s)", "#888888", "6 4"),
    ("sent_rate", "sent (webhooks/s)", "#1f77b4", ""),
    ("legacy_open_gaps", "legacy open gaps (orders/s)", "#d62728", ""),
    ("candidate_open_gaps", "candidate open gaps (orders/s)", "#2ca02c", ""),
)


def render_svg(
    series: dict[str, list[float]], *, step_s: float, title: str,
    phases: list[tuple[str, float, float]] = (),
) -> str:
    """Draw the series on one axis (per second) with the load phases as bands."""
    length = max((len(values) for values in series.values()), default=0)
    top = max((max(values, default=0.0) for values in series.values()), default=0.0)
    y_max = _nice_ceiling(top)
    x_max = max(length * step_s, step_s)
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x(seconds: float) -> float:
        return MARGIN_LEFT + plot_w * seconds / x_max

    def y(value: float) -> float:
        return MARGIN_TOP + plot_h * (1 - value / y_max)

    parts = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
         f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">'),
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]

    for index, (name, start, end) in enumerate(phases):
        shade = "#f3f3f3" if index % 2 == 0 else "#e8eef7"
        parts.append(f'<rect x="{x(start):.1f}" y="{MARGIN_TOP}" width="{max(0.0, x(end) - x(start)):.1f}" '
                     f'height="{plot_h}" fill="{shade}"/>')
        parts.append(f'<text x="{(x(start) + x(end)) / 2:.1f}" y="{MARGIN_TOP + 14}" '
                     f'text-anchor="middle" fill="#555">{escape(name)}</text>')

    for tick in _ticks(y_max):
        parts.append(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y(tick):.1f}" '
                     f'y2="{y(tick):.1f}" stroke="#dddddd"/>')
        parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for tick in _ticks(x_max):
        parts.append(f'<text x="{x(tick):.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" '
                     f'text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{HEIGHT - MARGIN_BOTTOM + 32}" '
                 f'text-anchor="middle">seconds since the start of the load</text>')
    parts.append(f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" '
                 f'fill="none" stroke="#444"/>')

    legend_x = MARGIN_LEFT
    for key, label, colour, dash in LINES:
        values = series.get(key)
        if not values:
            continue
        points = " ".join(f"{x(i * step_s):.1f},{y(v):.1f}" for i, v in enumerate(values))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.6"{dash_attr}/>')
        parts.append(f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="{HEIGHT - 16}" y2="{HEIGHT - 16}" '
                     f'stroke="{colour}" stroke-width="2"{dash_attr}/>')
        parts.append(f'<text x="{legend_x + 22}" y="{HEIGHT - 12}">{escape(label)}</text>')
        legend_x += 30 + 7 * len(label)

    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _nice_ceiling(value: float) -> float:
    """Return 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if factor * power >= value:
            return float(factor * power)
    return float(10 * power)


def _ticks(maximum: float, count: int = 5) -> list[float]:
    step = _nice_ceiling(maximum / count)
    return [step * i for i in range(int(maximum / step) + 1)]
