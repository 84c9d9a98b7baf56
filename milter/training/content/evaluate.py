"""Evaluation of the ``content`` models, and the ``mailwarden evaluate`` argument hooks.

It sits offline, after training: it loads the portable models exactly as the detector does, reads
labelled corpora (``--ham`` against ``--spam``, ``--phishing`` and ``--sensitive``, plus generated
held-out documents for ``sensitive``), scores every message through the detector's text path, and
writes metrics (accuracy, precision, recall, F1, ROC-AUC, average precision, confusion matrices) as
JSON and Markdown and PNG plots (:mod:`mailwarden.training.content.plots`). Optional checks for what
a model may be learning besides content: ``--content-holdout-only`` keeps only messages the models'
own split held out from training, ``--content-strip-headers`` scores the messages with every header
but Subject and MIME structure removed.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mailwarden.detectors.content.detector import (
    DEFAULT_THRESHOLD,
    TYPES,
    load_models,
    stacks,
    text_function,
)
from mailwarden.detectors.content.phish_cues import CUES
from mailwarden.detectors.content.portable import FloatArray, PortableModel
from mailwarden.detectors.content.textprep import TextPrep
from mailwarden.message import Message
from mailwarden.training.content import corpus
from mailwarden.training.content.lures import lure_docs
from mailwarden.training.content.models import binary_metrics
from mailwarden.training.content.synth import synthetic_docs
from mailwarden.training.content.train import add_corpus_arguments, add_flag, corpus_paths

KEEP_HEADERS = re.compile(rb"^(subject|mime-version|content-[a-z-]+):", re.IGNORECASE)
Docs = list[corpus.Doc]


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the corpus flags (if the train hook did not) and the content evaluation options."""
    add_corpus_arguments(parser)
    add_flag(parser, "--content-holdout-only", action="store_true", default=False,
             help="for corpora the models were trained on (manifest 'corpora'), keep only the "
             "messages their split held out")
    add_flag(parser, "--content-strip-headers", action="store_true", default=False,
             help="score messages with all headers but Subject and MIME ones removed")
    add_flag(parser, "--content-synthetic-sensitive", type=int, default=None, metavar="N",
             help="generated held-out documents for sensitive (and phishing lures; default 400)")
    add_flag(parser, "--content-plot-points", type=int, default=1500, metavar="N",
             help="messages in the t-SNE map (0: no map)")


def evaluate_from_args(args: argparse.Namespace, model_dir: Path,
                       report_dir: Path) -> dict[str, object]:
    """Evaluate the content models on the given corpora; {} without corpus flags."""
    paths = corpus_paths(args)
    if not any(paths.values()):
        return {}
    models = load_models(content_dir(model_dir))
    synthetic = getattr(args, "content_synthetic_sensitive", None)
    docs = load_corpora(paths, models, bool(getattr(args, "content_holdout_only", False)),
                        bool(getattr(args, "content_strip_headers", False)),
                        400 if synthetic is None else synthetic)
    report = evaluate(models, docs)
    report["options"] = {"holdout_only": bool(getattr(args, "content_holdout_only", False)),
                         "strip_headers": bool(getattr(args, "content_strip_headers", False))}
    write_reports(report, report_dir)
    points = int(getattr(args, "content_plot_points", 1500) or 0)
    from mailwarden.training.content.plots import draw_all  # matplotlib: evaluation-only dependency

    report["figures"] = draw_all(report, docs, report_dir, points, seed(models))
    write_reports(report, report_dir)
    return report


def content_dir(model_dir: Path) -> Path:
    """``model_dir/content`` when it holds the models, else ``model_dir`` itself."""
    nested = model_dir / "content"
    return nested if (nested / "spam.json").exists() else model_dir


def seed(models: dict[str, PortableModel]) -> int:
    return int(models["spam"].manifest.get("split", {}).get("seed", 0))


