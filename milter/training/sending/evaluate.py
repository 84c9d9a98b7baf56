"""Evaluation of the ``sending`` detector's models on histories with injected compromises.

For each history (a sending log or mail archive, or the synthetic organisation) the earlier part
trains the four models and the later part, with seeded scenarios injected by
:mod:`mailwarden.training.sending.scenarios`, measures them: ROC-AUC and accuracy over messages
(scenario messages against real ones), the share of real messages flagged (false-positive rate), and
per scenario the detection delay (position of the first flagged message). The shipped model in
``model_dir`` is measured on the same data. ``evaluate_from_args`` is the ``evaluate`` command's
hook; ``python -m mailwarden.training.sending.suite --suite report`` reproduces
``docs/sending-evaluation.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from mailwarden.detectors.sending.anomaly_models import MODEL_KINDS, Array, Scorer, load_bundle
from mailwarden.detectors.sending.detector import LEARNING_MODEL
from mailwarden.detectors.sending.profile import OrgPrior
from mailwarden.detectors.sending.tails import HALF, Tails
from mailwarden.training.sending.runs import Run, prepare
from mailwarden.training.sending.scenarios import KINDS, NEGATIVE_KINDS
from mailwarden.training.sending.train import DEFAULT_SEED

THRESHOLD = 0.6
DELAY_LIMIT = 10


def metrics(run: Run, anomaly: Array, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Message- and scenario-level measures of test-part scores ``anomaly``."""
    from sklearn.metrics import roc_auc_score

    kind, scen, pos = run.kind[run.test], run.scenario[run.test], run.position[run.test]
    after = run.after[run.test]
    negative = np.isin(kind, NEGATIVE_KINDS) | after
    y = (kind != "") & ~negative
    flag = anomaly > threshold
    tp, fp = int((flag & y).sum()), int((flag & ~y & ~negative).sum())
    delays: dict[str, list[int]] = {k: [] for k in KINDS if k not in NEGATIVE_KINDS}
    for sid in np.unique(scen[y]):
        mask = scen == sid
        hits = pos[mask][flag[mask]]
        delays[str(kind[mask][0])].append(int(hits.min()) if hits.size else 10**6)
    every = [d for ds in delays.values() for d in ds]
    real = ~y & ~negative
    return {
        "roc_auc": float(roc_auc_score(y[~negative], anomaly[~negative])),
        "accuracy": float((flag == y)[~negative].mean()),
        "balanced_accuracy": float((flag[y].mean() + (~flag[real]).mean()) / 2),
        "precision": tp / max(tp + fp, 1), "recall": float(flag[y].mean()),
        "fp_rate": float(flag[real].mean()), "real_messages": int(real.sum()),
        "negatives": _negatives(kind, scen, flag, np.isin(kind, NEGATIVE_KINDS)),
        "fp_rate_after_scenario": float(flag[after].mean()) if after.any() else 0.0,
        "messages_after_scenario": int(after.sum()),
        "scenario_messages": int(y.sum()), "scenarios": len(every),
        "detected_within_10": float(np.mean([d <= DELAY_LIMIT for d in every])),
        "median_delay": _median_delay(every),
        "per_kind": {k: {"detected_within_10": float(np.mean([d <= DELAY_LIMIT for d in ds])),
                         "median_delay": _median_delay(ds)} for k, ds in delays.items() if ds},
    }


def _negatives(kind: Array, scen: Array, flag: Array, negative: Array) -> dict[str, Any]:
    """Per negative kind: scenarios with any message flagged, and the messages flagged."""
    out: dict[str, Any] = {}
    for name in NEGATIVE_KINDS:
        mask = negative & (kind == name)
        ids = np.unique(scen[mask])
        if ids.size:
            out[name] = {"scenarios": int(ids.size),
                         "scenarios_flagged": int(sum(flag[mask & (scen == i)].any() for i in ids)),
                         "messages": int(mask.sum()), "messages_flagged": int(flag[mask].sum())}
    return out


def _median_delay(delays: list[int]) -> float | None:
    found = [d for d in delays if d < 10**6]
    return float(np.median(found)) if found else None


def evaluate_run(run: Run, kinds: tuple[str, ...], seed: int, shipped: Path | None = None,
                 half: float = HALF) -> tuple[dict[str, Any], dict[str, Array]]:
    """Metrics per model (trained here, plus ``shipped/<kind>``) and their test scores."""
    from mailwarden.training.sending.fit import fit_scorers

    scorers: dict[str, Scorer] = fit_scorers(run.x[run.train], kinds, seed)
    tails = Tails.fit(run.dev[run.train], half)
    tail = tails.score(run.dev[run.test], ~run.trusted[run.test])[0]
    trusted = run.trusted[run.test]
    scores = {f"{kind} + tails": combine(s.score(run.x[run.test]), tail, trusted)
              for kind, s in scorers.items()}
    scores.update({kind: s.score(run.x[run.test]) for kind, s in scorers.items()})
    scores["tails alone"] = tail
    bare = fit_scorers(run.x[run.train], ("isolation_forest",), seed, guard=0.0)
    scores["isolation_forest (no range term)"] = bare["isolation_forest"].score(run.x[run.test])
    if shipped is not None and (shipped / "manifest.json").exists():
        scores.update(shipped_scores(run, shipped, kinds))
    return {name: metrics(run, a) for name, a in scores.items()}, scores


def combine(model: Array, tail: Array, trusted: Array) -> Array:
    """What the detector reports (:func:`mailwarden.detectors.sending.detector.combined`),
    vectorised."""
    return np.where(trusted, np.maximum(model, tail), np.maximum(tail, model * LEARNING_MODEL))


def shipped_scores(run: Run, shipped: Path, kinds: tuple[str, ...]) -> dict[str, Array]:
    """The shipped models (with the shipped tail model) on ``run``'s test part."""
    bundle = load_bundle(shipped, kinds)
    rows = run.rows_with(OrgPrior.from_json(bundle.manifest["prior"]), run.config)
    raw_tails = bundle.manifest.get("tails")
    tail = (Tails.from_json(raw_tails).score(rows.dev[run.test], ~rows.trusted[run.test])[0]
            if raw_tails
            else np.zeros(int(run.test.sum())))
    trusted = rows.trusted[run.test]
    return {f"shipped/{kind} + tails": combine(s.score(rows.x[run.test]), tail, trusted)
            for kind, s in bundle.scorers.items()}


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
