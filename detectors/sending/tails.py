"""Calibrated per-behaviour tail probabilities: one strong deviation counts on its own.

The Isolation Forest judges all 17 features together, so one strongly deviating behaviour (a 5x
rate spike to the usual recipients at the usual hours) is diluted among the normal ones. This
model takes the deviations of :mod:`mailwarden.detectors.sending.baseline` and, per behaviour,
the empirical distribution of that deviation over the training messages: below its 99.9th
percentile the tail probability is interpolated between the 50/90/99/99.9th percentiles, beyond it
the tail falls by one decade per ``slope`` (the 99th-to-99.9th percentile distance, with a floor).
The strongest behaviour's surprise ``-log10 p``, less ``log10`` of the number of behaviours
(Bonferroni), maps to 0..1 with 0.5 at ``half`` decades. The detector reports the larger of this
and the model's calibrated score. Fitted at training time, shipped in the model manifest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mailwarden.detectors.sending.anomaly_models import Array

QUANTILES = (0.5, 0.9, 0.99, 0.999)
_DECADES = np.array([-math.log10(1 - q) for q in QUANTILES])
MIN_SLOPE = 0.15
HALF = 2.5
STEEPNESS = 2.0
# A sender still learning is compared with the org's new senders, a coarser baseline: its
# deviations must be this many decades more surprising to count the same.
LEARNING_MARGIN = 1.0


@dataclass(frozen=True)
class Tails:
    """Per-behaviour quantile points and tail slopes; ``half`` and ``steepness`` map to 0..1."""

    points: Array  # (behaviours + 1, len(QUANTILES)), strictly increasing per row
    slopes: Array  # (behaviours + 1,); the last row calibrates the sum of the surprises
    half: float = HALF
    steepness: float = STEEPNESS

    def surprise(self, dev: Array) -> Array:
        """-log10 tail probability per deviation, plus one column for their calibrated sum
        (several moderate deviations at once); ``dev`` is (n, behaviours) or (behaviours,)."""
        d = np.atleast_2d(dev)
        single = _tail(d, self.points[:-1], self.slopes[:-1])
        joint = _tail(single.sum(axis=1, keepdims=True), self.points[-1:], self.slopes[-1:])
        return np.concatenate([single, joint], axis=1)

    def combine(self, surprise: Array, learning: Array | bool = False) -> tuple[Array, Array]:
        """(anomaly 0..1, index of the strongest single behaviour) per row of surprises."""
        s = np.atleast_2d(surprise)
        learn = np.broadcast_to(np.asarray(learning, dtype=bool), (s.shape[0],))
        # a newcomer's burst moves all rate behaviours a little at once: no joint column for it
        top = np.where(learn, s[:, :-1].max(axis=1), s.max(axis=1)) - math.log10(s.shape[1])
        half = self.half + LEARNING_MARGIN * learn
        z = np.clip(self.steepness * (top - half), -50, 50)
        return 1.0 / (1.0 + np.exp(-z)), s[:, :-1].argmax(axis=1)

    def score(self, dev: Array, learning: Array | bool = False) -> tuple[Array, Array]:
        return self.combine(self.surprise(dev), learning)

    def one(self, dev: Array, learning: bool = False) -> tuple[float, int]:
        """:meth:`score` of one row in plain Python (the detector's per-message path: numpy's
        per-call overhead on 8 values costs more than the arithmetic); equal to 1e-12."""
        rows = self._rows()
        single = [_tail_one(float(x), *rows[k]) for k, x in enumerate(dev)]
        joint = _tail_one(sum(single), *rows[-1])
        strongest = max(single)
        top = (strongest if learning else max(strongest, joint)) - math.log10(len(single) + 1)
        half = self.half + (LEARNING_MARGIN if learning else 0.0)
        z = min(max(self.steepness * (top - half), -50.0), 50.0)
        return 1.0 / (1.0 + math.exp(-z)), single.index(strongest)

    def _rows(self) -> list[tuple[list[float], float]]:
        cached: list[tuple[list[float], float]] | None = self.__dict__.get("_cache")
        if cached is None:
            cached = [(row.tolist(), float(slope)) for row, slope in zip(self.points,
                                                                          self.slopes,
                                                                          strict=True)]
            self.__dict__["_cache"] = cached
        return cached

    def with_half(self, half: float) -> Tails:
        return Tails(self.points, self.slopes, half, self.steepness)

    def as_json(self) -> dict[str, Any]:
        return {"quantiles": list(QUANTILES), "points": self.points.tolist(),
                "slopes": self.slopes.tolist(), "half": self.half,
                "steepness": self.steepness}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tails:
        return cls(np.array(data["points"], dtype=np.float64),
                   np.array(data["slopes"], dtype=np.float64),
                   float(data.get("half", HALF)), float(data.get("steepness", STEEPNESS)))

    @classmethod
    def fit(cls, dev: Array, half: float = HALF) -> Tails:
        """Quantile points and slopes of training deviations ``dev`` (n, behaviours)."""
        pts, slopes = _points(dev)
        total = _tail(dev, pts, slopes).sum(axis=1, keepdims=True)
        joint_pts, joint_slope = _points(total)
        return cls(np.vstack([pts, joint_pts]), np.concatenate([slopes, joint_slope]), half)


def _points(values: Array) -> tuple[Array, Array]:
    pts = np.quantile(values, QUANTILES, axis=0).T
    for k in range(1, pts.shape[1]):  # strictly increasing, for interpolation
        pts[:, k] = np.maximum(pts[:, k], pts[:, k - 1] + 1e-6)
    return pts, np.maximum(pts[:, -1] - pts[:, -2], MIN_SLOPE)


def _tail_one(x: float, pts: list[float], slope: float) -> float:
    if x > pts[-1]:
        return float(_DECADES[-1]) + (x - pts[-1]) / slope
    if x < pts[0]:
        return 0.0
    for i in range(len(pts) - 1):
        if x <= pts[i + 1]:
            lo, hi = float(_DECADES[i]), float(_DECADES[i + 1])
            return lo + (x - pts[i]) * (hi - lo) / (pts[i + 1] - pts[i])
    return float(_DECADES[-1])


def _tail(d: Array, points: Array, slopes: Array) -> Array:
    out = np.empty_like(d)
    for k in range(d.shape[1]):
        pts = points[k]
        inner = np.interp(d[:, k], pts, _DECADES, left=0.0)
        beyond = _DECADES[-1] + (d[:, k] - pts[-1]) / slopes[k]
        out[:, k] = np.where(d[:, k] > pts[-1], beyond, inner)
    return out
