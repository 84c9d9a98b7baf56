"""Candidate estimators, model selection and binary metrics for the content classifiers.

It sits inside offline training and evaluation (:mod:`mailwarden.training.content.train`,
:mod:`mailwarden.training.content.evaluate`), never in the scan path: it builds the scikit-learn
pipelines that are compared (TF-IDF with multinomial or complement Naive Bayes, logistic regression,
a linear SVM with sigmoid calibration), runs the seeded cross-validation that picks one per type,
checks that the exported portable model reproduces the pipeline's probabilities, and computes the
metrics (accuracy, precision, recall, F1, ROC-AUC, average precision, confusion matrix) reported in
manifests and evaluation reports. Every estimator runs single-threaded with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import ComplementNB, MultinomialNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from mailwarden.detectors.content.portable import FloatArray, PortableModel, from_sklearn

CANDIDATE_NAMES = ("mnb", "cnb", "logreg", "svm")
VECTORIZER_PARAMS: dict[str, Any] = {
    "min_df": 2, "max_df": 0.95, "max_features": 20_000, "sublinear_tf": True,
    "norm": "l2", "use_idf": True, "smooth_idf": True,
}
Tokens = Sequence[str]
IntArray = npt.NDArray[np.int64]


def identity(tokens: Tokens) -> Tokens:
    """Analyzer for pre-tokenised documents (the tokens come from ``TextPrep``)."""
    return tokens


def vectorizer(analyzer: Any = identity) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer=analyzer, lowercase=False, dtype=np.float64,
                           **VECTORIZER_PARAMS)


def estimator(name: str, seed: int) -> Any:
    """A fresh candidate estimator; priors and class weights are balanced."""
    if name == "mnb":
        return MultinomialNB(alpha=0.1, fit_prior=False)
    if name == "cnb":
        return ComplementNB(alpha=0.3)
    if name == "logreg":
        return LogisticRegression(C=20.0, class_weight="balanced", solver="liblinear",
                                  max_iter=1000, random_state=seed)
    if name == "svm":
        svm = LinearSVC(C=0.5, class_weight="balanced", random_state=seed, max_iter=5000)
        return CalibratedClassifierCV(svm, method="sigmoid", cv=5, ensemble=False)
    raise ValueError(f"unknown candidate {name!r}")


def pipeline(name: str, seed: int, analyzer: Any = identity) -> Pipeline:
    return Pipeline([("tfidf", vectorizer(analyzer)), ("clf", estimator(name, seed))])


def positive_proba(pipe: Pipeline, docs: Sequence[Any]) -> FloatArray:
    proba = pipe.predict_proba(docs)
    column = list(pipe.classes_).index(1)
    return np.asarray(proba[:, column], dtype=np.float64)


def cross_validate(name: str, docs: Sequence[Tokens], y: IntArray, seed: int,
                   folds: int) -> dict[str, float]:
    """Mean ROC-AUC and average precision of one candidate over seeded stratified folds."""
    aucs: list[float] = []
    aps: list[float] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
        pipe = pipeline(name, seed).fit([docs[i] for i in train_idx], y[train_idx])
        p = positive_proba(pipe, [docs[i] for i in test_idx])
        aucs.append(float(roc_auc_score(y[test_idx], p)))
        aps.append(float(average_precision_score(y[test_idx], p)))
    return {"roc_auc": float(np.mean(aucs)), "average_precision": float(np.mean(aps)),
            "roc_auc_std": float(np.std(aucs))}


def select(names: Sequence[str], docs: Sequence[Tokens], y: IntArray, seed: int,
           folds: int) -> tuple[str, dict[str, dict[str, float]]]:
    """The best candidate by mean ROC-AUC, then average precision, then list order."""
    table = {name: cross_validate(name, docs, y, seed, folds) for name in names}
    best = max(names, key=lambda n: (round(table[n]["roc_auc"], 4),
                                     round(table[n]["average_precision"], 4), -names.index(n)))
    return best, table


def fit_export(kind: str, name: str, docs: Sequence[Tokens], y: IntArray, seed: int,
               manifest: dict[str, Any]) -> tuple[PortableModel, Pipeline]:
    """Fit one candidate on all of ``docs`` and export it to portable form."""
    pipe = pipeline(name, seed).fit(list(docs), y)
    model = from_sklearn(kind, pipe.named_steps["tfidf"], pipe.named_steps["clf"], manifest)
    return model, pipe


def max_difference(model: PortableModel, pipe: Pipeline, docs: Sequence[Tokens]) -> float:
    """Largest |portable - scikit-learn| probability over ``docs``."""
    if not docs:
        return 0.0
    ours = model.probabilities(docs)
    theirs = positive_proba(pipe, list(docs))
    return float(np.max(np.abs(ours - theirs)))


def binary_metrics(y: IntArray, p: FloatArray, threshold: float) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (at ``threshold``), ROC-AUC, AP and the confusion matrix."""
    y = np.asarray(y, dtype=np.int64)
    pred = (np.asarray(p) > threshold).astype(np.int64)
    tp = int(np.sum((pred == 1) & (y == 1)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = 0 < int(np.sum(y)) < len(y)
    return {
        "threshold": threshold, "n_positive": tp + fn, "n_negative": tn + fp,
        "accuracy": (tp + tn) / len(y) if len(y) else 0.0,
        "precision": precision, "recall": recall, "f1": f1,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "average_precision": float(average_precision_score(y, p)) if both else None,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }
