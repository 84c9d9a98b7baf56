"""PNG figures of a content-model evaluation (evaluation-only: needs matplotlib).

Called by :mod:`mailwarden.training.content.evaluate` after the metrics are computed: confusion
matrices at the default threshold, ROC and precision-recall curves for every type and corpus pair,
and a t-SNE map of a bounded, seeded sample of the messages in a shared TF-IDF space (truncated SVD
to 50 dimensions first), coloured by corpus. matplotlib is imported here only, with the Agg backend,
so the scanner never needs it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from mailwarden.detectors.content.portable import FloatArray
from mailwarden.detectors.content.textprep import TextPrep
from mailwarden.training.content.corpus import Doc


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_all(report: dict[str, Any], docs: dict[str, list[Doc]], out: Path, points: int,
             seed: int) -> list[str]:
    """Draw every figure into ``out``; returns the file names."""
    out.mkdir(parents=True, exist_ok=True)
    names = [confusion_figure(report, out), curve_figure(report, out, "roc"),
             curve_figure(report, out, "pr")]
    if points > 0:
        names.append(tsne_figure(docs, out, points, seed))
    return names


def _pair_arrays(report: dict[str, Any], kind: str, pair: str) -> tuple[FloatArray, FloatArray]:
    positive, negatives = pair.split(" vs ")
    scores = report["scores"][kind]
    pos = np.asarray(scores[positive])
    neg = np.concatenate([np.asarray(scores[n]) for n in negatives.split("+")])
    return np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]


def confusion_figure(report: dict[str, Any], out: Path) -> str:
    plt = _pyplot()
    cells = [(k, p, m[str(report["threshold"])]["confusion"])
             for k, pairs in report["results"].items() for p, m in pairs.items()]
    fig, axes = plt.subplots(1, max(1, len(cells)), figsize=(3.2 * max(1, len(cells)), 3.4),
                             squeeze=False)
    for ax, (kind, pair, c) in zip(axes[0], cells, strict=False):
        matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=9)
        ax.set_xticks([0, 1], ["pred neg", "pred pos"], fontsize=7)
        ax.set_yticks([0, 1], ["true neg", "true pos"], fontsize=7)
        ax.set_title(f"{kind}\n{pair}", fontsize=7)
    fig.suptitle(f"Confusion matrices at p > {report['threshold']}", fontsize=9)
    fig.tight_layout()
    name = "confusion.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def curve_figure(report: dict[str, Any], out: Path, which: str) -> str:
    plt = _pyplot()
    kinds = list(report["results"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for pair, metrics in report["results"][kind].items():
            y, p = _pair_arrays(report, kind, pair)
            if which == "roc":
                fpr, tpr, _ = roc_curve(y, p)
                ax.plot(fpr, tpr, label=f"{pair} (AUC {metrics['0.5']['roc_auc']:.3f})")
                ax.set_xlabel("false positive rate")
                ax.set_ylabel("true positive rate")
                ax.set_xscale("symlog", linthresh=0.01)
            else:
                precision, recall, _ = precision_recall_curve(y, p)
                ax.plot(recall, precision,
                        label=f"{pair} (AP {metrics['0.5']['average_precision']:.3f})")
                ax.set_xlabel("recall")
                ax.set_ylabel("precision")
        ax.set_title(kind, fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle("ROC curves" if which == "roc" else "Precision-recall curves", fontsize=9)
    fig.tight_layout()
    name = f"{which}.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def tsne_figure(docs: dict[str, list[Doc]], out: Path, points: int, seed: int) -> str:
    """t-SNE of at most ``points`` messages (an equal seeded share of each corpus)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.manifold import TSNE

    plt = _pyplot()
    rng = random.Random(seed)
    share = max(1, points // max(1, len(docs)))
    sample = [(name, d) for name, items in sorted(docs.items())
              for d in rng.sample(items, k=min(share, len(items)))]
    prep = TextPrep()
    matrix = TfidfVectorizer(analyzer=lambda t: t, min_df=2, sublinear_tf=True).fit_transform(
        [prep.tokens(d.text) for _, d in sample])
    reduced = TruncatedSVD(n_components=min(50, matrix.shape[1] - 1),
                           random_state=seed).fit_transform(matrix)
    xy = TSNE(n_components=2, random_state=seed, init="pca", learning_rate="auto",
              perplexity=min(30.0, len(sample) / 4)).fit_transform(reduced)
    fig, ax = plt.subplots(figsize=(7, 6))
    labels = [name for name, _ in sample]
    for name in sorted(set(labels)):
        mask = np.array([label == name for label in labels])
        ax.scatter(xy[mask, 0], xy[mask, 1], s=5, alpha=0.6, label=f"{name} ({mask.sum()})")
    ax.legend(fontsize=7, markerscale=3)
    ax.set_title(f"t-SNE of TF-IDF features ({len(sample)} messages, seed {seed})", fontsize=9)
    fig.tight_layout()
    name = "tsne.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name
