"""Portable anomaly models: equal to scikit-learn on real rows, fast for one row, safe files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from mailwarden.detectors.sending.anomaly_models import (
    Calibration,
    PortableForest,
    Scorer,
    load_bundle,
    save_bundle,
)
from mailwarden.detectors.sending.features import FeatureConfig
from mailwarden.detectors.sending.names import FEATURES
from mailwarden.training.sending.data import load_events
from mailwarden.training.sending.fit import (
    fit_autoencoder,
    fit_forest,
    fit_lof,
    fit_ocsvm,
    fit_scaler,
    fit_scorers,
    forest_from_sklearn,
)
from mailwarden.training.sending.train import build_prior, replay_features

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "sending"


@pytest.fixture(scope="module")
def real_rows() -> np.ndarray:
    """Scaled feature rows of the first 5,000 messages of the Enron sending log."""
    path = CORPUS / "enron_perry_wolfe.csv.gz"
    assert path.exists(), f"shared corpus missing: {path}"
    events = load_events([path], seed=1)[:5000]
    config = FeatureConfig(timezone="America/Los_Angeles")
    x = replay_features(events, build_prior(events, config), config)
    mean, scale = fit_scaler(x)
    return (x - mean) / scale


def test_real_rows_are_varied(real_rows: np.ndarray) -> None:
    assert real_rows.shape == (5000, len(FEATURES))
    assert (real_rows.std(axis=0) > 0).sum() >= len(FEATURES) - 2


def test_portable_forest_equals_sklearn_score_samples(real_rows: np.ndarray) -> None:
    est, portable = fit_forest(real_rows[:4000], seed=3)
    expected = -est.score_samples(real_rows)
    assert np.max(np.abs(portable.raw(real_rows) - expected)) < 1e-9
    for i in range(0, 5000, 97):  # the single-row path too
        assert abs(portable.raw(real_rows[i : i + 1])[0] - expected[i]) < 1e-9


def test_portable_forest_with_feature_subsets_equals_sklearn(real_rows: np.ndarray) -> None:
    est = IsolationForest(n_estimators=50, max_samples=128, max_features=0.5,
                          random_state=5).fit(real_rows[:3000])
    portable = forest_from_sklearn(est)
    assert np.max(np.abs(portable.raw(real_rows) + est.score_samples(real_rows))) < 1e-9


def test_forest_ranks_an_obvious_outlier_above_training_rows(real_rows: np.ndarray) -> None:
    _est, portable = fit_forest(real_rows, seed=0)
    outlier = real_rows[:1].copy()
    outlier[0, :] = real_rows.max(axis=0) + 5
    assert portable.raw(outlier)[0] > np.quantile(portable.raw(real_rows), 0.999)


def test_ocsvm_lof_autoencoder_equal_sklearn(real_rows: np.ndarray) -> None:
    train, test = real_rows[:2000], real_rows[3000:3600]
    est, svm = fit_ocsvm(train, seed=1)
    assert np.allclose(svm.raw(test), -est.score_samples(test), rtol=1e-9, atol=1e-9)
    est, lof = fit_lof(train, seed=1)
    assert np.allclose(lof.raw(test), -est.score_samples(test), rtol=1e-9, atol=1e-9)
    est, ae = fit_autoencoder(train, seed=1)
    expected = ((est.predict(test) - test) ** 2).mean(axis=1)
    assert np.allclose(ae.raw(test), expected, rtol=1e-9, atol=1e-12)


def test_single_row_forest_scoring_is_much_faster_than_sklearn(real_rows: np.ndarray) -> None:
    est, portable = fit_forest(real_rows, seed=0)
    row = real_rows[10:11]

    def best(fn: object, repeat: int = 30) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return min(times)

    ours = best(lambda: portable.raw(row))
    theirs = best(lambda: est.score_samples(row))
    assert ours * 3 < theirs, (ours, theirs)


def test_bundle_round_trip_without_pickle(tmp_path: Path, real_rows: np.ndarray) -> None:
    kinds = ("isolation_forest", "ocsvm", "lof", "autoencoder")
    scorers = fit_scorers(real_rows[:3000], kinds, seed=2)
    save_bundle(tmp_path, {"features": list(FEATURES), "prior": {}}, scorers)
    for kind in kinds:
        with np.load(tmp_path / f"{kind}.npz", allow_pickle=False) as data:
            assert all(data[name].dtype != object for name in data.files)
    loaded = load_bundle(tmp_path)
    assert set(loaded.scorers) == set(kinds)
    test = real_rows[3000:3300]
    for kind in kinds:
        assert np.array_equal(loaded.scorers[kind].score_scaled(test),
                              scorers[kind].score_scaled(test))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == "mailwarden-sending/1"


def test_load_refuses_foreign_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="manifest"):
        load_bundle(tmp_path)


def test_calibration_is_monotonic_and_centred_on_the_quantile() -> None:
    raw = np.random.default_rng(0).normal(size=10000)
    cal = Calibration.fit(raw, 0.995)
    assert abs(cal(np.array([np.quantile(raw, 0.995)]))[0] - 0.5) < 1e-9
    assert cal(np.array([np.median(raw)]))[0] < 0.05
    grid = np.linspace(-5, 5, 200)
    assert np.all(np.diff(cal(grid)) > 0)
    assert (cal(raw) > 0.6).mean() < 0.01


def test_range_term_raises_rows_beyond_the_training_maximum(real_rows: np.ndarray) -> None:
    scorer = fit_scorers(real_rows[:3000], ("isolation_forest",), seed=0)["isolation_forest"]
    upper = scorer.upper
    assert upper is not None
    at_max = np.minimum(real_rows[5:6], upper)
    at_max[0, 0] = upper[0]
    beyond = at_max.copy()
    beyond[0, 0] = upper[0] + 6.0
    bare = Scorer(scorer.kind, scorer.mean, scorer.scale, scorer.model, scorer.calibration,
                  upper, guard=0.0)
    # The forest alone cannot tell the two apart; the range term can.
    assert bare.score_scaled(beyond)[0] == pytest.approx(bare.score_scaled(at_max)[0])
    assert scorer.score_scaled(beyond)[0] > scorer.score_scaled(at_max)[0] + 0.05


def test_portable_forest_from_arrays_matches(real_rows: np.ndarray) -> None:
    _est, portable = fit_forest(real_rows[:2000], seed=4)
    arrays = portable.arrays()
    again = PortableForest(arrays["feature"], arrays["threshold"], arrays["left"],
                           arrays["right"], arrays["leaf_depth"], arrays["roots"],
                           int(arrays["depth"]), float(arrays["denominator"]))
    assert np.array_equal(again.raw(real_rows), portable.raw(real_rows))
