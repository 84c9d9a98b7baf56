"""The portable model format: exact agreement with scikit-learn, save/load, format checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from mailwarden.detectors.content.detector import fallback_text
from mailwarden.detectors.content.portable import ModelFormatError, from_sklearn, load, save
from mailwarden.detectors.content.textprep import FEATURE_SCHEMA, TextPrep
from mailwarden.training.content import models as cm
from mailwarden.training.content.corpus import load_docs

REPO = Path(__file__).resolve().parent.parent
CORPORA = Path(os.environ.get("MAILWARDEN_CORPORA", REPO.parent / "shared" / "corpora"))
SA = CORPORA / "spamassassin"
needs_corpora = pytest.mark.skipif(not (SA / "spam.tar.gz").exists(),
                                   reason="shared SpamAssassin corpus not present")


@pytest.fixture(scope="module")
def real_texts() -> tuple[list[str], list[int], list[str]]:
    """Real corpus texts: 240 for training (160 ham, 80 spam) and 160 others for scoring."""
    ham = [d.text for d in load_docs([SA / "easy_ham.tar.gz"], fallback_text)][:240]
    spam = [d.text for d in load_docs([SA / "spam.tar.gz"], fallback_text)][:160]
    train = ham[:160] + spam[:80]
    labels = [0] * 160 + [1] * 80
    return train, labels, ham[160:] + spam[80:]


@needs_corpora
@pytest.mark.parametrize("candidate", cm.CANDIDATE_NAMES)
def test_portable_scores_equal_the_sklearn_pipeline(
        candidate: str, real_texts: tuple[list[str], list[int], list[str]]) -> None:
    train, labels, others = real_texts
    prep = TextPrep()
    pipe = cm.pipeline(candidate, seed=3, analyzer=prep.tokens).fit(train, np.array(labels))
    model = from_sklearn("spam", pipe.named_steps["tfidf"], pipe.named_steps["clf"])
    ours = np.array([model.probability(prep.tokens(t)) for t in others])
    theirs = cm.positive_proba(pipe, others)
    assert np.max(np.abs(ours - theirs)) <= 1e-9
    assert theirs.min() < 0.5 < theirs.max()  # the comparison covers both classes


def _tiny_model() -> tuple[TfidfVectorizer, LogisticRegression, list[list[str]]]:
    docs = [["cheap", "pill", "!"], ["meet", "agenda"], ["cheap", "offer"], ["agenda", "notes"]]
    vec = cm.vectorizer()
    vec.set_params(min_df=1, max_df=1.0)
    x = vec.fit_transform(docs)
    clf = LogisticRegression(random_state=0).fit(x, [1, 0, 1, 0])
    return vec, clf, docs


def test_save_load_round_trip_is_exact_and_deterministic(tmp_path: Path) -> None:
    vec, clf, docs = _tiny_model()
    model = from_sklearn("spam", vec, clf, {"feature_schema": FEATURE_SCHEMA})
    npz, _ = save(model, tmp_path / "a")
    save(model, tmp_path / "b")
    assert npz.read_bytes() == (tmp_path / "b" / "spam.npz").read_bytes()
    with np.load(npz, allow_pickle=False) as data:
        assert set(data.files) == {"terms", "idf", "weights", "params", "sublinear_tf"}
    loaded = load(tmp_path / "a", "spam", FEATURE_SCHEMA)
    assert loaded.terms == model.terms
    for doc in [*docs, ["unknown"], []]:
        assert loaded.probability(doc) == model.probability(doc)


def test_unknown_tokens_only_give_the_bias_probability() -> None:
    vec, clf, _ = _tiny_model()
    model = from_sklearn("spam", vec, clf)
    expected = 1.0 / (1.0 + np.exp(-clf.intercept_[0]))
    assert model.probability(["never", "seen"]) == pytest.approx(expected, abs=1e-12)


def test_load_refuses_other_feature_schema_and_format(tmp_path: Path) -> None:
    vec, clf, _ = _tiny_model()
    save(from_sklearn("spam", vec, clf, {"feature_schema": "other-v9"}), tmp_path)
    with pytest.raises(ModelFormatError, match="feature schema"):
        load(tmp_path, "spam", FEATURE_SCHEMA)
    (tmp_path / "spam.json").write_text('{"format": "pickle"}', encoding="utf-8")
    with pytest.raises(ModelFormatError, match="not a"):
        load(tmp_path, "spam")
    with pytest.raises(ModelFormatError, match="cannot read"):
        load(tmp_path, "phishing")


def test_export_refuses_multiclass_and_unnormalised_features() -> None:
    vec, clf, docs = _tiny_model()
    multi = LogisticRegression().fit(vec.transform(docs), [0, 1, 2, 0])
    with pytest.raises(ModelFormatError, match="binary"):
        from_sklearn("spam", vec, multi)
    vec.set_params(norm=None)
    with pytest.raises(ModelFormatError, match="l2"):
        from_sklearn("spam", vec, clf)
