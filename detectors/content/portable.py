"""Version-independent content models: export from scikit-learn, save, load and score with numpy.

Training (:mod:`mailwarden.training.content.train`) fits a scikit-learn ``TfidfVectorizer`` plus a
binary linear classifier (multinomial or complement Naive Bayes, logistic regression, or a linear
SVM with sigmoid calibration); :func:`from_sklearn` reduces any of them to the same portable form: a
vocabulary, IDF weights and one linear scorer ``p = expit(slope * (x . w + bias) + offset)`` over
the l2-normalised TF-IDF vector ``x``. :func:`save` writes that as ``NAME.npz`` (plain arrays,
loadable with ``allow_pickle=False``, written byte-for-byte reproducibly) plus ``NAME.json`` (the
manifest: versions, feature schema, training-data digest, date, metrics). The ``content`` detector
loads it with :func:`load` and scores token lists with numpy only, whatever scikit-learn is
installed; a :class:`ModelSet` scores several models of one message with a single vocabulary lookup
per distinct token and gives exactly the scores of each model's own :meth:`probability`.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT = "mailwarden-portable-linear-tfidf"
FORMAT_VERSION = 1
FloatArray = npt.NDArray[np.float64]
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ModelFormatError(Exception):
    """An artefact is missing, unreadable or of another format or feature schema."""


@dataclass(frozen=True, eq=False)
class PortableModel:
    """One binary content model (e.g. spam vs ham) in portable form."""

    name: str
    terms: tuple[str, ...]
    idf: FloatArray
    weights: FloatArray
    bias: float
    slope: float = 1.0
    offset: float = 0.0
    sublinear_tf: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.terms)
        if self.idf.shape != (n,) or self.weights.shape != (n,):
            raise ModelFormatError(f"{self.name}: array shapes do not match {n} terms")
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.terms)})

    def decision(self, tokens: Iterable[str] | Mapping[str, int]) -> float:
        """The linear score ``x . w + bias`` for a token list or a token -> count mapping."""
        counted = tokens if isinstance(tokens, Mapping) else Counter(tokens)
        counts = {i: n for i, n in ((self.index.get(t), n) for t, n in counted.items())
                  if i is not None}
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        return self.linear(idx, tf)

    def linear(self, idx: npt.NDArray[np.int64], tf: FloatArray) -> float:
        """``x . w + bias`` for term indices ``idx`` (distinct) with raw counts ``tf``."""
        if not idx.size:
            return self.bias
        if self.sublinear_tf:
            tf = np.log(tf) + 1.0
        x = tf * self.idf[idx]
        norm = math.sqrt(float(np.dot(x, x)))
        if norm == 0.0:
            return self.bias
        return float(np.dot(x / norm, self.weights[idx])) + self.bias

    def probability(self, tokens: Iterable[str] | Mapping[str, int]) -> float:
        """The positive-class probability (spam, phishing, sensitive) of tokens or counts."""
        return self.squash(self.decision(tokens))

    def probabilities(self, documents: Iterable[Sequence[str]]) -> FloatArray:
        return np.array([self.probability(doc) for doc in documents], dtype=np.float64)

    def squash(self, decision: float) -> float:
        """The probability for a linear score from :meth:`decision` or :meth:`linear`."""
        return _expit(self.slope * decision + self.offset)


class ModelSet:
    """Several models over one shared vocabulary index (read-only after construction).

    Scoring a message looks each distinct token up once in the union of the vocabularies, then
    gathers every model's own term indices with one numpy take: the same indices, counts and
    order as :meth:`PortableModel.decision`, so the probabilities are bit-for-bit the same.
    """

    def __init__(self, models: Mapping[str, PortableModel]) -> None:
        self.models = dict(models)
        union: dict[str, int] = {}
        for model in self.models.values():
            for term in model.terms:
                union.setdefault(term, len(union))
        self.index = union
        self._local: dict[str, npt.NDArray[np.int64]] = {}
        for name, model in self.models.items():
            local = np.full(len(union), -1, dtype=np.int64)
            local[[union[t] for t in model.terms]] = np.arange(len(model.terms))
            self._local[name] = local

    def probabilities(self, counts: Mapping[str, int]) -> dict[str, float]:
        """Each model's probability for token counts (``{token: count}``, in token order)."""
        get = self.index.get
        ids = np.array([get(t, -1) for t in counts], dtype=np.int64)
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        known = ids >= 0
        ids, tf = ids[known], tf[known]
        out: dict[str, float] = {}
        for name, model in self.models.items():
            local = self._local[name][ids]
            keep = local >= 0
            out[name] = model.squash(model.linear(local[keep], tf[keep]))
        return out


