"""Figures for the sending-pattern evaluation (PNG, matplotlib imported lazily).

Called by :mod:`mailwarden.training.sending.evaluate` with a prepared run and its per-model test
scores: a t-SNE map of test messages coloured by scenario kind, a pair plot of five key features,
and the score distribution of real against injected messages for each model. Evaluation only:
matplotlib (Debian ``python3-matplotlib``) is not a run-time dependency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mailwarden.detectors.sending.anomaly_models import Array
from mailwarden.detectors.sending.names import FEATURES
from mailwarden.training.sending.runs import Run
from mailwarden.training.sending.scenarios import KINDS

PAIR_FEATURES = ("msgs_1m", "recipients", "new_recipient_share", "hour_rarity",
                 "attachment_vs_usual")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _sample(run: Run, limit: int = 1500, seed: int = 0) -> tuple[Array, Array]:
    x, kind = run.x[run.test], run.kind[run.test]
    normal = np.flatnonzero(kind == "")
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.choice(normal, min(limit, normal.size), replace=False),
                           np.flatnonzero(kind != "")])
    return x[keep], kind[keep]


def _legend_groups() -> list[tuple[str, str]]:
    colours = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:green", "tab:olive",
               "tab:cyan", "tab:blue")
    return [("", "lightgrey"), *zip(KINDS, colours, strict=True)]


def draw_tsne(run: Run, path: Path) -> None:
    from sklearn.manifold import TSNE

    x, kind = _sample(run)
    xs = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    emb = TSNE(n_components=2, init="random", random_state=0, perplexity=30).fit_transform(xs)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    for label, colour in _legend_groups():
        m = kind == label
        ax.scatter(emb[m, 0], emb[m, 1], s=6, c=colour, label=label or "real message")
    ax.set_title(f"t-SNE of test messages: {run.name}")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def draw_pairs(run: Run, path: Path) -> None:
    x, kind = _sample(run, 800)
    cols = [FEATURES.index(f) for f in PAIR_FEATURES]
    plt = _pyplot()
    n = len(cols)
    fig, axes = plt.subplots(n, n, figsize=(11, 11))
    for i, ci in enumerate(cols):
        for j, cj in enumerate(cols):
            ax = axes[i][j]
            for label, colour in _legend_groups():
                m = kind == label
                if i == j:
                    ax.hist(x[m, ci], bins=30, color=colour, alpha=0.6, density=True)
                else:
                    ax.scatter(x[m, cj], x[m, ci], s=3, c=colour)
            ax.tick_params(labelsize=6)
            if i == n - 1:
                ax.set_xlabel(FEATURES[cj], fontsize=7)
            if j == 0:
                ax.set_ylabel(FEATURES[ci], fontsize=7)
    fig.suptitle(f"Feature pairs, real (grey) vs injected scenarios: {run.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def draw_scores(run: Run, scores: dict[str, Array], path: Path) -> None:
    names = [n for n in scores if "/" not in n and "(" not in n]
    y = run.kind[run.test] != ""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        bins = np.linspace(0, 1, 41)
        ax.hist(scores[name][~y], bins=bins, color="grey", alpha=0.7, density=True, label="real")
        ax.hist(scores[name][y], bins=bins, color="tab:red", alpha=0.6, density=True,
                label="injected")
        ax.axvline(0.6, color="black", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def draw_all(run: Run, scores: dict[str, Array], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "tsne.png", out / "pairs.png", out / "scores.png"]
    draw_tsne(run, paths[0])
    draw_pairs(run, paths[1])
    draw_scores(run, scores, paths[2])
    return paths