def load_corpora(paths: dict[str, list[str]], models: dict[str, PortableModel],
                 holdout_only: bool, strip: bool, synthetic: int) -> dict[str, Docs]:
    """Corpus name -> documents, with the held-out generated sets added when asked."""
    text = text_function()

    def stripped(message: Message) -> str:
        return text(corpus.message_from_bytes(strip_headers(message.raw)))

    reader = stripped if strip else text
    docs = {flag: corpus.load_docs(p, reader) for flag, p in paths.items() if p}
    split = models["spam"].manifest.get("split", {})
    if holdout_only:
        trained = {c for m in models.values() for c in m.manifest.get("corpora", ())}
        docs = {k: [d for d in v if k not in trained or corpus.is_held_out(
            d.digest, int(split["seed"]), int(split["holdout_percent"]))]
                for k, v in docs.items()}
    if synthetic > 0:
        base = int(split.get("seed", 0)) + 1
        docs["sensitive_synthetic"] = synthetic_docs(base, synthetic, "confidential", "all")
        docs["sensitive_unseen"] = synthetic_docs(base, synthetic, "confidential", "unseen")
        docs["benign_synthetic"] = synthetic_docs(base, synthetic, "benign", "all")
        docs["lures_unseen"] = lure_docs(base, synthetic, "unseen")
    return docs


def strip_headers(raw: bytes) -> bytes:
    """The message with every header except Subject, MIME-Version and Content-* removed."""
    head, sep, body = raw.partition(b"\n\n") if b"\r\n\r\n" not in raw[:65536] else \
        raw.partition(b"\r\n\r\n")
    kept: list[bytes] = []
    keep = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if keep:
                kept.append(line)
            continue
        keep = bool(KEEP_HEADERS.match(line))
        if keep:
            kept.append(line)
    return b"".join(kept) + sep + body


# Positive corpora and negative corpora compared for each type.
PAIRS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "spam": (("spam", ("ham",)),),
    "phishing": (("phishing", ("ham",)), ("lures_unseen", ("ham", "benign_synthetic"))),
    "sensitive": (("sensitive", ("ham", "benign_synthetic")),
                  ("sensitive_synthetic", ("ham", "benign_synthetic")),
                  ("sensitive_unseen", ("ham", "benign_synthetic"))),
}


def evaluate(models: dict[str, PortableModel], docs: dict[str, Docs]) -> dict[str, Any]:
    """Metrics per type and corpus pair, plus the firing rate of every type on every corpus."""
    prep = TextPrep()
    tokens = {name: [prep.tokens(d.text) for d in items] for name, items in docs.items()}
    scores = {kind: {name: model.probabilities(tokens[name]) for name in docs}
              for kind, model in models.items()}
    layers = stacks(models)
    for kind, stack in layers.items():
        scores[kind] = {name: np.array([stack.probability(float(p), d.cues) for p, d in zip(
            s, docs[name], strict=True)], dtype=np.float64) for name, s in scores[kind].items()}
    operating = {kind: layers[kind].threshold if kind in layers else DEFAULT_THRESHOLD
                 for kind in TYPES}
    report: dict[str, Any] = {"threshold": DEFAULT_THRESHOLD, "operating": operating, "corpora": {
        name: len(items) for name, items in docs.items()}, "models": {
        kind: _model_info(m) for kind, m in models.items()}, "results": {}, "firing": {},
        "cues": cue_rates(docs)}
    for kind in TYPES:
        report["results"][kind] = _pairs(kind, scores[kind], docs, operating[kind])
        report["firing"][kind] = {name: float(np.mean(s > operating[kind])) if len(s) else None
                                  for name, s in scores[kind].items()}
    report["scores"] = {kind: {n: s.tolist() for n, s in v.items()} for kind, v in scores.items()}
    return report


def cue_rates(docs: dict[str, Docs]) -> dict[str, dict[str, float]]:
    """Share of each corpus on which each cue fires."""
    return {name: {cue: float(np.mean([cue in d.cues for d in items])) for cue in CUES}
            for name, items in docs.items() if items}


