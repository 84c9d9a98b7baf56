"""One sending history prepared for evaluation: every message's features, labels and split.

:func:`prepare` splits a history by time (the earlier part trains), injects the seeded scenarios
of :mod:`mailwarden.training.sending.scenarios` into the later part and replays everything
through the detector's own feature code; :mod:`.evaluate` measures models on the result,
:mod:`.figures` draws it and :mod:`.suite` runs it over the tune and report datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mailwarden.detectors.sending.anomaly_models import Array
from mailwarden.detectors.sending.features import FeatureConfig, SendEvent
from mailwarden.detectors.sending.profile import OrgPrior
from mailwarden.training.sending.scenarios import NEGATIVE_KINDS, Labeled, inject
from mailwarden.training.sending.train import Rows, build_prior, replay_rows


@dataclass
class Run:
    """One history prepared for evaluation: features of every message, labels, split."""

    name: str
    config: FeatureConfig
    labeled: list[Labeled]
    x: Array
    train: Array
    kind: Array
    scenario: Array
    position: Array
    dev: Array  # per-behaviour deviations (sending_baseline.BEHAVIOURS)
    trusted: Array  # the sender's own baseline was trusted at that message
    after: Array  # a real message of a victim within 24 h of its scenario (see contaminated)

    @property
    def test(self) -> Array:
        return ~self.train

    def rows_with(self, prior: OrgPrior, config: FeatureConfig) -> Rows:
        return replay_rows((item.event for item in self.labeled), prior, config)


def prepare(name: str, events: Sequence[SendEvent], timezone: str, seed: int,
            per_kind: int = 10, train_fraction: float = 0.7) -> Run:
    config = FeatureConfig(timezone=timezone)
    split_at = events[int(len(events) * train_fraction)].at
    history = [e for e in events if e.at < split_at]
    prior = build_prior(history, config)
    labeled = inject(list(events), seed, split_at, per_kind, timezone)
    rows = replay_rows((item.event for item in labeled), prior, config)
    return Run(name, config, labeled, rows.x,
               np.array([item.event.at < split_at for item in labeled]),
               np.array([item.kind for item in labeled]),
               np.array([item.scenario for item in labeled]),
               np.array([item.position for item in labeled]), rows.dev, rows.trusted,
               contaminated(labeled))


def contaminated(labeled: list[Labeled], seconds: float = 86400.0) -> Array:
    """Real messages of a scenario's sender from its start to 24 h after its end: their 1 h and
    24 h windows hold the injected messages, and in service a sender hold would have held them.
    They are reported apart (``fp_rate_after_scenario``), not counted as false positives."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for item in labeled:
        if item.kind and item.kind not in NEGATIVE_KINDS:
            spans.setdefault(f"{item.event.sender}#{item.scenario}", []).append(
                (item.event.at, item.event.at))
    windows: dict[str, list[tuple[float, float]]] = {}
    for key, times in spans.items():
        sender = key.rpartition("#")[0]
        windows.setdefault(sender, []).append((min(t for t, _ in times),
                                               max(t for t, _ in times) + seconds))
    return np.array([not item.kind and any(a <= item.event.at <= b for a, b in
                                           windows.get(item.event.sender, ()))
                     for item in labeled])
