"""Figures of ``mailwarden report``: volume, verdicts, findings and anomaly scores over time.

:mod:`mailwarden.report.page` reads and aggregates the audit log; this module only draws, with
matplotlib's object API (``Figure``, no ``pyplot`` state, Agg rendering) so it is safe to call
from any thread. Time is cut into equal intervals chosen from the span of the log (5 minutes up to
a week); every figure is written even when the log has nothing to show for it, with a note saying
so, so the page layout never depends on the data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure

from mailwarden.report.rows import Row

FIGURES: tuple[tuple[str, str, str], ...] = (
    ("volume", "Volume", "Messages scored per interval, by direction."),
    ("verdicts", "Verdicts", "Policy verdicts per interval (in observe mode: what enforce mode "
                             "would have done)."),
    ("findings", "Findings", "Findings per interval for the most frequent finding types."),
    ("anomaly", "Sending-anomaly scores", "Score of every message (dots) with the interval's "
                                          "median and 95th percentile."),
)
VERDICT_COLOURS = {"accept": "#2ca02c", "quarantine": "#ff7f0e", "tempfail": "#9467bd",
                   "reject": "#d62728"}
STEPS = (timedelta(minutes=5), timedelta(hours=1), timedelta(days=1), timedelta(weeks=1))
MAX_BUCKETS = 200
TOP_TYPES = 8


def choose_step(rows: Sequence[Row]) -> timedelta:
    span = (rows[-1].at - rows[0].at) if rows else timedelta(0)
    for step in STEPS:
        if span / step <= MAX_BUCKETS:
            return step
    return STEPS[-1]


class Buckets:
    """Equal time intervals covering the rows (sorted by time)."""

    def __init__(self, rows: Sequence[Row]):
        self.step = choose_step(rows)
        seconds = self.step.total_seconds()
        first = rows[0].at.timestamp() if rows else 0.0
        self.origin = first - first % seconds
        self.index = [int((r.at.timestamp() - self.origin) // seconds) for r in rows]
        self.count = (max(self.index) + 1) if self.index else 1
        self.starts = [datetime.fromtimestamp(self.origin + i * seconds, UTC)
                       for i in range(self.count)]
        self.width = seconds / 86400.0  # matplotlib dates are in days

    def series(self, rows: Sequence[Row], select: Any) -> npt.NDArray[np.float64]:
        """Per interval, the sum of ``select(row)`` (a number)."""
        out = np.zeros(self.count)
        for i, row in zip(self.index, rows, strict=True):
            out[i] += select(row)
        return out


def _figure(title: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(10, 3.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")


def _save(fig: Figure, ax: Any, path: Path) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize="small")
    ax.tick_params(axis="x", labelrotation=25)
    fig.savefig(path, format="png")


Layer = tuple[str, "npt.NDArray[np.float64]", str | None]  # label, values, colour


def _stacked(ax: Any, b: Buckets, layers: list[Layer]) -> None:
    bottom = np.zeros(b.count)
    for label, values, colour in layers:
        ax.bar(b.starts, values, width=b.width, bottom=bottom, align="edge", label=label,
               color=colour)
        bottom += values


def volume(rows: Sequence[Row], b: Buckets, path: Path) -> None:
    fig, ax = _figure(f"Messages per {_step_name(b.step)}")
    if not rows:
        _empty(ax, "no messages in this log")
    directions = sorted({r.direction for r in rows})
    _stacked(ax, b, [(d, b.series(rows, lambda r, d=d: r.direction == d), None)
                     for d in directions])
    ax.set_ylabel("messages")
    _save(fig, ax, path)


def verdicts(rows: Sequence[Row], b: Buckets, path: Path) -> None:
    fig, ax = _figure(f"Verdicts per {_step_name(b.step)}")
    if not rows:
        _empty(ax, "no messages in this log")
    present = [v for v in VERDICT_COLOURS if any(r.verdict == v for r in rows)]
    _stacked(ax, b, [(v, b.series(rows, lambda r, v=v: r.verdict == v), VERDICT_COLOURS[v])
                     for v in present])
    ax.set_ylabel("messages")
    _save(fig, ax, path)


def findings(rows: Sequence[Row], b: Buckets, path: Path) -> None:
    fig, ax = _figure(f"Findings per {_step_name(b.step)}")
    totals: Counter[str] = Counter()
    for r in rows:
        for kind, count in r.findings:
            totals[kind] += count
    if not totals:
        _empty(ax, "no findings in this log")
    for kind, _ in totals.most_common(TOP_TYPES):
        series = b.series(rows, lambda r, k=kind: sum(c for t, c in r.findings if t == k))
        ax.plot(b.starts, series, marker="o", markersize=3, label=kind)
    ax.set_ylabel("findings")
    _save(fig, ax, path)


def anomaly(rows: Sequence[Row], b: Buckets, path: Path) -> None:
    fig, ax = _figure("Sending-anomaly score per message")
    scored = [(i, r) for i, r in zip(b.index, rows, strict=True) if r.anomaly is not None]
    if not scored:
        _empty(ax, "no sending-anomaly scores in this log (sending detector off?)")
    else:
        ax.scatter([r.at for _, r in scored], [r.anomaly for _, r in scored], s=6, alpha=0.35,
                   color="#1f77b4", label="message")
        per: dict[int, list[float]] = {}
        for i, r in scored:
            per.setdefault(i, []).append(float(r.anomaly or 0.0))
        keys = sorted(per)
        starts = [b.starts[i] + b.step / 2 for i in keys]
        ax.plot(starts, [np.median(per[i]) for i in keys], color="#2ca02c", label="median")
        ax.plot(starts, [np.percentile(per[i], 95) for i in keys], color="#d62728",
                label="95th percentile")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("score (0..1)")
    _save(fig, ax, path)


def _step_name(step: timedelta) -> str:
    return {300: "5 minutes", 3600: "hour", 86400: "day"}.get(int(step.total_seconds()), "week")


def draw_all(rows: Sequence[Row], out: Path) -> list[Path]:
    b = Buckets(rows)
    paths = []
    for (name, _, _), draw in zip(FIGURES, (volume, verdicts, findings, anomaly), strict=True):
        path = out / f"{name}.png"
        draw(rows, b, path)
        paths.append(path)
    return paths
