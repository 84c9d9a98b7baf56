"""Training of the ``content`` detector's models, and the ``mailwarden train`` argument hooks.

It sits offline, before the detector: labelled corpora (:mod:`mailwarden.training.content.corpus`)
are turned into token lists by the detector's own text path and :class:`TextPrep`, split by content
hash into training and held-out parts, and for each type (``spam``, ``phishing``, ``sensitive``,
each against ham) the TF-IDF linear candidates of :mod:`mailwarden.training.content.models` are
compared by seeded cross-validation on the training part only. The best one is refitted on the
training part, exported to the portable format, checked against the scikit-learn pipeline it came
from, given its score layer and threshold for spam and phishing
(:mod:`mailwarden.training.content.stacking`), scored on the held-out part and saved with its
manifest. Positives when no corpus is given: the phishing-like part of the spam corpus for
``phishing``, :mod:`mailwarden.training.content.synth` for ``sensitive``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mailwarden.detectors.content.detector import DEFAULT_THRESHOLD, text_function, text_source
from mailwarden.detectors.content.portable import save
from mailwarden.detectors.content.textprep import FEATURE_SCHEMA, TextPrep
from mailwarden.training.content import corpus, stacking
from mailwarden.training.content import models as cm
from mailwarden.training.content.lures import lure_docs
from mailwarden.training.content.lures_i18n import add_foreign
from mailwarden.training.content.synth import synthetic_docs

CORPUS_FLAGS = ("ham", "spam", "phishing", "sensitive")
EXPORT_TOLERANCE = 1e-9
Docs = list[corpus.Doc]
# (seed, count, phrasing, real ham texts to quote) -> generated documents
Generator = Callable[[int, int, str, Sequence[str]], Docs]


@dataclass
class TrainConfig:
    seed: int = 20021010
    holdout_percent: int = 25
    synthetic_sensitive: int = 1200
    synthetic_phishing: int = 800
    synthetic_foreign: int = 400  # pt/es/de/fr lures, and as many benign mails (content_lures_i18n)
    phishing_from_spam: str = "all"  # "all", "cues" (phishing-like part) or "none"
    candidates: tuple[str, ...] = cm.CANDIDATE_NAMES
    folds: int = 5
    trained_at: str = ""  # one date for every artefact of a run; set by train()


@dataclass
class TypeData:
    """Positives and negatives of one type, split, with a note on where they came from."""

    kind: str
    train_pos: Docs
    train_neg: Docs
    test_pos: Docs
    test_neg: Docs
    origin: str
    corpora: list[str] = field(default_factory=list)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--ham/--spam/--phishing/--sensitive PATH`` (repeatable) and content options."""
    add_corpus_arguments(parser)
    add_flag(parser, "--content-seed", type=int, default=None,
             help="seed of the content split, folds and generator (default 20021010)")
    add_flag(parser, "--content-holdout", type=int, default=None, metavar="PERCENT",
             help="percent of each corpus held out from content training (default 25)")
    add_flag(parser, "--content-synthetic-sensitive", type=int, default=None, metavar="N",
             help="synthetic confidential documents to generate (default 1200; 0: none)")
    add_flag(parser, "--content-synthetic-phishing", type=int, default=None, metavar="N",
             help="synthetic phishing lures to generate (default 800; 0: none)")
    add_flag(parser, "--content-phishing-from-spam", choices=("all", "cues", "none"),
             default=None, help="without --phishing, use all of --spam (default), only its "
             "phishing-like part, or none of it as phishing positives")


def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    for flag in CORPUS_FLAGS:
        add_flag(parser, f"--{flag}", action="append", metavar="PATH",
                 help=f"{flag} messages: .eml, folder, maildir, mbox or tar archive (repeatable)")


def add_flag(parser: argparse.ArgumentParser, flag: str, **kwargs: Any) -> None:
    """Add a flag unless another hook already did (train and evaluate share the corpus flags)."""
    if flag not in parser._option_string_actions:  # argparse has no public way to ask
        parser.add_argument(flag, **kwargs)


def corpus_paths(args: argparse.Namespace) -> dict[str, list[str]]:
    return {flag: list(getattr(args, flag, None) or []) for flag in CORPUS_FLAGS}


def train_from_args(args: argparse.Namespace, out_dir: Path) -> dict[str, object]:
    """Train the content models from the parsed flags into ``out_dir``; {} without corpus flags."""
    paths = corpus_paths(args)
    if not any(paths.values()):
        return {}
    config = TrainConfig()
    for attr, name in (("content_seed", "seed"), ("content_holdout", "holdout_percent"),
                       ("content_synthetic_sensitive", "synthetic_sensitive"),
                       ("content_synthetic_phishing", "synthetic_phishing"),
                       ("content_phishing_from_spam", "phishing_from_spam")):
        if getattr(args, attr, None) is not None:
            setattr(config, name, getattr(args, attr))
    return train(paths, out_dir, config)


