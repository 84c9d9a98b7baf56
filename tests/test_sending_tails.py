"""The tail model: calibrated per-behaviour surprises, one row in Python equal to the batch."""

from __future__ import annotations

import numpy as np

from mailwarden.detectors.sending.tails import Tails


def fitted() -> tuple[Tails, np.ndarray]:
    rng = np.random.default_rng(3)
    train = rng.normal(size=(20_000, 7))
    return Tails.fit(train), rng.normal(scale=2.0, size=(500, 7))


def test_one_row_equals_the_batch_for_trusted_and_learning_senders() -> None:
    tails, rows = fitted()
    for learning in (False, True):
        batch, index = tails.score(rows, learning)
        for i, row in enumerate(rows):
            anomaly, k = tails.one(row, learning)
            assert abs(anomaly - batch[i]) < 1e-12 and k == index[i]


def test_one_strong_deviation_counts_and_ordinary_rows_do_not() -> None:
    tails, _ = fitted()
    ordinary = np.zeros(7)
    assert tails.one(ordinary)[0] < 0.01
    spike = ordinary.copy()
    spike[2] = 8.0  # one behaviour far past its 99.9th percentile, the others normal
    anomaly, index = tails.one(spike)
    assert anomaly > 0.99 and index == 2
    assert tails.one(spike, learning=True)[0] <= anomaly  # a newcomer needs more surprise


def test_round_trip_through_json() -> None:
    tails, rows = fitted()
    back = Tails.from_json(tails.as_json())
    assert np.array_equal(back.score(rows)[0], tails.score(rows)[0])
