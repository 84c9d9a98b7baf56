"""The calibrated score layer of the ``content`` detector: text log-odds plus phishing cues.

It sits between the portable text models (:mod:`mailwarden.detectors.content.portable`) and the
detector's findings (:mod:`mailwarden.detectors.content.detector`): a model whose manifest carries a
``stack`` table gets its final probability from a small logistic layer ``p = expit(a *
clip(logit(p_text)) + sum(w_cue * fired) + b)`` over the text model's log-odds and the cue
indicators of :mod:`mailwarden.detectors.content.phish_cues`, and its operating threshold from the
same table (chosen offline for a stated share of held-out ham). Plain numbers in JSON: nothing
depends on the scikit-learn version that trained it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

LOGIT_CLIP = 20.0


class StackFormatError(ValueError):
    """A manifest's ``stack`` table is malformed."""


@dataclass(frozen=True, slots=True)
class Stack:
    text_coef: float
    cue_coef: Mapping[str, float]
    intercept: float
    threshold: float

    def probability(self, p_text: float, cues: Collection[str]) -> float:
        z = self.text_coef * logit(p_text) + self.intercept
        z += sum(w for cue, w in self.cue_coef.items() if cue in cues)
        return expit(z)

    def features(self) -> tuple[str, ...]:
        return tuple(self.cue_coef)

    def as_manifest(self) -> dict[str, Any]:
        return {"text_coef": self.text_coef, "cue_coef": dict(self.cue_coef),
                "intercept": self.intercept, "threshold": self.threshold}


def from_manifest(manifest: Mapping[str, Any]) -> Stack | None:
    """The manifest's ``stack`` layer, None when it has none."""
    table = manifest.get("stack")
    if table is None:
        return None
    try:
        cues = {str(k): float(v) for k, v in dict(table["cue_coef"]).items()}
        stack = Stack(float(table["text_coef"]), cues, float(table["intercept"]),
                      float(table["threshold"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise StackFormatError(f"bad stack table: {exc}") from exc
    if not 0.0 <= stack.threshold <= 1.0:
        raise StackFormatError(f"stack threshold {stack.threshold} outside [0, 1]")
    return stack


def logit(p: float) -> float:
    if p <= 0.0:
        return -LOGIT_CLIP
    if p >= 1.0:
        return LOGIT_CLIP
    return max(-LOGIT_CLIP, min(LOGIT_CLIP, math.log(p / (1.0 - p))))


def expit(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
