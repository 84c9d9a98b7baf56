"""Evaluation of the ``sending`` detector's models on histories with injected compromises.

For each history (a sending log or mail archive, or the synthetic organisation) the earlier part
trains the four models and the later part, with seeded scenarios injected by
:mod:`mailwarden.training.sending.scenarios`, measures them: ROC-AUC and accuracy over messages
(scenario messages against real ones), the share of real messages flagged (false-positive rate), and
per scenario the detection delay (position of the first flagged message). The shipped model in
``model_dir`` is measured on the same data. ``evaluate_from_args`` is the ``evaluate`` command's
hook; ``python -m mailwarden.training.sending.evaluate --suite report`` reproduces
``docs/sending-evaluation.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mailwarden.detectors.sending.anomaly_models import MODEL_KINDS, Array, Scorer, load_bundle
from mailwarden.detectors.sending.features import FeatureConfig, SendEvent
from mailwarden.detectors.sending.profile import OrgPrior
from mailwarden.training.sending.scenarios import KINDS, Labeled, inject
from mailwarden.training.sending.train import DEFAULT_SEED, build_prior, replay_features

THRESHOLD = 0.6
DELAY_LIMIT = 10


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

    @property
    def test(self) -> Array:
        return ~self.train

    def features_with(self, prior: OrgPrior, config: FeatureConfig) -> Array:
        return replay_features((item.event for item in self.labeled), prior, config)


def prepare(name: str, events: Sequence[SendEvent], timezone: str, seed: int,
            per_kind: int = 10, train_fraction: float = 0.7) -> Run:
    config = FeatureConfig(timezone=timezone)
    split_at = events[int(len(events) * train_fraction)].at
    history = [e for e in events if e.at < split_at]
    prior = build_prior(history, config)
    labeled = inject(list(events), seed, split_at, per_kind, timezone)
    x = replay_features((item.event for item in labeled), prior, config)
    return Run(name, config, labeled, x,
               np.array([item.event.at < split_at for item in labeled]),
               np.array([item.kind for item in labeled]),
               np.array([item.scenario for item in labeled]),
               np.array([item.position for item in labeled]))


def metrics(run: Run, anomaly: Array, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Message- and scenario-level measures of test-part scores ``anomaly``."""
    from sklearn.metrics import roc_auc_score

    kind, scen, pos = run.kind[run.test], run.scenario[run.test], run.position[run.test]
    y = kind != ""
    flag = anomaly > threshold
    tp, fp = int((flag & y).sum()), int((flag & ~y).sum())
    delays: dict[str, list[int]] = {k: [] for k in KINDS}
    for sid in np.unique(scen[y]):
        mask = scen == sid
        hits = pos[mask][flag[mask]]
        delays[str(kind[mask][0])].append(int(hits.min()) if hits.size else 10**6)
    every = [d for ds in delays.values() for d in ds]
    return {
        "roc_auc": float(roc_auc_score(y, anomaly)),
        "accuracy": float((flag == y).mean()),
        "balanced_accuracy": float((flag[y].mean() + (~flag[~y]).mean()) / 2),
        "precision": tp / max(tp + fp, 1), "recall": float(flag[y].mean()),
        "fp_rate": float(flag[~y].mean()), "real_messages": int((~y).sum()),
        "scenario_messages": int(y.sum()), "scenarios": len(every),
        "detected_within_10": float(np.mean([d <= DELAY_LIMIT for d in every])),
        "median_delay": _median_delay(every),
        "per_kind": {k: {"detected_within_10": float(np.mean([d <= DELAY_LIMIT for d in ds])),
                         "median_delay": _median_delay(ds)} for k, ds in delays.items() if ds},
    }


def _median_delay(delays: list[int]) -> float | None:
    found = [d for d in delays if d < 10**6]
    return float(np.median(found)) if found else None


