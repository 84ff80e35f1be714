"""Server-rendered SVG charts for the researcher dashboard.

The dashboard is an htmx partial swapped in every few seconds, so its charts
are plain inline SVG produced here from numbers: nothing to initialise after a
swap, nothing for a CSP to block, and they work without JavaScript. Colours
come from CSS classes (``.chart-*`` in static/css/app.css, which use the
page's light/dark variables); ``currentColor`` attributes keep them visible
if the stylesheet is missing.

Safety: every piece of text (titles, labels, model names) is escaped with
``django.utils.html.escape`` and every coordinate is a float this module
formatted, so the markup is safe to mark as such. Non-finite values are
dropped, never drawn. Each chart is ``role="img"`` with an ``aria-label``
that carries its key numbers, and a ``<title>`` for a tooltip.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 360  # viewBox width of line and bar charts: about the width they get in a dashboard card
INTERVAL_WIDTH = 560  # the leaderboard gets a wide card
FONT = 11
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 44, 14, 12, 34
MAX_SERIES = 4
MAX_INTERVAL_ROWS = 20
LABEL_CHARS = 22


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]  # (x, y)


@dataclass(frozen=True)
class Interval:
    label: str
    estimate: float
    low: float
    high: float
    note: str = ""  # printed right of the row, e.g. "P(best) 62 %"


def _finite(*values: float) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _f(value: float) -> str:
    """A coordinate: one decimal, no exponent."""
    return f"{value:.1f}"


def _fmt(value: float) -> str:
    """A number for a tick label or a description: short, no exponent."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high] (1, 2 or 5 × 10^k apart)."""
    if not _finite(low, high):
        raise ValueError("tick range must be finite")
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(low / step + 1e-9) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9 or len(ticks) < 2:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high - 1e-9:
        ticks.append(round(value, 10))
    return ticks


def _chart_id(chart_id: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]", "-", chart_id.lower()).strip("-")
    if not cleaned:
        raise ValueError("chart_id must contain a letter or digit")
    return cleaned


def _svg(chart_id: str, height: float, title: str, summary: str, body: list[str], width: float = WIDTH) -> SafeString:
    label = f"{title}. {summary}" if summary else title
    head = (
        f'<svg class="chart" id="{_chart_id(chart_id)}" role="img" viewBox="0 0 {_f(width)} {_f(height)}" '
        f'preserveAspectRatio="xMidYMid meet" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>"
    )
    return mark_safe(head + "".join(body) + "</svg>")  # every text in it was escaped


def _text(x: float, y: float, text: str, *, anchor: str = "middle", cls: str = "chart-text", extra: str = "") -> str:
    return (
        f'<text class="{cls}" x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" font-size="{FONT}" '
        f'fill="currentColor"{extra}>{escape(text)}</text>'
    )


def _empty(chart_id: str, title: str, message: str, height: float = 120) -> SafeString:
    return _svg(chart_id, height, title, message, [_text(WIDTH / 2, height / 2, message, cls="chart-text chart-empty")])


