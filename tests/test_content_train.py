"""Content training: CLI hooks, split rule, generators, and a small end-to-end training run."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from mailwarden.detectors.content.detector import load_models
from mailwarden.training.content.corpus import is_held_out, phishing_cues
from mailwarden.training.content.evaluate import add_evaluate_arguments
from mailwarden.training.content.lures import LURES, lure_docs
from mailwarden.training.content.synth import CONFIDENTIAL, synthetic_docs
from mailwarden.training.content.train import (
    TrainConfig,
    add_train_arguments,
    train,
    train_from_args,
)

REPO = Path(__file__).resolve().parent.parent
CORPORA = Path(os.environ.get("MAILWARDEN_CORPORA", REPO.parent / "shared" / "corpora"))
SA = CORPORA / "spamassassin"
needs_corpora = pytest.mark.skipif(not (SA / "spam.tar.gz").exists(),
                                   reason="shared SpamAssassin corpus not present")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    add_evaluate_arguments(p)  # both hooks on one parser: shared flags are added once
    add_train_arguments(p)
    return p


def test_hooks_are_idempotent_and_flags_repeatable() -> None:
    args = parser().parse_args(["--ham", "a", "--ham", "b", "--spam", "c"])
    assert args.ham == ["a", "b"] and args.spam == ["c"] and args.phishing is None


def test_no_corpus_flags_trains_nothing(tmp_path: Path) -> None:
    assert train_from_args(parser().parse_args([]), tmp_path) == {}
    assert list(tmp_path.iterdir()) == []


def test_split_is_content_addressed_and_near_the_percentage() -> None:
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]
    held = [d for d in digests if is_held_out(d, 7, 25)]
    assert 0.21 < len(held) / len(digests) < 0.29
    assert held == [d for d in digests if is_held_out(d, 7, 25)]
    assert held != [d for d in digests if is_held_out(d, 8, 25)]


def test_phishing_cues_count_distinct_cues() -> None:
    assert phishing_cues("Please verify your account, it was suspended. Log in now.") >= 3
    assert phishing_cues("The build is green, see you at lunch.") == 0


def test_generators_are_seeded_and_keep_unseen_phrasing_apart() -> None:
    assert synthetic_docs(1, 5, "confidential") == synthetic_docs(1, 5, "confidential")
    assert synthetic_docs(1, 5, "confidential") != synthetic_docs(2, 5, "confidential")
    reserved = [s.split("{")[0] for t in CONFIDENTIAL.values() for s in t[4::5]]
    train_text = " ".join(d.text for d in synthetic_docs(3, 300, "confidential", "train"))
    assert not [r for r in reserved if len(r) > 12 and r in train_text]
    lure_reserved = [s.split("{")[0] for t in LURES.values() for s in t[4::5]]
    lure_text = " ".join(d.text for d in lure_docs(3, 300, "train"))
    assert not [r for r in lure_reserved if len(r) > 12 and r in lure_text]


def _corpus(tmp_path: Path, name: str, source: Path, count: int) -> Path:
    out = tmp_path / name
    out.mkdir()
    with tarfile.open(source) as tar:
        members = [m for m in tar if m.isfile()][:count]
        for i, member in enumerate(members):
            handle = tar.extractfile(member)
            assert handle is not None
            (out / f"{i:04d}.eml").write_bytes(handle.read())
    return out


@needs_corpora
def test_small_training_run_is_reproducible(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    paths = {"ham": [str(_corpus(tmp_path, "ham", SA / "easy_ham.tar.gz", 160))],
             "spam": [str(_corpus(tmp_path, "spam", SA / "spam.tar.gz", 80))]}
    config = TrainConfig(synthetic_sensitive=120, synthetic_phishing=120, folds=3,
                         candidates=("mnb", "logreg"))
    summary = train(paths, tmp_path / "a", config)
    assert set(summary) >= {"spam", "phishing", "sensitive"}
    train(paths, tmp_path / "b", TrainConfig(synthetic_sensitive=120, synthetic_phishing=120,
                                             folds=3, candidates=("mnb", "logreg")))
    for name in ("spam", "phishing", "sensitive"):
        for ext in (".npz", ".json"):
            assert (tmp_path / "a" / f"{name}{ext}").read_bytes() == \
                (tmp_path / "b" / f"{name}{ext}").read_bytes()
    manifest = json.loads((tmp_path / "a" / "spam.json").read_text(encoding="utf-8"))
    assert manifest["trained_at"] == "2023-11-14T22:13:20+00:00"
    assert manifest["candidate"] in ("mnb", "logreg")
    assert set(manifest["metrics"]["cross_validation"]) == {"mnb", "logreg"}
    assert manifest["training_counts"]["positive"] + manifest["held_out_counts"]["positive"] == 80
    assert set(load_models(tmp_path / "a")) == {"spam", "phishing", "sensitive"}


def test_training_without_ham_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--ham"):
        train({"spam": ["x"]}, tmp_path, TrainConfig())