def evaluate_run(run: Run, kinds: tuple[str, ...], seed: int,
                 shipped: Path | None = None) -> tuple[dict[str, Any], dict[str, Array]]:
    """Metrics per model (trained here, plus ``shipped/<kind>``) and their test scores."""
    from mailwarden.training.sending.fit import fit_scorers

    scorers: dict[str, Scorer] = fit_scorers(run.x[run.train], kinds, seed)
    scores = {kind: s.score(run.x[run.test]) for kind, s in scorers.items()}
    bare = fit_scorers(run.x[run.train], ("isolation_forest",), seed, guard=0.0)
    scores["isolation_forest (no range term)"] = bare["isolation_forest"].score(run.x[run.test])
    if shipped is not None and (shipped / "manifest.json").exists():
        bundle = load_bundle(shipped, kinds)
        x = run.features_with(OrgPrior.from_json(bundle.manifest["prior"]), run.config)
        for kind, s in bundle.scorers.items():
            scores[f"shipped/{kind}"] = s.score(x[run.test])
    return {name: metrics(run, a) for name, a in scores.items()}, scores


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sending flags that ``parser`` does not have yet (train may have added some)."""
    have = set(parser._option_string_actions)  # argparse has no public query
    group = parser.add_argument_group("sending-pattern evaluation")
    if "--sending" not in have:
        group.add_argument("--sending", action="append", metavar="PATH", default=None,
                           help="sending log CSV or mail source to evaluate on; repeatable")
    if "--timezone" not in have:
        group.add_argument("--timezone", default=None, help="time zone (default UTC)")
    if "--sending-model" not in have:
        group.add_argument("--sending-model", choices=(*MODEL_KINDS, "all"), default="all")
    if "--sending-seed" not in have:
        group.add_argument("--sending-seed", type=int, default=DEFAULT_SEED)
    if "--scenarios-per-kind" not in have:
        group.add_argument("--scenarios-per-kind", type=int, default=10)
    if "--sending-figures" not in have:
        group.add_argument("--sending-figures", action="store_true",
                           help="also draw PNG figures (needs matplotlib)")


def evaluate_from_args(args: argparse.Namespace, model_dir: Path,
                       report_dir: Path) -> dict[str, object]:
    """Evaluate on each ``--sending`` history; writes ``sending-evaluation.json``."""
    paths = getattr(args, "sending", None)
    if not paths:
        return {}
    from mailwarden.training.sending.data import load_events

    seed = getattr(args, "sending_seed", DEFAULT_SEED)
    choice = getattr(args, "sending_model", "all") or "all"
    kinds = MODEL_KINDS if choice == "all" else (choice,)
    results: dict[str, Any] = {}
    for path in paths:
        run = prepare(Path(path).name, load_events([path], seed),
                      getattr(args, "timezone", None) or "UTC", seed,
                      getattr(args, "scenarios_per_kind", 10))
        results[run.name], scores = evaluate_run(run, kinds, seed, Path(model_dir) / "sending")
        if getattr(args, "sending_figures", False):
            from mailwarden.training.sending.figures import draw_all

            draw_all(run, scores, Path(report_dir) / "figures" / "sending")
    write_report(Path(report_dir), results)
    return {"sending": results}


def write_report(report_dir: Path, results: dict[str, Any]) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, sort_keys=True)
    (report_dir / "sending-evaluation.json").write_text(text + "\n", "utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    from mailwarden.training.sending.suite import run_suite

    parser = argparse.ArgumentParser(prog="python -m mailwarden.training.sending.evaluate")
    parser.add_argument("--suite", choices=("tune", "report"), required=True)
    parser.add_argument("--corpora", type=Path, default=Path("/work/shared/corpora/sending"))
    parser.add_argument("--models", type=Path, default=Path("models/sending"))
    parser.add_argument("--report-dir", type=Path, required=True)
    parser.add_argument("--figures", action="store_true")
    args = parser.parse_args(argv)
    summary = run_suite(args.suite, args.corpora, args.models, args.report_dir, args.figures)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
