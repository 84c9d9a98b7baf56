"""Offline fitting of the content detector's score layer and of its operating threshold.

It sits inside :mod:`mailwarden.training.content.train`, after a type's text model was chosen: the
text model's out-of-fold probabilities on the training part (seeded stratified folds, so every score
comes from a model that did not see the message) and each document's phishing cues
(:mod:`mailwarden.detectors.content.phish_cues`) train a small L2 logistic layer
(:class:`mailwarden.detectors.content.stack.Stack`). The threshold is then read off out-of-fold
scores of that layer on the *real* ham of the training part (synthetic negatives excluded): the
lowest one that holds at most ``ham_budget`` of it. Neither the held-out split nor any evaluation
corpus is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from mailwarden.detectors.content.phish_cues import CUES
from mailwarden.detectors.content.portable import FloatArray, PortableModel
from mailwarden.detectors.content.stack import Stack, logit
from mailwarden.training.content import models as cm
from mailwarden.training.content.corpus import Doc

Array = npt.NDArray[Any]
HAM_BUDGET = 0.002
STACK_C = 1.0
TEXT_DROPOUT_WEIGHT = 0.5
STACKED_TYPES = ("spam", "phishing")


def oof_text(name: str, tokens: Sequence[Sequence[str]], y: Array, seed: int,
             folds: int) -> FloatArray:
    """Out-of-fold text probabilities of candidate ``name`` for every training document."""
    out = np.zeros(len(y), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + 1)
    for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
        pipe = cm.pipeline(name, seed).fit([tokens[i] for i in train_idx], y[train_idx])
        out[test_idx] = cm.positive_proba(pipe, [tokens[i] for i in test_idx])
    return out


def features(p_text: Sequence[float] | FloatArray, docs: Sequence[Doc]) -> Array:
    rows = [[logit(float(p)), *(1.0 if c in d.cues else 0.0 for c in CUES)]
            for p, d in zip(p_text, docs, strict=True)]
    return np.array(rows, dtype=np.float64).reshape(len(rows), 1 + len(CUES))


def fit_layer(x: Array, y: Array, seed: int) -> LogisticRegression:
    """The layer, fitted on ``x`` plus a copy of its positives whose text is unknown.

    On the training part the text model alone separates almost everything, so the cues would
    learn nothing. The copies stand for phishing whose words the text model has never seen (other
    languages, new themes): text log-odds set to 0 (p = 0.5), cues kept, so that the cues learn
    what they are worth when the words say nothing."""
    blind = x[y == 1].copy()
    blind[:, 0] = 0.0
    xs = np.vstack([x, blind])
    ys = np.concatenate([y, np.ones(len(blind), dtype=y.dtype)])
    weights = np.concatenate([np.ones(len(y)), np.full(len(blind), TEXT_DROPOUT_WEIGHT)])
    return LogisticRegression(C=STACK_C, solver="lbfgs", max_iter=2000,
                              random_state=seed).fit(xs, ys, sample_weight=weights)


def to_stack(layer: LogisticRegression, threshold: float) -> Stack:
    coef = [float(v) for v in layer.coef_[0]]
    return Stack(coef[0], dict(zip(CUES, coef[1:], strict=True)), float(layer.intercept_[0]),
                 threshold)


def oof_layer(x: Array, y: Array, seed: int, folds: int) -> FloatArray:
    out = np.zeros(len(y), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + 2)
    for train_idx, test_idx in splitter.split(x, y):
        out[test_idx] = fit_layer(x[train_idx], y[train_idx], seed).predict_proba(x[test_idx])[:, 1]
    return out


def budget_threshold(ham_scores: Sequence[float], budget: float) -> float:
    """The lowest threshold with at most ``budget`` of ``ham_scores`` strictly above it."""
    ordered = sorted((float(s) for s in ham_scores), reverse=True)
    allowed = math.floor(budget * len(ordered) + 1e-9)
    return ordered[allowed] if allowed < len(ordered) else 0.0


def fit_stack(name: str, tokens: Sequence[Sequence[str]], docs: Sequence[Doc], y: Array,
              seed: int, folds: int) -> tuple[Stack, dict[str, Any]]:
    """The score layer and its threshold, with the numbers behind the choice for the manifest."""
    p_oof = oof_text(name, tokens, y, seed, folds)
    x = features(p_oof, docs)
    stacked = oof_layer(x, y, seed, folds)
    real_ham = np.array([yy == 0 and not d.source.startswith("synthetic:")
                         for yy, d in zip(y, docs, strict=True)])
    threshold = budget_threshold(stacked[real_ham], HAM_BUDGET)
    stack = to_stack(fit_layer(x, y, seed), threshold)
    pos = stacked[y == 1]
    info = {
        "method": "L2 logistic layer (C=1) over [logit(p_text), cue indicators]; inputs are "
                  f"{folds}-fold out-of-fold text probabilities on the training part",
        "threshold_rule": f"lowest threshold holding <= {HAM_BUDGET:.1%} of the out-of-fold "
                          "layer scores of the training part's real ham (synthetic excluded)",
        "ham_budget": HAM_BUDGET, "threshold_ham_n": int(real_ham.sum()),
        "threshold_ham_held": float(np.mean(stacked[real_ham] > threshold)),
        "threshold_positive_held": float(np.mean(pos > threshold)) if len(pos) else None,
        "cue_rates": {c: [float(x[y == 1, i + 1].mean()), float(x[real_ham, i + 1].mean())]
                      for i, c in enumerate(CUES)},
    }
    return stack, info


def attach(kind: str, model: PortableModel, name: str, tokens: Sequence[Sequence[str]],
           docs: Sequence[Doc], y: Array, seed: int, folds: int) -> Stack | None:
    """Fit the layer of a :data:`STACKED_TYPES` type into ``model``'s manifest (else None)."""
    if kind not in STACKED_TYPES:
        return None
    stack, info = fit_stack(name, tokens, docs, y, seed, folds)
    model.manifest["stack"] = {**stack.as_manifest(), **info}
    return stack


def scores(model: PortableModel, stack: Stack | None, tokens: Sequence[Sequence[str]],
           docs: Sequence[Doc]) -> FloatArray:
    """The detector's final probabilities of ``docs`` (text model, then the layer if any)."""
    p = model.probabilities(tokens)
    if stack is None:
        return p
    return np.array([stack.probability(float(v), d.cues) for v, d in zip(p, docs, strict=True)],
                    dtype=np.float64)