def _pairs(kind: str, scores: dict[str, FloatArray], docs: dict[str, Docs],
           operating: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for positive, negatives in PAIRS[kind]:
        negs = [n for n in negatives if docs.get(n)]
        if not docs.get(positive) or not negs:
            continue
        p = np.concatenate([scores[positive], *(scores[n] for n in negs)])
        y = np.array([1] * len(scores[positive]) + [0] * (len(p) - len(scores[positive])))
        metrics = {str(t): binary_metrics(y, p, t) for t in (0.5, DEFAULT_THRESHOLD)}
        metrics["operating"] = binary_metrics(y, p, operating)
        out[f"{positive} vs {'+'.join(negs)}"] = metrics
    return out


def _model_info(model: PortableModel) -> dict[str, Any]:
    m = model.manifest
    return {key: m.get(key) for key in ("estimator", "trained_at", "training_data_sha256",
                                        "training_counts", "positives", "text_source")}


def write_reports(report: dict[str, Any], report_dir: Path) -> tuple[Path, Path]:
    """``content-metrics.json`` (without per-message scores) and ``content-metrics.md``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in report.items() if k != "scores"}
    json_path = report_dir / "content-metrics.json"
    json_path.write_text(json.dumps(public, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    md_path = report_dir / "content-metrics.md"
    md_path.write_text(markdown(public), encoding="utf-8")
    return json_path, md_path


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Content classifier evaluation", "",
             f"Corpora: {', '.join(f'{k} {v}' for k, v in report['corpora'].items())}.", "",
             "| type | positives vs negatives | n+ | n- | ROC-AUC | AP | F1@0.5 | P@0.9 | R@0.9 "
             "| F1@0.9 | confusion@0.9 (tn fp fn tp) | threshold | held | neg. held |",
             "|" + "---|" * 14]
    for kind, pairs in report["results"].items():
        for pair, by_t in pairs.items():
            lo, hi = by_t["0.5"], by_t[str(report["threshold"])]
            c = hi["confusion"]
            lines.append(f"| {kind} | {pair} | {hi['n_positive']} | {hi['n_negative']} | "
                         f"{_f(hi['roc_auc'])} | {_f(hi['average_precision'])} | {_f(lo['f1'])} | "
                         f"{_f(hi['precision'])} | {_f(hi['recall'])} | {_f(hi['f1'])} | "
                         f"{c['tn']} {c['fp']} {c['fn']} {c['tp']} | "
                         f"{_f(report['operating'][kind])} | {_f(by_t['operating']['recall'])} | "
                         f"{_f(1 - _specificity(by_t['operating']))} |")
    lines += ["", "Share of each corpus above each type's operating threshold:", "",
              "| corpus | " + " | ".join(report["firing"]) + " |",
              "|---|" + "---|" * len(report["firing"])]
    for name in report["corpora"]:
        rates = [_f(report["firing"][k].get(name)) for k in report["firing"]]
        lines.append(f"| {name} | " + " | ".join(rates) + " |")
    lines += ["", "Share of each corpus on which each cue fires:", "",
              "| corpus | " + " | ".join(CUES) + " |", "|---|" + "---|" * len(CUES)]
    for name, rates_by_cue in report.get("cues", {}).items():
        lines.append(f"| {name} | " + " | ".join(f"{rates_by_cue[c]:.3f}" for c in CUES) + " |")
    return "\n".join(lines) + "\n"


def _specificity(metrics: dict[str, Any]) -> float:
    c = metrics["confusion"]
    return c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] else 1.0


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mailwarden.training.content.evaluate --ham ... --models DIR --report DIR``."""
    parser = argparse.ArgumentParser(prog="mailwarden.training.content.evaluate",
                                     description=__doc__)
    add_evaluate_arguments(parser)
    parser.add_argument("--models", type=Path, required=True, help="model directory")
    parser.add_argument("--report", type=Path, required=True, help="report directory")
    args = parser.parse_args(argv)
    report = evaluate_from_args(args, args.models, args.report)
    if not report:
        parser.error("give --ham and at least one of --spam/--phishing/--sensitive")
    print((args.report / "content-metrics.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
