"""Explanations: what each detector adds to the total, in the engine's log line and the CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mailwarden.config import Thresholds
from mailwarden.engine import Engine
from mailwarden.explain import contributions, explain_lines, log_line, sum_text
from mailwarden.message import Envelope, Message
from mailwarden.metrics import Metrics
from mailwarden.verdict import Action, Decision, Finding

from conftest import make_config, message_bytes

FINDINGS = (Finding("leak", "private_key", 2.5), Finding("sending", "sending_anomaly", 4.96),
            Finding("leak", "credit_card", 0.5, count=2))


def decision(verdict: Action, action: Action) -> Decision:
    return Decision(verdict, action, 7.96, {"sending_anomaly": 0.93}, FINDINGS,
                    ("score 7.96 >= reject threshold 6 (sending=4.96 + leak=3.00)",),
                    "MW-ABC", "enforce")


def test_contributions_add_up_per_detector_largest_first() -> None:
    assert contributions(FINDINGS) == {"sending": 4.96, "leak": 3.0}
    assert list(contributions(FINDINGS)) == ["sending", "leak"]
    assert sum_text(FINDINGS) == "sending=4.96 + leak=3.00"
    assert sum_text(()) == "none"


def test_log_line_names_contributions_against_the_thresholds() -> None:
    line = log_line("4QID1", decision(Action.REJECT, Action.REJECT), Thresholds(3.0, None, 6.0))
    assert line == ("qid=4QID1 ref=MW-ABC verdict=reject mode=enforce contributions "
                    "sending=4.96 + leak=3.00 = 7.96 against quarantine>=3 reject>=6: "
                    "score 7.96 >= reject threshold 6 (sending=4.96 + leak=3.00)")
    observed = log_line("", decision(Action.REJECT, Action.ACCEPT), Thresholds(3.0, None, 6.0))
    assert observed.startswith("qid=NOQUEUE ref=MW-ABC verdict=reject action=accept ")


def test_explain_lines_list_types_and_raw_scores() -> None:
    lines = explain_lines(decision(Action.REJECT, Action.REJECT), Thresholds(3.0, None, 6.0))
    assert lines[0] == ("  total 7.96 = sending=4.96 + leak=3.00 (scores add up across "
                        "detectors; quarantine>=3 reject>=6)")
    assert "  leak: credit_card x2 adds 0.50" in lines
    assert "  raw score sending_anomaly = 0.930" in lines


def test_engine_logs_every_hold_with_its_contributions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(make_config(tmp_path), Metrics())
    try:
        with caplog.at_level(logging.INFO, logger="mailwarden.engine"):
            for marker in (None, "quarantine"):
                data = message_bytes(marker=marker)
                env = Envelope("4QID9", "a@example.org", ("b@example.net",))
                engine.scan_within_budget(Message(env, data, len(data)))
    finally:
        engine.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "mailwarden.engine"]
    assert len(lines) == 1, lines  # the accepted message gets no explanation line
    assert lines[0].startswith("qid=4QID9 ref=MW-")
    assert "verdict=quarantine mode=enforce contributions testmarker=6.00 = 6.00 against " \
           "quarantine>=5 reject>=10" in lines[0]
