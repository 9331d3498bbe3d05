"""The usage page's chart: tokens per day for the last 30 days, stacked by model, as an SVG
drawn on the server (no script, no external library). Every text in it is escaped."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from supportbot.tenants.usage import UsageDayRow

PALETTE = ("#417690", "#e0a800", "#79aec8", "#ba2121", "#5b8c5a", "#8a6bbf", "#999999")
WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 10, 40


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 10)."""
    step = 10
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def daily_totals(rows: list[UsageDayRow], days: list[date]) -> dict[str, list[int]]:
    """model -> tokens on each of `days` (models by total, the 6 largest; the rest "other")."""
    by_model: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        by_model[row.model or "(none)"][row.day] += row.tokens
    ranked = sorted(by_model, key=lambda model: -sum(by_model[model].values()))
    series: dict[str, list[int]] = {}
    for model in ranked[: len(PALETTE) - 1]:
        series[model] = [by_model[model].get(day, 0) for day in days]
    rest = ranked[len(PALETTE) - 1 :]
    if rest:
        series["other"] = [sum(by_model[m].get(day, 0) for m in rest) for day in days]
    return series


def usage_chart_svg(rows: list[UsageDayRow], *, last_day: date, days: int = 30) -> SafeString:
    span = [last_day - timedelta(days=days - 1 - i) for i in range(days)]
    series = daily_totals(rows, span)
    totals = [sum(values[i] for values in series.values()) for i in range(days)]
    top = _nice_ceiling(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / days
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="Tokens per day, last {days} days, by model" class="usage-chart">'
        )
    ]
    for i in range(5):  # grid lines and the scale
        value = top * i // 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{value:,}</text>"
        )
    for index, day in enumerate(span):
        x = LEFT + index * slot
        base: float = TOP + plot_h
        for color, (model, values) in zip(PALETTE, series.items(), strict=False):
            tokens = values[index]
            if not tokens:
                continue
            height = plot_h * tokens / top
            base -= height
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{base:.1f}" width="{slot - 2:.1f}" '
                f'height="{height:.1f}" fill="{color}"><title>{escape(day.isoformat())} '
                f"{escape(model)}: {tokens:,} tokens</title></rect>"
            )
        if index % 5 == 0 or index == days - 1:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
                f'font-size="11">{escape(day.strftime("%m-%d"))}</text>'
            )
    for n, (color, model) in enumerate(zip(PALETTE, series, strict=False)):
        x = LEFT + n * 110
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 5}" font-size="11">{escape(model[:16])}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every text above is escaped)


@dataclass
class DaySummary:
    day: date
    tokens: int = 0
    cost: Decimal = Decimal(0)
    requests: int = 0
    replies: int = 0
    degraded_replies: int = 0


def day_summaries(rows: list[UsageDayRow]) -> list[DaySummary]:
    """Per day (newest first), all models together."""
    days: dict[date, DaySummary] = {}
    for row in rows:
        found = days.setdefault(row.day, DaySummary(row.day))
        found.tokens += row.tokens
        found.cost += row.cost
        found.requests += row.requests
        found.replies += row.replies
        found.degraded_replies += row.degraded_replies
    return sorted(days.values(), key=lambda summary: summary.day, reverse=True)