class _Frame:
    """Plot area and the linear maps from data to SVG coordinates."""

    def __init__(
        self, x_range: tuple[float, float], y_range: tuple[float, float], height: float, width: float = WIDTH
    ) -> None:
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.left, self.right = MARGIN_LEFT, width - MARGIN_RIGHT
        self.top, self.bottom = MARGIN_TOP, height - MARGIN_BOTTOM

    def x(self, value: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.left + (value - self.x0) / span * (self.right - self.left)

    def y(self, value: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return self.bottom - (value - self.y0) / span * (self.bottom - self.top)

    def y_axis(self, ticks: list[float], label: str) -> list[str]:
        out = []
        for t in ticks:
            y = self.y(t)
            out.append(
                f'<line class="chart-grid" x1="{_f(self.left)}" x2="{_f(self.right)}" y1="{_f(y)}" y2="{_f(y)}" '
                f'stroke="currentColor" stroke-opacity="0.15"/>'
            )
            out.append(_text(self.left - 6, y + FONT / 3, _fmt(t), anchor="end"))
        mid = (self.top + self.bottom) / 2
        out.append(_text(12, mid, label, extra=f' transform="rotate(-90 12 {_f(mid)})"'))
        return out

    def x_axis(self, ticks: list[tuple[float, str]], label: str) -> list[str]:
        out = [
            f'<line class="chart-axis" x1="{_f(self.left)}" x2="{_f(self.right)}" y1="{_f(self.bottom)}" '
            f'y2="{_f(self.bottom)}" stroke="currentColor"/>'
        ]
        for x, text in ticks:
            out.append(_text(self.x(x), self.bottom + FONT + 3, text))
        out.append(_text((self.left + self.right) / 2, self.bottom + 2 * FONT + 8, label))
        return out


def line_chart(
    series: Sequence[Series],
    *,
    chart_id: str,
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    reference: tuple[float, str] | None = None,
    summary: str = "",
    height: float = 220,
) -> SafeString:
    """Lines with point markers for up to ``MAX_SERIES`` series (x sorted within each).

    ``y_range`` fixes the y axis (e.g. 0–1 for accuracy) instead of fitting the
    data; ``reference`` draws a dashed horizontal line with a label (e.g.
    chance level). ``summary`` is appended to the accessible label.
    """
    clean = [
        Series(s.name, sorted((float(x), float(y)) for x, y in s.points if _finite(x, y))) for s in series[:MAX_SERIES]
    ]
    clean = [s for s in clean if s.points]
    if not clean:
        return _empty(chart_id, title, "No data yet.")
    xs = [x for s in clean for x, _ in s.points]
    ys = [y for s in clean for _, y in s.points]
    if reference is not None and _finite(reference[0]):
        ys.append(reference[0])
    y_ticks = nice_ticks(*(y_range or (min(ys), max(ys))))
    x_ticks = nice_ticks(min(xs), max(xs))
    frame = _Frame((x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]), height)
    body = frame.y_axis(y_ticks, y_label) + frame.x_axis([(t, _fmt(t)) for t in x_ticks], x_label)
    if reference is not None and _finite(reference[0]):
        y = frame.y(reference[0])
        body.append(
            f'<line class="chart-ref" x1="{_f(frame.left)}" x2="{_f(frame.right)}" y1="{_f(y)}" y2="{_f(y)}" '
            f'stroke="currentColor" stroke-dasharray="4 3"/>'
        )
        body.append(_text(frame.right - 2, y - 4, reference[1], anchor="end", cls="chart-text chart-ref-label"))
    for k, s in enumerate(clean):
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{_f(frame.x(x))},{_f(frame.y(y))}" for i, (x, y) in enumerate(s.points)
        )
        body.append(f'<g class="chart-series series-{k}"><title>{escape(s.name)}</title>')
        body.append(f'<path class="chart-line" d="{path}" fill="none" stroke="currentColor" stroke-width="2"/>')
        for x, y in s.points:
            body.append(
                f'<circle class="chart-point" cx="{_f(frame.x(x))}" cy="{_f(frame.y(y))}" r="3" fill="currentColor">'
                f"<title>{escape(s.name)}: {_fmt(y)} at {_fmt(x)}</title></circle>"
            )
        body.append("</g>")
    if len(clean) > 1:
        for k, s in enumerate(clean):
            x = frame.left + 8 + k * 90
            body.append(f'<g class="chart-series series-{k}">')
            body.append(f'<rect class="chart-swatch" x="{_f(x)}" y="2" width="10" height="3" fill="currentColor"/>')
            body.append(_text(x + 14, 7, s.name[:LABEL_CHARS], anchor="start"))
            body.append("</g>")
    return _svg(chart_id, height, title, summary, body)


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    chart_id: str,
    title: str,
    x_label: str,
    y_label: str,
    label_every: int = 1,
    summary: str = "",
    height: float = 200,
) -> SafeString:
    """Vertical bars, one per label; every ``label_every``-th label is printed.

    Non-finite or negative values draw no bar (a bar chart of counts)."""
    if len(labels) != len(values):
        raise ValueError("bar_chart needs one value per label")
    if not labels:
        return _empty(chart_id, title, "No data yet.")
    vals = [float(v) if _finite(v) and v >= 0 else 0.0 for v in values]
    y_ticks = nice_ticks(0.0, max(max(vals), 1.0))
    frame = _Frame((0.0, float(len(vals))), (0.0, y_ticks[-1]), height)
    every = max(1, label_every)
    x_ticks = [(i + 0.5, str(label)) for i, label in enumerate(labels) if i % every == 0]
    body = frame.y_axis(y_ticks, y_label) + frame.x_axis(x_ticks, x_label)
    slot = (frame.right - frame.left) / len(vals)
    for i, (label, value) in enumerate(zip(labels, vals, strict=True)):
        if value <= 0:
            continue
        top = frame.y(value)
        body.append(
            f'<rect class="chart-bar" x="{_f(frame.left + i * slot + slot * 0.12)}" y="{_f(top)}" '
            f'width="{_f(slot * 0.76)}" height="{_f(frame.bottom - top)}" fill="currentColor">'
            f"<title>{escape(str(label))}: {_fmt(value)}</title></rect>"
        )
    return _svg(chart_id, height, title, summary, body)


