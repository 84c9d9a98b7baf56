"""Policy: thresholds per direction, rules, most severe wins, observe never enforces."""

from __future__ import annotations

from pathlib import Path

from mailwarden.config import load_config
from mailwarden.policy import decide, evaluate, failure_decision
from mailwarden.verdict import Action, Confidence, DetectorResult, Direction, Finding

from conftest import make_config


def finding(type_: str, score: float, count: int = 1, conf: Confidence = Confidence.MEDIUM,
            detector: str = "leak") -> Finding:
    return Finding(detector=detector, type=type_, score=score, count=count, confidence=conf)


RULES = """
[policy.outbound]
quarantine = 5.0
reject = 10.0
[[policy.rules]]
name = "card-dump"
type = "credit_card"
min_count = 5
min_confidence = "high"
action = "reject"
[[policy.rules]]
name = "anomaly"
score = "sending_anomaly"
above = 0.9
action = "quarantine"
direction = "outbound"
"""


def policy(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_config(tmp_path / "p.toml", text=RULES).policy


def test_thresholds(tmp_path: Path) -> None:
    p = policy(tmp_path)
    assert evaluate(p, Direction.OUTBOUND, (finding("x", 4.9),), {}).verdict is Action.ACCEPT
    assert evaluate(p, Direction.OUTBOUND, (finding("x", 3), finding("y", 2)), {}).verdict \
        is Action.QUARANTINE
    out = evaluate(p, Direction.OUTBOUND, (finding("x", 10.5),), {})
    assert out.verdict is Action.REJECT
    assert out.score == 10.5
    assert "reject threshold" in out.reasons[0]


def test_inbound_has_no_thresholds_by_default(tmp_path: Path) -> None:
    assert evaluate(policy(tmp_path), Direction.INBOUND, (finding("x", 50),), {}).verdict \
        is Action.ACCEPT


def test_rule_counts_and_confidence(tmp_path: Path) -> None:
    p = policy(tmp_path)
    low = (finding("credit_card", 0.1, count=9, conf=Confidence.LOW),)
    assert evaluate(p, Direction.OUTBOUND, low, {}).verdict is Action.ACCEPT
    four = (finding("credit_card", 0.1, count=4, conf=Confidence.HIGH),)
    assert evaluate(p, Direction.OUTBOUND, four, {}).verdict is Action.ACCEPT
    five = (finding("credit_card", 0.1, count=3, conf=Confidence.HIGH),
            finding("credit_card", 0.1, count=2, conf=Confidence.HIGH))
    out = evaluate(p, Direction.OUTBOUND, five, {})
    assert out.verdict is Action.REJECT
    assert out.reasons == ("rule card-dump: credit_card x5 (>= 5)",)


def test_score_rule_and_direction(tmp_path: Path) -> None:
    p = policy(tmp_path)
    assert evaluate(p, Direction.OUTBOUND, (), {"sending_anomaly": 0.95}).verdict \
        is Action.QUARANTINE
    assert evaluate(p, Direction.OUTBOUND, (), {"sending_anomaly": 0.5}).verdict is Action.ACCEPT
    assert evaluate(p, Direction.INBOUND, (), {"sending_anomaly": 0.99}).verdict is Action.ACCEPT


def test_observe_mode_only_reports(tmp_path: Path) -> None:
    p = make_config(tmp_path).policy
    results = [DetectorResult("leak", scores={"leak": 1.0}, findings=(finding("x", 12),))]
    enforce = decide(p, "enforce", Direction.OUTBOUND, results, "MW-1")
    observe = decide(p, "observe", Direction.OUTBOUND, results, "MW-2")
    assert (enforce.verdict, enforce.action) == (Action.REJECT, Action.REJECT)
    assert (observe.verdict, observe.action) == (Action.REJECT, Action.ACCEPT)
    assert observe.scores == {"leak": 1.0}
    assert observe.finding_summary == "x=1"


def test_failure_decision_fails_open_unless_configured() -> None:
    assert failure_decision(Action.ACCEPT, "enforce", "r", "boom").action is Action.ACCEPT
    assert failure_decision(Action.TEMPFAIL, "enforce", "r", "boom").action is Action.TEMPFAIL
    assert failure_decision(Action.TEMPFAIL, "observe", "r", "boom").action is Action.ACCEPT


def test_allow_list_lifts_thresholds_and_quarantine_rules(tmp_path: Path) -> None:
    p = policy(tmp_path)
    allow = Finding(detector="allowlist", type="allowlisted", score=0.0,
                    evidence="pair reviewed as false positive")
    cards = finding("credit_card", 20.0, count=2, conf=Confidence.HIGH)
    out = evaluate(p, Direction.OUTBOUND, (cards, allow), {"sending_anomaly": 0.99})
    assert out.verdict is Action.ACCEPT  # score 20 >= reject 10 and the anomaly rule: lifted
    assert out.reasons == ("allow list: pair reviewed as false positive",)


def test_allow_list_does_not_lift_explicit_reject_rules(tmp_path: Path) -> None:
    p = policy(tmp_path)
    allow = Finding(detector="allowlist", type="allowlisted", score=0.0, evidence="pair")
    dump = finding("credit_card", 20.0, count=9, conf=Confidence.HIGH)
    out = evaluate(p, Direction.OUTBOUND, (dump, allow), {})
    assert out.verdict is Action.REJECT
    assert out.reasons == ("rule card-dump: credit_card x9 (>= 5)",)