def train(paths: dict[str, list[str]], out_dir: Path, config: TrainConfig) -> dict[str, object]:
    """Train every type that has positives (each against ham); returns a summary per type."""
    if not paths.get("ham"):
        raise ValueError("content training needs --ham (the negatives of every type)")
    config.trained_at = config.trained_at or trained_at()
    text = text_function()
    # Sorted by digest: the same messages train the same model whatever archive holds them.
    docs = {flag: sorted(corpus.load_docs(p, text), key=lambda d: d.digest)
            for flag, p in paths.items() if p}
    tokens = TokenCache(TextPrep())
    summary: dict[str, object] = {"out_dir": str(out_dir), "seed": config.seed}
    for data in type_data(docs, config):
        data.corpora = sorted(docs)
        summary[data.kind] = train_type(data, tokens, out_dir, config)
    return summary


class TokenCache:
    """Tokens per document digest, computed once per training run."""

    def __init__(self, prep: TextPrep) -> None:
        self._prep = prep
        self._cache: dict[str, list[str]] = {}

    def __call__(self, docs: Sequence[corpus.Doc]) -> list[list[str]]:
        for doc in docs:
            if doc.digest not in self._cache:
                self._cache[doc.digest] = self._prep.tokens(doc.text)
        return [self._cache[doc.digest] for doc in docs]


def type_data(docs: dict[str, Docs], config: TrainConfig) -> list[TypeData]:
    """Positives and negatives of each type that can be trained from ``docs``."""
    part = {k: corpus.split(v, config.seed, config.holdout_percent) for k, v in docs.items()}
    ham_train, ham_test = part["ham"]
    out: list[TypeData] = []
    if "spam" in part:
        out.append(TypeData("spam", part["spam"][0], ham_train, part["spam"][1], ham_test,
                            "spam corpus"))
    phishing = phishing_data(part, config)
    if phishing is not None:
        out.append(phishing)
    sensitive = sensitive_data(part, config)
    if sensitive is not None:
        out.append(sensitive)
    return [d for d in out if d.train_pos and d.train_neg]


def phishing_data(part: dict[str, tuple[Docs, Docs]], config: TrainConfig) -> TypeData | None:
    """A --phishing corpus, else spam as a proxy (all or its phishing-like part), plus lures."""
    empty: tuple[Docs, Docs] = ([], [])
    if "phishing" in part:
        pos, origin = part["phishing"], "phishing corpus"
    elif config.phishing_from_spam == "cues":
        spam = part.get("spam", empty)
        pos = (corpus.phishing_like(spam[0]), corpus.phishing_like(spam[1]))
        origin = f"phishing-like part of the spam corpus (>= {corpus.PHISHING_MIN_CUES} cues)"
    elif config.phishing_from_spam == "all":
        pos, origin = part.get("spam", empty), "spam corpus as a proxy"
    else:
        pos, origin = empty, "none"
    n = config.synthetic_phishing
    data = TypeData("phishing", list(pos[0]), list(part["ham"][0]), list(pos[1]),
                    list(part["ham"][1]), origin)
    if n > 0:
        data.origin += " + synthetic lures (content_lures) vs synthetic benign business mail"
        _add_synthetic(data, part, config, n, _lures, "benign")
    if config.synthetic_foreign > 0:
        data.origin += " + pt/es/de/fr lures vs benign mail (content_lures_i18n)"
        add_foreign(config.seed, config.synthetic_foreign, (data.train_pos, data.train_neg),
                    (data.test_pos, data.test_neg))
    return data if data.train_pos else None


