"""Training side of :mod:`mailwarden.detectors.sending.anomaly_models`: fit scikit-learn, make
models portable.

Only training and evaluation import this module (and scikit-learn); the milter scores with the
portable arrays. Each ``fit_*`` function fits one estimator on scaled feature rows and returns both
the estimator (for checks against scikit-learn) and its portable twin; :func:`fit_scorers` fits the
requested kinds, and calibrates each on held-out rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mailwarden.detectors.sending.anomaly_models import (
    AnomalyModel,
    Array,
    Calibration,
    PortableAutoencoder,
    PortableForest,
    PortableLOF,
    PortableOCSVM,
    Scorer,
    average_path_length,
)

FOREST_TREES, FOREST_SAMPLES = 200, 256
MAX_KERNEL_ROWS = 3000  # OCSVM and LOF fit (and score) cost grows with their training rows
GUARD = 0.5  # logits per training std a feature lies beyond its training maximum
CAL_QUANTILE = 0.998  # held-out training score mapped to 0.5 (chosen on the tune suite)
UPPER_QUANTILE = 0.999  # the range term starts here, not at the maximum (training has outliers)


def _node_depths(left: Array, right: Array) -> Array:
    depth = np.zeros(left.size, dtype=np.float64)
    for node in range(left.size):  # children always have larger ids than their parent
        if left[node] != -1:
            depth[left[node]] = depth[node] + 1
            depth[right[node]] = depth[node] + 1
    return depth


def forest_from_sklearn(forest: Any) -> PortableForest:
    feats, thr, lefts, rights, leaf, roots = [], [], [], [], [], []
    offset, max_depth = 0, 0
    for est, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
        tree = est.tree_
        n = int(tree.node_count)
        left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
        is_leaf = left == -1
        own = np.arange(n)
        mapped = np.asarray(features)[np.maximum(np.asarray(tree.feature), 0)]
        feats.append(np.where(is_leaf, 0, mapped))
        thr.append(np.where(is_leaf, 0.0, np.asarray(tree.threshold, dtype=np.float64)))
        lefts.append(np.where(is_leaf, own, left) + offset)
        rights.append(np.where(is_leaf, own, right) + offset)
        depth = _node_depths(left, right)
        samples = np.asarray(tree.n_node_samples, dtype=np.float64)
        leaf.append(np.where(is_leaf, depth + average_path_length(samples), 0.0))
        roots.append(offset)
        max_depth = max(max_depth, int(depth.max()))
        offset += n
    denominator = len(forest.estimators_) * float(
        average_path_length(np.array([forest.max_samples_]))[0])
    return PortableForest(np.concatenate(feats), np.concatenate(thr), np.concatenate(lefts),
                          np.concatenate(rights), np.concatenate(leaf), np.array(roots),
                          max_depth, denominator)


def fit_forest(xs: Array, seed: int) -> tuple[Any, PortableForest]:
    from sklearn.ensemble import IsolationForest

    est = IsolationForest(n_estimators=FOREST_TREES, max_samples=FOREST_SAMPLES,
                          random_state=seed, n_jobs=1)
    est.fit(xs)
    return est, forest_from_sklearn(est)


def fit_ocsvm(xs: Array, seed: int) -> tuple[Any, PortableOCSVM]:
    from sklearn.svm import OneClassSVM

    rows = _subsample(xs, seed)
    gamma = 1.0 / (rows.shape[1] * float(rows.var()))
    est = OneClassSVM(kernel="rbf", gamma=gamma, nu=0.02).fit(rows)
    return est, PortableOCSVM(est.support_vectors_, est.dual_coef_[0], gamma)


def fit_lof(xs: Array, seed: int) -> tuple[Any, PortableLOF]:
    from sklearn.neighbors import LocalOutlierFactor

    rows = _subsample(xs, seed)
    est = LocalOutlierFactor(n_neighbors=20, novelty=True, algorithm="brute").fit(rows)
    k = int(est.n_neighbors_)
    dist, _ = est.kneighbors(None, n_neighbors=k)  # the training rows, each without itself
    lrd = np.asarray(est._lrd)  # private, but in every scikit-learn since 0.20
    return est, PortableLOF(rows, lrd, dist[:, k - 1], k)


def fit_autoencoder(xs: Array, seed: int) -> tuple[Any, PortableAutoencoder]:
    from sklearn.neural_network import MLPRegressor

    rows = _subsample(xs, seed, 20000)
    width = xs.shape[1]
    est = MLPRegressor(hidden_layer_sizes=(width, 6, width), activation="tanh", alpha=1e-4,
                       max_iter=300, early_stopping=True, random_state=seed, tol=1e-5)
    est.fit(rows, rows)
    return est, PortableAutoencoder(list(est.coefs_), list(est.intercepts_), "tanh")


FITTERS: dict[str, Callable[[Array, int], tuple[Any, AnomalyModel]]] = {
    "isolation_forest": fit_forest, "ocsvm": fit_ocsvm, "lof": fit_lof,
           "autoencoder": fit_autoencoder}


def _subsample(xs: Array, seed: int, limit: int = MAX_KERNEL_ROWS) -> Array:
    if xs.shape[0] <= limit:
        return xs
    rng = np.random.default_rng(seed)
    return xs[np.sort(rng.choice(xs.shape[0], limit, replace=False))]


def fit_scaler(x: Array) -> tuple[Array, Array]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale < 1e-6, 1.0, scale)


def fit_scorers(x: Array, kinds: tuple[str, ...], seed: int = 0,
                holdout: float = 0.2, guard: float = GUARD) -> dict[str, Scorer]:
    """Fit each kind on a random (1 - holdout) of the rows, calibrate on the rest."""
    rng = np.random.default_rng(seed)
    calib = rng.random(x.shape[0]) < holdout
    mean, scale = fit_scaler(x[~calib])
    xs_fit, xs_cal = (x[~calib] - mean) / scale, (x[calib] - mean) / scale
    upper = np.quantile(xs_fit, UPPER_QUANTILE, axis=0)
    out: dict[str, Scorer] = {}
    for kind in kinds:
        _est, model = FITTERS[kind](xs_fit, seed)
        calibration = Calibration.fit(model.raw(xs_cal), CAL_QUANTILE)
        out[kind] = Scorer(kind, mean, scale, model, calibration, upper, guard)
    return out
