"""Portable anomaly models for the ``sending`` detector: numpy-only scoring, version-free files.

Training (:mod:`mailwarden.training.sending.fit`) fits scikit-learn's Isolation Forest, One-Class
SVM, LOF (novelty) or an MLP autoencoder and converts each into plain arrays; this module scores
with those arrays alone, so shipped models load on any scikit-learn (or none) and one message costs
a few vectorised numpy operations instead of scikit-learn's per-call validation. Every model gives
a raw score (higher = more anomalous) that a :class:`Calibration` maps to 0..1 against the score
distribution of held-out training messages. A :class:`Bundle` is one model directory: a JSON
manifest (features, scaler, org prior, calibration) plus one ``<model>.npz`` per model, read with
``allow_pickle=False``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
MODEL_KINDS = ("isolation_forest", "ocsvm", "lof", "autoencoder")
FORMAT = "mailwarden-sending/1"
MANIFEST = "manifest.json"


class AnomalyModel(Protocol):
    kind: str

    def raw(self, xs: Array) -> Array:
        """Raw anomaly scores (higher = more anomalous) of scaled rows, shape (n, d)."""
        ...

    def arrays(self) -> dict[str, Array]: ...


def average_path_length(n: Array) -> Array:
    """c(n): the mean depth of an unsuccessful search in a binary tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class PortableForest:
    """Isolation Forest as packed node arrays; all trees are walked together, level by level."""

    kind = "isolation_forest"

    def __init__(self, feature: Array, threshold: Array, left: Array,
                 right: Array, leaf_depth: Array, roots: Array, depth: int,
                 denominator: float) -> None:
        self.feature = np.ascontiguousarray(feature, dtype=np.intp)
        self.threshold = np.ascontiguousarray(threshold, dtype=np.float64)
        self.left = np.ascontiguousarray(left, dtype=np.intp)
        self.right = np.ascontiguousarray(right, dtype=np.intp)
        self.leaf_depth = np.ascontiguousarray(leaf_depth, dtype=np.float64)
        self.roots = np.ascontiguousarray(roots, dtype=np.intp)
        self.depth = int(depth)
        self.denominator = float(denominator)
        self._child = np.stack([self.left, self.right], axis=1).ravel()  # (left, right) pairs

    def raw(self, xs: Array) -> Array:
        # scikit-learn compares float32 inputs with float64 thresholds: do the same, bit for bit.
        x = np.asarray(xs, dtype=np.float32).astype(np.float64)
        if x.shape[0] == 1:
            return np.array([self._one(x[0])])
        rows = np.arange(x.shape[0])[:, None]
        nodes = np.broadcast_to(self.roots, (x.shape[0], self.roots.size))
        for _ in range(self.depth):
            go_left = x[rows, self.feature[nodes]] <= self.threshold[nodes]
            nodes = np.where(go_left, self.left[nodes], self.right[nodes])
        depths = self.leaf_depth[nodes].sum(axis=1)
        return np.asarray(2.0 ** (-depths / self.denominator))

    def _one(self, x: Array) -> float:
        nodes = self.roots
        feature, threshold, child = self.feature, self.threshold, self._child
        for _ in range(self.depth):  # children interleaved: right when x > threshold
            nodes = child[2 * nodes + (x[feature[nodes]] > threshold[nodes])]
        return float(2.0 ** (-self.leaf_depth[nodes].sum() / self.denominator))

    def arrays(self) -> dict[str, Array]:
        return {"feature": self.feature.astype(np.int32), "threshold": self.threshold,
                "left": self.left.astype(np.int32), "right": self.right.astype(np.int32),
                "leaf_depth": self.leaf_depth, "roots": self.roots.astype(np.int32),
                "depth": np.array(self.depth), "denominator": np.array(self.denominator)}