def interval_chart(
    rows: Sequence[Interval], *, chart_id: str, title: str, x_label: str, summary: str = ""
) -> SafeString:
    """One horizontal row per item: its interval as a line and its estimate as a dot,
    labels left and notes right; at most ``MAX_INTERVAL_ROWS`` rows, in the order given."""
    clean = [r for r in rows[:MAX_INTERVAL_ROWS] if _finite(r.estimate, r.low, r.high)]
    if not clean:
        return _empty(chart_id, title, "No data yet.")
    row_h, left, right, top, bottom = 22, 150, INTERVAL_WIDTH - 92, 8, 34
    height = top + row_h * len(clean) + bottom
    lo = min(min(r.low, r.estimate) for r in clean)
    hi = max(max(r.high, r.estimate) for r in clean)
    ticks = nice_ticks(min(lo, 0.0), max(hi, 0.0))
    span = ticks[-1] - ticks[0] or 1.0

    def x(value: float) -> float:
        return left + (value - ticks[0]) / span * (right - left)

    axis_y = top + row_h * len(clean) + 4
    body = []
    for t in ticks:
        body.append(
            f'<line class="chart-grid{" chart-zero" if t == 0 else ""}" x1="{_f(x(t))}" x2="{_f(x(t))}" '
            f'y1="{_f(top)}" y2="{_f(axis_y)}" stroke="currentColor" stroke-opacity="{"0.5" if t == 0 else "0.15"}"/>'
        )
        body.append(_text(x(t), axis_y + FONT + 2, _fmt(t)))
    body.append(_text((left + right) / 2, axis_y + 2 * FONT + 6, x_label))
    for k, row in enumerate(clean):
        y = top + row_h * k + row_h / 2
        name = row.label if len(row.label) <= LABEL_CHARS else row.label[: LABEL_CHARS - 1] + "…"
        detail = f"{row.label}: {_fmt(row.estimate)} (95% interval {_fmt(row.low)} to {_fmt(row.high)})"
        if row.note:
            detail += f", {row.note}"
        body.append(f'<g class="chart-row"><title>{escape(detail)}</title>')
        body.append(_text(left - 8, y + FONT / 3, name, anchor="end", cls="chart-text chart-label"))
        body.append(
            f'<line class="chart-interval" x1="{_f(x(row.low))}" x2="{_f(x(row.high))}" y1="{_f(y)}" y2="{_f(y)}" '
            f'stroke="currentColor" stroke-width="3" stroke-linecap="round"/>'
        )
        body.append(
            f'<circle class="chart-point" cx="{_f(x(row.estimate))}" cy="{_f(y)}" r="4.5" fill="currentColor"/>'
        )
        if row.note:
            body.append(_text(right + 8, y + FONT / 3, row.note, anchor="start"))
        body.append("</g>")
    return _svg(chart_id, height, title, summary, body, INTERVAL_WIDTH)