def _add_synthetic(data: TypeData, part: dict[str, tuple[Docs, Docs]], config: TrainConfig,
                   n: int, positives: Generator, negative_kind: str) -> None:
    """Generated positives and negatives: training seed ``seed``, held-out seed ``seed + 1``."""
    for seed, pos, neg, ham, count, phrasing in (
            (config.seed, data.train_pos, data.train_neg, part["ham"][0], n, "train"),
            (config.seed + 1, data.test_pos, data.test_neg, part["ham"][1], n // 3, "all")):
        texts = [d.text for d in ham]
        pos.extend(positives(seed, count, phrasing, texts))
        neg.extend(synthetic_docs(seed, count, negative_kind, phrasing, texts))


def sensitive_data(part: dict[str, tuple[Docs, Docs]], config: TrainConfig) -> TypeData | None:
    """Synthetic confidential mail (plus any --sensitive corpus) against ham, spam and benign."""
    n = config.synthetic_sensitive
    given = part.get("sensitive", ([], []))
    if n <= 0 and not given[0]:
        return None
    spam = part.get("spam", ([], []))
    data = TypeData("sensitive", list(given[0]), [*part["ham"][0], *spam[0]], list(given[1]),
                    [*part["ham"][1], *spam[1]], "synthetic confidential vs benign business mail"
                    " (content_synth), ham and spam")
    if n > 0:
        _add_synthetic(data, part, config, n, confidential_docs, "benign")
    return data


def _lures(seed: int, count: int, phrasing: str, ham_texts: Sequence[str]) -> Docs:
    return lure_docs(seed, count, phrasing)


def confidential_docs(seed: int, count: int, phrasing: str, ham_texts: Sequence[str]) -> Docs:
    return synthetic_docs(seed, count, "confidential", phrasing, ham_texts)


def train_type(data: TypeData, tokens: Callable[[Sequence[corpus.Doc]], list[list[str]]],
               out_dir: Path, config: TrainConfig) -> dict[str, object]:
    """Select, fit, export, verify, evaluate and save one type's model."""
    train_docs = [*data.train_pos, *data.train_neg]
    y = np.array([1] * len(data.train_pos) + [0] * len(data.train_neg))
    x = tokens(train_docs)
    best, table = cm.select(config.candidates, x, y, config.seed, config.folds)
    manifest = base_manifest(data, train_docs, best, config)
    model, pipe = cm.fit_export(data.kind, best, x, y, config.seed, manifest)
    diff = cm.max_difference(model, pipe, x)
    if diff > EXPORT_TOLERANCE:
        raise RuntimeError(f"{data.kind}: portable export differs from scikit-learn by {diff}")
    stack = stacking.attach(data.kind, model, best, x, train_docs, y, config.seed, config.folds)
    test_docs = [*data.test_pos, *data.test_neg]
    test_y = np.array([1] * len(data.test_pos) + [0] * len(data.test_neg))
    p = stacking.scores(model, stack, tokens(test_docs), test_docs)
    cuts = (0.5, DEFAULT_THRESHOLD) if stack is None else (0.5, DEFAULT_THRESHOLD, stack.threshold)
    held_out = {str(t): cm.binary_metrics(test_y, p, t) for t in cuts}
    model.manifest["metrics"] = {"cross_validation": table, "export_max_abs_difference": diff,
                                 "held_out": held_out}
    save(model, out_dir)
    return {"estimator": best, "train": [len(data.train_pos), len(data.train_neg)],
            "held_out_auc": held_out["0.5"]["roc_auc"], "cv": table}


def base_manifest(data: TypeData, docs: Docs, best: str, config: TrainConfig) -> dict[str, Any]:
    return {
        "kind": data.kind,
        "estimator": type(cm.estimator(best, config.seed)).__name__,
        "candidate": best,
        "estimator_params": repr(cm.estimator(best, config.seed)),
        "vectorizer": dict(cm.VECTORIZER_PARAMS),
        "feature_schema": FEATURE_SCHEMA,
        "text_source": text_source(),
        "positives": data.origin,
        "corpora": data.corpora,
        "training_counts": {"positive": len(data.train_pos), "negative": len(data.train_neg)},
        "held_out_counts": {"positive": len(data.test_pos), "negative": len(data.test_neg)},
        "training_data_sha256": corpus.data_digest(docs),
        "split": {"rule": corpus.SPLIT_RULE, "seed": config.seed,
                  "holdout_percent": config.holdout_percent},
        "library_versions": library_versions(),
        "trained_at": config.trained_at,
    }


def library_versions() -> dict[str, str]:
    import nltk
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "nltk": nltk.__version__}


def trained_at() -> str:
    """UTC training time; ``SOURCE_DATE_EPOCH`` (reproducible builds) overrides the clock."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(
        dt.UTC)
    return when.replace(microsecond=0).isoformat()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mailwarden.training.content.train --ham ... --spam ... --out DIR`` (until the
    CLI)."""
    parser = argparse.ArgumentParser(prog="mailwarden.training.content.train", description=__doc__)
    add_train_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    summary = train_from_args(args, args.out)
    if not summary:
        parser.error("give at least --ham and one of --spam/--phishing/--sensitive")
    for kind, value in summary.items():
        print(f"{kind}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