class PortableOCSVM:
    """RBF One-Class SVM: raw = -sum(dual_i * exp(-gamma * |x - sv_i|^2))."""

    kind = "ocsvm"

    def __init__(self, support: Array, dual: Array, gamma: float) -> None:
        self.support = np.asarray(support, dtype=np.float64)
        self.dual = np.asarray(dual, dtype=np.float64).ravel()
        self.gamma = float(gamma)

    def raw(self, xs: Array) -> Array:
        out = [self._chunk(xs[i : i + 512]) for i in range(0, xs.shape[0], 512)]
        return np.concatenate(out) if out else np.zeros(0)

    def _chunk(self, xs: Array) -> Array:
        d2 = ((xs[:, None, :] - self.support[None, :, :]) ** 2).sum(axis=2)
        return np.asarray(-(np.exp(-self.gamma * d2) @ self.dual))

    def arrays(self) -> dict[str, Array]:
        return {"support": self.support, "dual": self.dual, "gamma": np.array(self.gamma)}


class PortableLOF:
    """Local Outlier Factor (novelty): raw = mean lrd(neighbour) / lrd(x) over k neighbours."""

    kind = "lof"

    def __init__(self, points: Array, lrd: Array, kdist: Array, k: int) -> None:
        self.points = np.asarray(points, dtype=np.float64)
        self.lrd = np.asarray(lrd, dtype=np.float64)
        self.kdist = np.asarray(kdist, dtype=np.float64)
        self.k = int(k)

    def raw(self, xs: Array) -> Array:
        out = np.empty(xs.shape[0])
        for i, x in enumerate(np.asarray(xs, dtype=np.float64)):
            dist = np.sqrt(((self.points - x) ** 2).sum(axis=1))
            idx = np.argpartition(dist, self.k - 1)[: self.k]
            reach = np.maximum(dist[idx], self.kdist[idx])
            lrd_x = 1.0 / (reach.mean() + 1e-10)
            out[i] = float(np.mean(self.lrd[idx] / lrd_x))
        return out

    def arrays(self) -> dict[str, Array]:
        return {"points": self.points, "lrd": self.lrd, "kdist": self.kdist, "k": np.array(self.k)}


class PortableAutoencoder:
    """An MLP trained to reproduce its (scaled) input; raw = mean squared reconstruction error."""

    kind = "autoencoder"

    def __init__(self, weights: list[Array], biases: list[Array], activation: str):
        self.weights = [np.asarray(w, dtype=np.float64) for w in weights]
        self.biases = [np.asarray(b, dtype=np.float64) for b in biases]
        self.activation = activation

    def reconstruct(self, xs: Array) -> Array:
        a = np.asarray(xs, dtype=np.float64)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            a = a @ w + b
            if i < last:
                a = np.tanh(a) if self.activation == "tanh" else np.maximum(a, 0.0)
        return a

    def raw(self, xs: Array) -> Array:
        return np.asarray(((self.reconstruct(xs) - xs) ** 2).mean(axis=1))

    def arrays(self) -> dict[str, Array]:
        out: dict[str, Array] = {"activation_tanh": np.array(self.activation == "tanh")}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"w{i}"], out[f"b{i}"] = w, b
        return out


def _from_arrays(kind: str, a: dict[str, Array]) -> AnomalyModel:
    if kind == "isolation_forest":
        return PortableForest(a["feature"], a["threshold"], a["left"], a["right"],
                              a["leaf_depth"], a["roots"], int(a["depth"]),
                              float(a["denominator"]))
    if kind == "ocsvm":
        return PortableOCSVM(a["support"], a["dual"], float(a["gamma"]))
    if kind == "lof":
        return PortableLOF(a["points"], a["lrd"], a["kdist"], int(a["k"]))
    if kind == "autoencoder":
        layers = sum(1 for name in a if name.startswith("w"))
        activation = "tanh" if bool(a["activation_tanh"]) else "relu"
        return PortableAutoencoder([a[f"w{i}"] for i in range(layers)],
                                   [a[f"b{i}"] for i in range(layers)], activation)
    raise ValueError(f"unknown model kind {kind!r}")


