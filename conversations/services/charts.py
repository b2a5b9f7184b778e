"""Charts as server-side SVG: no JavaScript, no CDN, nothing a strict Content-Security-Policy would block.

Colours are presentation attributes (not style attributes) for the same reason. Every label is escaped.
Each chart carries a <title> and an aria-label, and the page shows the same numbers in a table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

# Distinguishable in light and dark admin themes; the last one stands for every other model.
PALETTE = ["#2563eb", "#0b7a5f", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#65a30d", "#db2777", "#6b7280"]
MAX_SERIES = len(PALETTE) - 1
WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 28


def _join(pieces: list[str]) -> SafeString:
    """Pieces that format_html built (so already escaped) as one safe string."""
    return mark_safe("".join(pieces))  # noqa: S308 - every piece comes from format_html


def _nice_ceiling(value: float) -> float:
    """A round axis maximum at or above `value` (1, 1.2, 1.5, 2... 8 times a power of ten): bars use most of
    the height, and the four grid lines get readable labels."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10):
        if step * magnitude >= value * 0.999999:  # float noise must not push 0.3 up to 0.5
            return step * magnitude
    return 10 * magnitude


def _label(value: float, unit: str) -> str:
    if unit == "$":
        return f"${value:,.2f}" if value < 100 else f"${value:,.0f}"
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _fold_series(series: dict[str, Sequence[float]]) -> dict[str, list[float]]:
    """At most MAX_SERIES named series (the largest); the rest summed as "Other"."""
    ranked = sorted(series.items(), key=lambda item: -sum(item[1]))
    kept = dict(ranked[:MAX_SERIES])
    rest = ranked[MAX_SERIES:]
    if rest:
        kept["Other"] = [sum(values) for values in zip(*(v for _, v in rest), strict=True)]
    return {name: list(values) for name, values in kept.items()}


def stacked_bars(
    title: str, days: list[dt.date], series: dict[str, Sequence[float]], unit: str = ""
) -> SafeString:
    """One bar per day, stacked by series, with a y axis, sparse date labels and a legend."""
    series = _fold_series(series)
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    top = _nice_ceiling(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(days))
    bar_w = max(1.0, slot * 0.75)
    parts: list[str] = []
    for i in range(5):  # grid lines and y labels
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-opacity="0.15"/>'
                '<text x="{}" y="{}" text-anchor="end" font-size="11" fill="currentColor">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                f"{y:.1f}",
                f"{y:.1f}",
                LEFT - 6,
                f"{y + 4:.1f}",
                _label(value, unit),
            )
        )
    every = max(1, round(len(days) / 8))  # about eight date labels, whatever the range
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = TOP + plot_h
        tip = [f"{day:%a %d %b}: {_label(totals[i], unit)}"]
        for colour, (name, values) in zip(PALETTE, series.items(), strict=False):
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            tip.append(f"{name}: {_label(value, unit)}")
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
                    f"{x:.1f}",
                    f"{base:.1f}",
                    f"{bar_w:.1f}",
                    f"{h:.1f}",
                    colour,
                    f"{day:%d %b} {name}: {_label(value, unit)}",
                )
            )
        if i % every == 0:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="currentColor">{}</text>',
                    f"{x + bar_w / 2:.1f}",
                    HEIGHT - 10,
                    f"{day:%d %b}",
                )
            )
    legend = "".join(
        format_html(
            '<span class="legend-item"><svg width="10" height="10" aria-hidden="true"><rect width="10" '
            'height="10" fill="{}"/></svg> {}</span>',
            colour,
            name,
        )
        for colour, name in zip(PALETTE, series, strict=False)
    )
    svg = format_html(
        '<svg class="usage-chart" viewBox="0 0 {} {}" role="img" aria-label="{}"><title>{}</title>{}</svg>'
        '<div class="legend">{}</div>',
        WIDTH,
        HEIGHT,
        title,
        title,
        _join(parts),
        _join([legend]),
    )
    return svg


def uptime_colour(uptime: float | None) -> str:
    if uptime is None:
        return "#9ca3af"  # no answers that day
    if uptime >= 0.99:
        return "#16a34a"
    if uptime >= 0.95:
        return "#ca8a04"
    return "#dc2626"


def uptime_strip(name: str, cells: Sequence[tuple[dt.date, int, int, float | None]]) -> SafeString:
    """OpenRouter-style strip: one bar per day, green/amber/red by the share of answers without an error."""
    width, height, gap = 600, 28, 2
    cell = width / max(1, len(cells))
    bars = []
    for i, (day, total, errors, uptime) in enumerate(cells):
        label = (
            f"{day:%a %d %b}: no answers"
            if uptime is None
            else f"{day:%a %d %b}: {uptime:.1%} ok ({errors} errors of {total})"
        )
        bars.append(
            format_html(
                '<rect x="{}" y="0" width="{}" height="{}" rx="2" fill="{}"><title>{}</title></rect>',
                f"{i * cell:.1f}",
                f"{max(1.0, cell - gap):.1f}",
                height,
                uptime_colour(uptime),
                label,
            )
        )
    return format_html(
        '<svg class="uptime-strip" viewBox="0 0 {} {}" preserveAspectRatio="none" role="img" '
        'aria-label="{}"><title>{}</title>{}</svg>',
        width,
        height,
        f"Daily uptime of {name}",
        f"Daily uptime of {name}",
        _join(bars),
    )
