"""The shipped content models: manifests, size, and plausible scores on known corpus messages."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mailwarden.detectors.content.detector import TYPES, load_models, text_function
from mailwarden.detectors.content.textprep import FEATURE_SCHEMA, TextPrep
from mailwarden.files.sources import iter_sources
from mailwarden.training.content.corpus import (
    data_digest,
    is_held_out,
    load_docs,
    message_from_bytes,
    split,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "content"
CORPORA = Path(os.environ.get("MAILWARDEN_CORPORA", REPO.parent / "shared" / "corpora"))
SA = CORPORA / "spamassassin"
PHISHING = CORPORA / "phishing_pot" / "phishing_2019-2024.tar.gz"
needs_corpora = pytest.mark.skipif(not (SA / "spam.tar.gz").exists() or not PHISHING.exists(),
                                   reason="shared corpora not present")


def test_manifests_record_versions_schema_data_date_and_metrics() -> None:
    for kind in TYPES:
        manifest = json.loads((SHIPPED / f"{kind}.json").read_text(encoding="utf-8"))
        assert manifest["feature_schema"] == FEATURE_SCHEMA
        assert {"python", "numpy", "scikit-learn", "nltk"} <= set(manifest["library_versions"])
        assert re.fullmatch(r"[0-9a-f]{64}", manifest["training_data_sha256"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", manifest["trained_at"])
        assert manifest["metrics"]["export_max_abs_difference"] <= 1e-9
        assert manifest["metrics"]["held_out"]["0.5"]["roc_auc"] >= 0.98


def test_artefacts_are_small() -> None:
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 5 * 1024 * 1024


@pytest.fixture(scope="module")
def held_out() -> dict[str, list[list[str]]]:
    """Tokens of held-out SpamAssassin messages (per the manifest split) and of Phishing Pot."""
    models = load_models(SHIPPED)
    rule = models["spam"].manifest["split"]
    text, prep = text_function(), TextPrep()
    out: dict[str, list[list[str]]] = {}
    for name, path in (("ham", SA / "easy_ham.tar.gz"), ("spam", SA / "spam.tar.gz")):
        docs = [d for d in load_docs([path], text)
                if is_held_out(d.digest, rule["seed"], rule["holdout_percent"])]
        out[name] = [prep.tokens(d.text) for d in docs[:150]]
    sample = [r for i, r in enumerate(iter_sources([PHISHING])) if i % 25 == 0]
    out["phishing"] = [prep.tokens(text(message_from_bytes(r.data))) for r in sample]
    return out


@needs_corpora
def test_spam_model_separates_held_out_spam_from_ham(held_out: dict[str, list[list[str]]]) -> None:
    model = load_models(SHIPPED)["spam"]
    spam, ham = model.probabilities(held_out["spam"]), model.probabilities(held_out["ham"])
    assert np.median(spam) > 0.9 and np.median(ham) < 0.1
    assert roc_auc_score([1] * len(spam) + [0] * len(ham), np.r_[spam, ham]) > 0.97


@needs_corpora
def test_phishing_model_ranks_phishing_pot_above_ham(held_out: dict[str, list[list[str]]]) -> None:
    models = load_models(SHIPPED)
    phishing = models["phishing"].probabilities(held_out["phishing"])
    ham = models["phishing"].probabilities(held_out["ham"])
    assert roc_auc_score([1] * len(phishing) + [0] * len(ham), np.r_[phishing, ham]) > 0.95
    assert np.mean(models["sensitive"].probabilities(held_out["phishing"]) > 0.9) < 0.05


@needs_corpora
def test_spam_training_digest_matches_the_corpus() -> None:
    manifest = load_models(SHIPPED)["spam"].manifest
    rule = manifest["split"]
    docs = load_docs([SA / "easy_ham.tar.gz", SA / "hard_ham.tar.gz", SA / "spam.tar.gz"],
                     lambda m: "")
    train, _ = split(docs, rule["seed"], rule["holdout_percent"])
    assert data_digest(train) == manifest["training_data_sha256"]
