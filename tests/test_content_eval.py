"""Content evaluation: metrics by hand, header stripping, and reports written with figures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from mailwarden.detectors.content.detector import text_function
from mailwarden.message import Envelope, Message
from mailwarden.training.content.evaluate import (
    add_evaluate_arguments,
    evaluate_from_args,
    strip_headers,
)
from mailwarden.training.content.models import binary_metrics
from mailwarden.training.content.synth import synthetic_docs

REPO = Path(__file__).resolve().parent.parent

RAW = (b"Received: from relay.example by mx.example; Tue, 1 Oct 2002 10:00:00 +0000\r\n"
       b"Date: Tue, 1 Oct 2002 10:00:00 +0000\r\nSubject: Free offer\r\n"
       b"X-Mailer: Old\r\n\tcontinued\r\nContent-Type: text/plain;\r\n charset=us-ascii\r\n"
       b"\r\nClick now for your free prize!\r\n")


def test_binary_metrics_match_hand_computed_values() -> None:
    m = binary_metrics(np.array([1, 1, 0, 0]), np.array([0.95, 0.4, 0.92, 0.1]), 0.9)
    assert m["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 1}
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == (0.5, 0.5, 0.5, 0.5)
    assert m["roc_auc"] == pytest.approx(0.75)


def test_strip_headers_keeps_subject_and_mime_only() -> None:
    stripped = strip_headers(RAW)
    assert b"Received" not in stripped and b"Date" not in stripped and b"X-Mailer" not in stripped
    assert b"continued" not in stripped
    assert b"Subject: Free offer" in stripped and b" charset=us-ascii" in stripped
    assert stripped.endswith(b"Click now for your free prize!\r\n")


def test_detector_text_does_not_depend_on_routing_headers() -> None:
    text = text_function()
    env = Envelope("Q", "a@example.org", ())
    assert text(Message(env, RAW, len(RAW))) == text(Message(env, strip_headers(RAW),
                                                              len(RAW)))


def test_evaluate_writes_metrics_markdown_and_figures(tmp_path: Path) -> None:
    corpora = {}
    for kind, name in (("benign", "ham"), ("confidential", "sensitive")):
        folder = tmp_path / name
        folder.mkdir()
        for i, doc in enumerate(synthetic_docs(5, 30, kind, "all")):
            subject, _, body = doc.text.partition("\n")
            (folder / f"{i}.eml").write_text(f"Subject: {subject}\n\n{body}\n", encoding="utf-8")
        corpora[name] = folder
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    args = parser.parse_args(["--ham", str(corpora["ham"]), "--sensitive",
                              str(corpora["sensitive"]), "--content-synthetic-sensitive", "40",
                              "--content-plot-points", "120"])
    report = evaluate_from_args(args, REPO / "models", tmp_path / "report")
    saved = json.loads((tmp_path / "report" / "content-metrics.json").read_text("utf-8"))
    result = saved["results"]["sensitive"]["sensitive vs ham+benign_synthetic"]["0.5"]
    assert result["n_positive"] == 30 and result["n_negative"] == 70
    assert result["roc_auc"] > 0.9
    assert "| sensitive |" in (tmp_path / "report" / "content-metrics.md").read_text("utf-8")
    for name in report["figures"]:  # type: ignore[union-attr]
        assert (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG"
    assert set(report["figures"]) == {"confusion.png", "roc.png", "pr.png", "tsne.png"}  # type: ignore[arg-type]


def test_no_corpus_flags_evaluate_nothing(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    assert evaluate_from_args(parser.parse_args([]), REPO / "models", tmp_path) == {}