def _expit(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def from_sklearn(
    name: str, vectorizer: Any, estimator: Any, manifest: dict[str, Any] | None = None
) -> PortableModel:
    """Reduce a fitted ``TfidfVectorizer`` and binary classifier to a :class:`PortableModel`."""
    if getattr(vectorizer, "norm", None) != "l2" or not getattr(vectorizer, "use_idf", False):
        raise ModelFormatError("only l2-normalised TF-IDF vectorizers are portable")
    vocabulary: dict[str, int] = vectorizer.vocabulary_
    terms = tuple(sorted(vocabulary, key=vocabulary.__getitem__))
    weights, bias, slope, offset = linear_form(estimator)
    return PortableModel(
        name=name,
        terms=terms,
        idf=np.asarray(vectorizer.idf_, dtype=np.float64),
        weights=weights,
        bias=bias,
        slope=slope,
        offset=offset,
        sublinear_tf=bool(vectorizer.sublinear_tf),
        manifest=dict(manifest or {}),
    )


def linear_form(estimator: Any) -> tuple[FloatArray, float, float, float]:
    """(weights, bias, slope, offset) giving the estimator's positive-class probability."""
    kind = type(estimator).__name__
    if len(getattr(estimator, "classes_", ())) != 2:
        raise ModelFormatError(f"{kind}: only binary classifiers are portable")
    if kind == "MultinomialNB":
        flp = np.asarray(estimator.feature_log_prob_, dtype=np.float64)
        prior = np.asarray(estimator.class_log_prior_, dtype=np.float64)
        return flp[1] - flp[0], float(prior[1] - prior[0]), 1.0, 0.0
    if kind == "ComplementNB":
        flp = np.asarray(estimator.feature_log_prob_, dtype=np.float64)
        return flp[1] - flp[0], 0.0, 1.0, 0.0
    if kind in ("LogisticRegression", "LinearSVC", "SGDClassifier"):
        return (*_coef(estimator), 1.0, 0.0)
    if kind == "CalibratedClassifierCV":
        return _calibrated(estimator)
    raise ModelFormatError(f"{kind}: no portable form")


def _coef(estimator: Any) -> tuple[FloatArray, float]:
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    return coef[0].copy(), float(np.asarray(estimator.intercept_, dtype=np.float64)[0])


def _calibrated(estimator: Any) -> tuple[FloatArray, float, float, float]:
    members = estimator.calibrated_classifiers_
    if len(members) != 1 or getattr(estimator, "method", "") != "sigmoid":
        raise ModelFormatError("CalibratedClassifierCV must use ensemble=False, method='sigmoid'")
    member = members[0]
    base = getattr(member, "estimator", None) or member.base_estimator
    weights, bias = _coef(base)
    calibrator = member.calibrators[0]
    # scikit-learn's sigmoid calibration: p = expit(-(a * f + b)).
    return weights, bias, -float(calibrator.a_), -float(calibrator.b_)


def save(model: PortableModel, directory: Path) -> tuple[Path, Path]:
    """Write ``NAME.npz`` (deterministic bytes) and ``NAME.json``; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "terms": np.frombuffer("\n".join(model.terms).encode("utf-8"), dtype=np.uint8),
        "idf": model.idf,
        "weights": model.weights,
        "params": np.array([model.bias, model.slope, model.offset], dtype=np.float64),
        "sublinear_tf": np.array([int(model.sublinear_tf)], dtype=np.int8),
    }
    npz_path = directory / f"{model.name}.npz"
    npz_path.write_bytes(_npz_bytes(arrays))
    manifest = {**model.manifest, "format": FORMAT, "format_version": FORMAT_VERSION,
                "name": model.name, "terms": len(model.terms), "arrays": npz_path.name}
    json_path = directory / f"{model.name}.json"
    json_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return npz_path, json_path


def _npz_bytes(arrays: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(  # type: ignore[no-untyped-call]
                member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def load(directory: Path, name: str, feature_schema: str | None = None) -> PortableModel:
    """Load ``NAME.json`` + ``NAME.npz`` from ``directory``; check format and feature schema."""
    json_path = directory / f"{name}.json"
    try:
        manifest = json.loads(json_path.read_text(encoding="utf-8"))
        with np.load(directory / f"{name}.npz", allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{name}: cannot read model in {directory}: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ModelFormatError(f"{name}: not a {FORMAT} v{FORMAT_VERSION} artefact")
    if feature_schema is not None and manifest.get("feature_schema") != feature_schema:
        raise ModelFormatError(
            f"{name}: feature schema {manifest.get('feature_schema')!r} != {feature_schema!r}")
    return _from_arrays(name, arrays, manifest)


def _from_arrays(name: str, arrays: dict[str, Any], manifest: dict[str, Any]) -> PortableModel:
    try:
        text = bytes(arrays["terms"].astype(np.uint8)).decode("utf-8")
        bias, slope, offset = (float(v) for v in arrays["params"])
        return PortableModel(
            name=name,
            terms=tuple(text.split("\n")) if text else (),
            idf=np.asarray(arrays["idf"], dtype=np.float64),
            weights=np.asarray(arrays["weights"], dtype=np.float64),
            bias=bias,
            slope=slope,
            offset=offset,
            sublinear_tf=bool(arrays["sublinear_tf"][0]),
            manifest=manifest,
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{name}: malformed arrays: {exc}") from exc
