"""The ``content`` detector: scores, findings, options, masking, threads and the text fallback."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from mailwarden.detectors.base import DetectorContext, DetectorUnavailable, registrations
from mailwarden.detectors.content.detector import (
    COUNTS_MEMO,
    DEFAULT_WEIGHTS,
    FLOOR,
    ContentDetector,
    TypeRule,
    build,
    fallback_text,
    finding_score,
    html_text,
)
from mailwarden.message import Envelope, Message
from mailwarden.options import ConfigError, Options

REPO = Path(__file__).resolve().parent.parent
CONTEXT = DetectorContext(model_dir=REPO / "models", state_dir=REPO / "build")

SPAM = b"""From: Deals <deals@cheap-offers.example>
To: someone@example.com
Subject: FREE money!!! Limited offer, act now
Content-Type: text/plain

Dear friend, you have been selected to receive $1,000,000 FREE! Click here
http://cheap-offers.example/claim to claim your prize. Order now, limited time offer,
no risk, 100% guaranteed, satisfaction guaranteed, remove me from the mailing list.
Buy cheap viagra, lowest price, credit card accepted, call now toll free!!!
"""

HAM = b"""From: dev@example.org
To: list@example.org
Subject: Re: patch for the build script
Content-Type: text/plain

I tested the patch on Debian and the build works now. The makefile still needs the
kernel headers though; can you update the README and push the change to the repository?
Thanks for reviewing the code.
"""


def message(raw: bytes) -> Message:
    return Message(Envelope("Q1", "a@example.org", ("b@example.org",)), raw, len(raw))


def det_threshold(kind: str) -> float:
    return detector()._rules[kind].threshold


def detector(table: dict[str, object] | None = None) -> ContentDetector:
    return build(Options(table or {}, "detectors.content"), CONTEXT)


def test_registered_as_content() -> None:
    assert "content" in registrations()


def test_spam_gets_a_spam_finding_and_all_three_scores() -> None:
    result = detector().analyse(message(SPAM))
    assert set(result.scores) == {"spam", "phishing", "sensitive"}
    assert result.scores["spam"] > 0.9
    spam = [f for f in result.findings if f.type == "spam"]
    assert len(spam) == 1
    rule = TypeRule(det_threshold("spam"), DEFAULT_WEIGHTS["spam"])
    assert spam[0].score == pytest.approx(finding_score(result.scores["spam"], rule))
    assert 5.0 <= spam[0].score < 10.0
    assert re.fullmatch(r"p=\d\.\d{3}( cues=[a-z_]+(,[a-z_]+)*)?", spam[0].evidence)


def test_ham_has_scores_but_no_findings() -> None:
    result = detector().analyse(message(HAM))
    assert set(result.scores) == {"spam", "phishing", "sensitive"}
    assert result.scores["spam"] < 0.5
    assert result.findings == ()


def test_thresholds_and_weights_are_options() -> None:
    det = detector({"threshold": 0.0, "spam": {"weight": 2.0}, "sensitive": {"weight": 0.0}})
    result = det.analyse(message(HAM))
    by_type = {f.type: f for f in result.findings}
    assert set(by_type) == {"spam", "phishing"}
    # At threshold 0 the margin is p itself: 2.0 x (FLOOR + (1 - FLOOR) x p).
    assert by_type["spam"].score == pytest.approx(
        2.0 * (FLOOR + (1 - FLOOR) * result.scores["spam"]))
    strict = detector({"spam": {"threshold": 1.0}})
    assert not [f for f in strict.analyse(message(SPAM)).findings if f.type == "spam"]


@pytest.mark.parametrize("table", [{"treshold": 0.5}, {"spam": {"wieght": 1.0}},
                                   {"threshold": 1.5}, {"phishing": {"weight": -1}}])
def test_bad_options_are_refused(table: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        detector(table)


def test_missing_models_make_the_detector_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DetectorUnavailable, match="cannot read"):
        build(Options({}, "detectors.content"), DetectorContext(tmp_path, tmp_path))


def test_evidence_never_carries_message_content() -> None:
    raw = SPAM.replace(b"Dear friend", b"Card 4111111111111111 secret hunter2")
    result = detector({"threshold": 0.0}).analyse(message(raw))
    for finding in result.findings:
        text = repr(finding.as_dict())
        assert "4111" not in text and "hunter2" not in text


def test_tokens_are_memoised_on_the_message() -> None:
    det = detector()
    msg = message(SPAM)
    det.analyse(msg)
    first = msg.memo(COUNTS_MEMO, lambda: {"recomputed": 1})
    assert "recomputed" not in first and first["free"] >= 2


def test_concurrent_scans_agree_with_sequential_ones() -> None:
    det = detector()
    raws = [SPAM, HAM] * 10
    expected = [det.analyse(message(r)).scores for r in raws]
    out: list[list[dict[str, float]]] = []

    def work() -> None:
        out.append([det.analyse(message(r)).scores for r in raws])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [expected] * 4


MULTIPART = b"""Subject: Quarterly plan
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style><script>var tracking = 1;</script></head>
<body><p>Visit <a href="https://portal.example/login">our portal</a> &amp; review</p></body></html>
--b1
Content-Type: text/plain
Content-Disposition: attachment; filename="notes.txt"

attachment words here
--b1--
"""


def test_fallback_text_walks_inline_text_and_html_only() -> None:
    text = fallback_text(message(MULTIPART))
    assert "Quarterly plan" in text
    assert "our portal" in text and "https://portal.example/login" in text and "& review" in text
    assert "color" not in text and "tracking" not in text
    assert "attachment words" not in text


def test_html_text_survives_broken_markup() -> None:
    assert "visible" in html_text("<div><p>visible <b>text</div></p><<<>")
