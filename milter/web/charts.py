"""Server-rendered SVG charts for the reports page (no script, no CDN).

:func:`verdict_chart` draws messages per interval stacked by verdict, on a time axis that starts
at the first interval holding a record and ends with the last one (the interval width comes from
:func:`mailwarden.report.plots.choose_step`, plus one-minute steps for logs spanning minutes), so
a log of a few minutes gets an axis of a few minutes. Labels are escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape

from mailwarden.report.rows import Row

COLOURS = {"accept": "#2ca02c", "quarantine": "#ff7f0e", "tempfail": "#9467bd",
           "reject": "#d62728"}
STEPS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=1), timedelta(days=1),
         timedelta(weeks=1))
MAX_BARS = 120
W, H, LEFT, BOTTOM, TOP = 760, 240, 48, 40, 12


def step_for(rows: Sequence[Row]) -> timedelta:
    span = rows[-1].at - rows[0].at if rows else timedelta(0)
    return next((s for s in STEPS if span / s <= MAX_BARS), STEPS[-1])


def buckets(rows: Sequence[Row]) -> tuple[datetime, timedelta, list[dict[str, int]]]:
    """(start of the first interval, interval, counts by verdict per interval)."""
    step = step_for(rows)
    seconds = step.total_seconds()
    first = rows[0].at.timestamp()
    origin = first - first % seconds
    count = int((rows[-1].at.timestamp() - origin) // seconds) + 1
    out: list[dict[str, int]] = [{} for _ in range(count)]
    for row in rows:
        cell = out[int((row.at.timestamp() - origin) // seconds)]
        cell[row.verdict] = cell.get(row.verdict, 0) + 1
    return datetime.fromtimestamp(origin, UTC), step, out


def verdict_chart(rows: Sequence[Row]) -> str:
    if not rows:
        return '<p class="empty">No audit records yet.</p>'
    start, step, cells = buckets(rows)
    peak = max(sum(c.values()) for c in cells) or 1
    width = (W - LEFT - 8) / len(cells)
    plot_h = H - BOTTOM - TOP
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
             f'aria-label="messages per {escape(_name(step))} by verdict">']
    for i, cell in enumerate(cells):
        y = float(H - BOTTOM)
        for verdict in sorted(cell, key=lambda v: list(COLOURS).index(v) if v in COLOURS else 9):
            h = cell[verdict] / peak * plot_h
            y -= h
            parts.append(f'<rect x="{LEFT + i * width:.1f}" y="{y:.1f}" '
                         f'width="{max(width - 1, 1):.1f}" height="{h:.1f}" '
                         f'fill="{COLOURS.get(verdict, "#888")}"><title>{escape(verdict)}: '
                         f'{cell[verdict]}</title></rect>')
    parts += _axes(start, step, len(cells), peak, width)
    parts.append("</svg>")
    return "".join(parts)


def _axes(start: datetime, step: timedelta, count: int, peak: int, width: float) -> list[str]:
    base = H - BOTTOM
    out = [f'<line x1="{LEFT}" y1="{base}" x2="{W - 8}" y2="{base}" stroke="#333"/>',
           f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#333"/>',
           f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end">{peak}</text>',
           f'<text x="{LEFT - 6}" y="{base}" text-anchor="end">0</text>']
    fmt = "%H:%M" if step < timedelta(days=1) else "%Y-%m-%d"
    ticks = sorted({0, count // 2, count - 1}) if count > 1 else [0]
    for i in ticks:
        label = (start + step * i).strftime(fmt)
        out.append(f'<text x="{LEFT + i * width + width / 2:.1f}" y="{base + 16}" '
                   f'text-anchor="middle">{escape(label)}</text>')
    span = f"{start:%Y-%m-%d %H:%M} to {start + step * count:%Y-%m-%d %H:%M} UTC"
    out.append(f'<text x="{LEFT}" y="{H - 6}">{escape(span)}, one bar per '
               f'{escape(_name(step))}</text>')
    return out


def _name(step: timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    return {1: "minute", 5: "5 minutes", 60: "hour", 1440: "day"}.get(minutes, "week")
