"""Inline SVG charts for the HTML report, written without a plotting library.

Each function returns one `<svg>` element as text with a title and axis
labels; values come from the analysis' HDR distributions and time series.
"""

from __future__ import annotations

import math
from html import escape

from compare.series import SeriesPoint
from compare.timing import Distribution

__all__ = ["cdf_chart", "histogram_chart", "series_chart"]

WIDTH = 640
HEIGHT = 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 28, 40
FLOW_COLOURS = {"legacy": "#c0392b", "candidate": "#2471a3"}
_BINS = 30


def histogram_chart(chart_id: str, title: str, distribution: Distribution, colour: str) -> str:
    """Bar chart of a distribution of ms values in equal-width bins, with a line at 0."""
    if not distribution:
        return _empty(chart_id, title, "no measured values")
    low = min(value for value, _ in distribution)
    high = max(value for value, _ in distribution)
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high = low + 1.0
    width = (high - low) / _BINS
    counts = [0] * _BINS
    for value, count in distribution:
        counts[min(int((value - low) / width), _BINS - 1)] += count

    peak = max(counts)
    x = _scale(low, high, _LEFT, WIDTH - _RIGHT)
    y = _scale(0, peak, HEIGHT - _BOTTOM, _TOP)
    parts = []
    for index, count in enumerate(counts):
        if not count:
            continue
        left = x(low + index * width)
        right = x(low + (index + 1) * width)
        top = y(count)
        parts.append(
            f'<rect x="{left:.1f}" y="{top:.1f}" width="{max(right - left - 1, 1):.1f}" '
            f'height="{HEIGHT - _BOTTOM - top:.1f}" fill="{colour}">'
            f"<title>{_ms(low + index * width)} to {_ms(low + (index + 1) * width)}: "
            f"{count} orders</title></rect>"
        )
    zero = x(0.0)
    parts.append(f'<line x1="{zero:.1f}" y1="{_TOP}" x2="{zero:.1f}" y2="{HEIGHT - _BOTTOM}" '
                 'stroke="#333" stroke-dasharray="4 3"/>')
    # The label goes on the side of the line with more room.
    if zero < WIDTH / 2:
        parts.append(_text(zero + 4, _TOP + 12, "0: confirmed at the acknowledgement", "start"))
    else:
        parts.append(_text(zero - 4, _TOP + 12, "0: confirmed at the acknowledgement", "end"))
    return _svg(chart_id, title, parts, _axes(low, high, 0, peak, "gap (ms)", "orders"))


def cdf_chart(chart_id: str, title: str, curves: dict[str, Distribution]) -> str:
    """Cumulative share of orders against ms, one step line per flow."""
    values = [value for curve in curves.values() for value, _ in curve]
    if not values:
        return _empty(chart_id, title, "no confirmations measured")
    low, high = 0.0, max(values) or 1.0
    x = _scale(low, high, _LEFT, WIDTH - _RIGHT)
    y = _scale(0.0, 1.0, HEIGHT - _BOTTOM, _TOP)
    parts = []
    for legend_row, (flow, curve) in enumerate(curves.items()):
        total = sum(count for _, count in curve)
        if not total:
            continue
        points = [(x(low), y(0.0))]
        seen = 0
        for value, count in curve:
            points.append((x(value), y(seen / total)))
            seen += count
            points.append((x(value), y(seen / total)))
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        colour = FLOW_COLOURS.get(flow, "#555")
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(_legend(legend_row, flow, colour))
    return _svg(chart_id, title, parts, _axes(low, high, 0.0, 1.0, "ms from the webhook", "share"))


def series_chart(chart_id: str, title: str, points: list[SeriesPoint], names: dict[str, str]) -> str:
    """Counts per time bucket as one line per name; `names` maps a count name to a colour."""
    if not points:
        return _empty(chart_id, title, "no orders with a webhook time")
    bucket_s = points[1].start_s - points[0].start_s if len(points) > 1 else 1.0
    high_s = points[-1].start_s + bucket_s
    peak = max([point.counts.get(name, 0) for point in points for name in names] + [1])
    x = _scale(0.0, high_s, _LEFT, WIDTH - _RIGHT)
    y = _scale(0, peak, HEIGHT - _BOTTOM, _TOP)
    parts = []
    for legend_row, (name, colour) in enumerate(names.items()):
        coordinates = " ".join(
            f"{x(point.start_s + bucket_s / 2):.1f},{y(point.counts.get(name, 0)):.1f}"
            for point in points
        )
        parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}" '
                     'stroke-width="2"/>')
        parts.append(_legend(legend_row, name.replace("_", " "), colour))
    axis = f"seconds from the first webhook ({_seconds(bucket_s)} buckets)"
    return _svg(chart_id, title, parts, _axes(0.0, high_s, 0, peak, axis, "orders"))


def _scale(low: float, high: float, start: float, end: float):
    span = (high - low) or 1.0
    return lambda value: start + (value - low) / span * (end - start)


def _axes(x_low: float, x_high: float, y_low: float, y_high: float, x_label: str,
          y_label: str) -> list[str]:
    bottom, right = HEIGHT - _BOTTOM, WIDTH - _RIGHT
    parts = [
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" stroke="#333"/>',
        _text(_LEFT, bottom + 16, _number(x_low), "start"),
        _text(right, bottom + 16, _number(x_high), "end"),
        _text((_LEFT + right) / 2, bottom + 32, x_label, "middle"),
        _text(_LEFT - 6, bottom, _number(y_low), "end"),
        _text(_LEFT - 6, _TOP + 4, _number(y_high), "end"),
        _text(_LEFT - 6, (_TOP + bottom) / 2, y_label, "end"),
    ]
    return parts


def _legend(row: int, label: str, colour: str) -> str:
    top = _TOP + 6 + row * 16
    left = WIDTH - _RIGHT - 150
    return (f'<rect x="{left}" y="{top - 9}" width="12" height="10" fill="{colour}"/>'
            + _text(left + 18, top, label, "start"))


def _svg(chart_id: str, title: str, parts: list[str], axes: list[str]) -> str:
    body = "".join(axes + parts)
    return (
        f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        + _text(WIDTH / 2, 18, title, "middle", bold=True) + body + "</svg>"
    )


def _empty(chart_id: str, title: str, reason: str) -> str:
    return _svg(chart_id, title, [_text(WIDTH / 2, HEIGHT / 2, reason, "middle")], [])


def _text(x: float, y: float, text: str, anchor: str, *, bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="11"{weight}>'
            f"{escape(text)}</text>")


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or value == math.floor(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _ms(value: float) -> str:
    return f"{value:,.1f} ms"


def _seconds(value: float) -> str:
    return f"{value:g} s"
