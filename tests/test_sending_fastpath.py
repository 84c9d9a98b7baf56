"""The sending detector's per-message fast paths give exactly the reference results.

``Scorer.score_one`` (scalar calibration, interleaved-children forest walk) must equal the array
path ``score_scaled(scaled(x))`` bit for bit for every shipped model kind, including rows far
outside the training range, so the shipped models score exactly as they were evaluated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mailwarden.detectors.sending.anomaly_models import MODEL_KINDS, Calibration, load_bundle

REPO = Path(__file__).resolve().parent.parent
BUNDLE = load_bundle(REPO / "models" / "sending")


def rows() -> np.ndarray:
    """Feature rows around the training mean and far from it (beyond the training maxima,
    where the range term adds to the model's score)."""
    scorer = BUNDLE.scorers["isolation_forest"]
    rng = np.random.default_rng(11)
    typical = scorer.mean + scorer.scale * rng.normal(0.0, 0.2, (400, 17))
    extreme = scorer.mean + scorer.scale * rng.normal(0.0, 8.0, (200, 17))
    return np.vstack([typical, extreme, scorer.mean[None, :]])


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_score_one_equals_the_array_path_exactly(kind: str) -> None:
    scorer = BUNDLE.scorers[kind]
    seen = []
    for x in rows():
        expected = float(scorer.score_scaled(scorer.scaled(x))[0])
        anomaly, scaled = scorer.score_one(x)
        assert anomaly == expected
        assert np.array_equal(scaled, scorer.scaled(x))
        seen.append(anomaly)
    assert min(seen) < 0.5 < max(seen)  # both ordinary and anomalous rows were compared


def test_scalar_calibration_equals_the_array_calibration() -> None:
    cal = Calibration(median=0.4, high=0.61, quantile=0.995)
    raws = np.linspace(-2.0, 3.0, 2001)
    for extra in (0.0, 0.7, 55.0, -80.0):
        expected = cal(raws, extra)
        assert [cal.one(float(r), extra) for r in raws] == [float(v) for v in expected]


def test_forest_single_row_walk_matches_the_batch_walk() -> None:
    forest = BUNDLE.scorers["isolation_forest"].model
    xs = rows()
    batch = forest.raw(xs)
    single = np.array([forest.raw(xs[i : i + 1])[0] for i in range(len(xs))])
    assert np.max(np.abs(batch - single)) < 1e-12  # only the summation order differs


def test_profile_blob_layout_is_unchanged() -> None:
    """The recipient and domain tables are packed as before: (key, first, last) uint32 triples."""
    from mailwarden.detectors.sending.profile import Profile

    rcpts = {(i * 2654435761) % 2**32: (1_700_000_000 + i, 1_700_000_500 + i) for i in range(37)}
    domains = {i * 31: (1_700_000_000, 1_700_000_001 + i) for i in range(5)}
    profile = Profile(n=3, times=[1_700_000_000, 1_700_000_100], rcpts=rcpts, domains=domains)
    blob = profile.encode()
    reference = (np.array([(k, a, b) for k, (a, b) in rcpts.items()], dtype="<u4").tobytes()
                 + np.array([(k, a, b) for k, (a, b) in domains.items()], dtype="<u4").tobytes())
    assert blob.endswith(reference)
    again = Profile.decode(blob)
    assert again.rcpts == rcpts and again.domains == domains and again.encode() == blob


def test_webmail_answers_are_cached_and_equal_to_the_pattern_match() -> None:
    from mailwarden.detectors.sending.features import WEBMAIL_CACHE, FeatureConfig

    config = FeatureConfig()
    domains = ["gmail.com", "mail.yahoo.co.uk", "yahoo.fr", "example.org", "hotmail.de",
               "notgmail.com", "corp.example", "live.com", "gmx.net"] * 3
    assert [config.is_webmail(d) for d in domains] == [config._match_webmail(d) for d in domains]
    for i in range(WEBMAIL_CACHE + 10):
        config.is_webmail(f"host{i}.example")
    assert len(config._webmail) <= WEBMAIL_CACHE