@dataclass(frozen=True)
class Calibration:
    """Maps raw scores to 0..1: 0.5 at the ``quantile`` of held-out training scores, ~0.02 at
    their median; monotonic, so rankings (ROC-AUC) are those of the raw score."""

    median: float
    high: float
    quantile: float = 0.995

    def logit(self, raw: Array) -> Array:
        spread = max(self.high - self.median, 1e-12)
        return 4.0 * (np.asarray(raw, dtype=np.float64) - self.high) / spread

    def __call__(self, raw: Array, extra: Array | float = 0.0) -> Array:
        z = np.clip(self.logit(raw) + extra, -50, 50)
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def one(self, raw: float, extra: float = 0.0) -> float:
        """:meth:`__call__` for one score: the same operations, scalar (equal, and cheaper)."""
        spread = max(self.high - self.median, 1e-12)
        z = min(max(4.0 * (raw - self.high) / spread + extra, -50.0), 50.0)
        return float(1.0 / (1.0 + np.exp(np.float64(-z))))

    @classmethod
    def fit(cls, raw: Array, quantile: float = 0.995) -> Calibration:
        return cls(float(np.median(raw)), float(np.quantile(raw, quantile)), quantile)


@dataclass(frozen=True)
class Scorer:
    """Scaler + one portable model + calibration: feature rows in, anomaly 0..1 out.

    Tree, kernel and neighbour models cannot rank a point beyond the largest training value of
    a feature above that value itself (an Isolation Forest isolates both alike), so a burst far
    past anything seen in training would score like the most bursty normal message. The range
    term adds ``guard`` logits per training standard deviation by which a feature exceeds its
    training maximum (``upper``, in scaled units); ``guard = 0`` gives the bare model.
    """

    kind: str
    mean: Array
    scale: Array
    model: AnomalyModel
    calibration: Calibration
    upper: Array | None = None
    guard: float = 1.0

    def scaled(self, x: Array) -> Array:
        return (np.atleast_2d(x) - self.mean) / self.scale

    def excess(self, xs: Array) -> Array:
        if self.upper is None or not self.guard:
            return np.zeros(xs.shape[0])
        return np.asarray(np.maximum(xs - self.upper, 0.0).sum(axis=1) * self.guard)

    def score_scaled(self, xs: Array) -> Array:
        return self.calibration(self.model.raw(xs), self.excess(xs))

    def score(self, x: Array) -> Array:
        return self.score_scaled(self.scaled(x))

    def score_one(self, x: Array) -> tuple[float, Array]:
        """(anomaly, scaled row) of one feature vector, without batch calibration overhead."""
        xs = self.scaled(x)
        return self.calibration.one(float(self.model.raw(xs)[0]), float(self.excess(xs)[0])), xs


@dataclass(frozen=True)
class Bundle:
    """A loaded model directory."""

    manifest: dict[str, Any]
    scorers: dict[str, Scorer]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.manifest["features"])


def save_bundle(out: Path, manifest: dict[str, Any], scorers: dict[str, Scorer]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, Any] = {}
    for kind, scorer in scorers.items():
        np.savez_compressed(out / f"{kind}.npz", **scorer.model.arrays())
        cal = scorer.calibration
        models[kind] = {"file": f"{kind}.npz", "calibration": {
            "median": cal.median, "high": cal.high, "quantile": cal.quantile}}
    first = next(iter(scorers.values()))
    upper = first.upper.tolist() if first.upper is not None else None
    body = dict(manifest, format=FORMAT, models=models,
                scaler={"mean": first.mean.tolist(), "scale": first.scale.tolist(),
                        "upper": upper, "guard": first.guard})
    (out / MANIFEST).write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", "utf-8")


def load_bundle(directory: Path, kinds: tuple[str, ...] = MODEL_KINDS) -> Bundle:
    """Load the models of ``kinds`` present in ``directory``; raises OSError/ValueError."""
    manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text("utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{directory / MANIFEST}: not a {FORMAT} manifest")
    mean = np.array(manifest["scaler"]["mean"], dtype=np.float64)
    scale = np.array(manifest["scaler"]["scale"], dtype=np.float64)
    raw_upper = manifest["scaler"].get("upper")
    upper = None if raw_upper is None else np.array(raw_upper, dtype=np.float64)
    guard = float(manifest["scaler"].get("guard", 0.0))
    scorers: dict[str, Scorer] = {}
    for kind in kinds:
        entry = manifest["models"].get(kind)
        if entry is None:
            continue
        with np.load(directory / entry["file"], allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        cal = Calibration(**{k: float(v) for k, v in entry["calibration"].items()})
        scorers[kind] = Scorer(kind, mean, scale, _from_arrays(kind, arrays), cal, upper, guard)
    return Bundle(manifest, scorers)
