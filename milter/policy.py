"""The one place where scores become actions.

After the detectors have run, :func:`decide` sums the weighted finding scores, compares the total
with the thresholds of the message's direction, applies the rules (finding type with count and
confidence, or a raw score above a bound), and takes the most severe action any of them asks for.
The mode then decides what is applied: everything in ``enforce``, nothing but headers in
``observe``. Every action taken carries a human-readable reason for the audit log and headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.config import PolicyConfig, Rule, Thresholds
from mailwarden.detectors.sending.names import FINDING_TYPE, HOLD_TYPE
from mailwarden.explain import sum_text
from mailwarden.verdict import ALLOW_TYPE, Action, Decision, DetectorResult, Direction, Finding


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Action
    score: float
    reasons: tuple[str, ...]


# The sending part: the ``sending`` detector names the action it asks for in a finding detail
# (``action``), set by its options ``on_high_confidence`` and ``on_sender_hold`` (see
# deploy/mailwarden.toml). Its anomaly score alone (weight x anomaly <= weight) stays below the
# score thresholds, so the sending anomaly holds a message only at high confidence against a
# trusted baseline or through a sender hold; otherwise it adds headers, counts and alerts. An
# allow-listed pair lifts the former, never a sender hold (it holds every message of the sender).
SENDING_TYPES = (FINDING_TYPE, HOLD_TYPE)


def evaluate(
    policy: PolicyConfig,
    direction: Direction,
    findings: tuple[Finding, ...],
    scores: dict[str, float],
) -> Outcome:
    total = float(sum(f.score for f in findings))
    allowed = [f for f in findings if f.type == ALLOW_TYPE]
    thresholds = policy.outbound if direction is Direction.OUTBOUND else policy.inbound
    candidates: list[tuple[Action, str]] = [] if allowed else _threshold_actions(
        thresholds, total, findings)
    for rule in policy.rules:
        reason = _rule_matches(rule, direction, findings, scores)
        if reason and not (allowed and rule.action is Action.QUARANTINE):
            candidates.append((rule.action, reason))
    if direction is Direction.OUTBOUND:
        candidates += [(a, r) for a, r, kind in _sending_actions(findings)
                       if not allowed or kind == HOLD_TYPE]
    if allowed and not candidates:
        return Outcome(Action.ACCEPT, total, (f"allow list: {allowed[0].evidence}",))
    verdict = Action.most_severe([a for a, _ in candidates])
    reasons = tuple(r for a, r in candidates if a is verdict)
    return Outcome(verdict=verdict, score=total, reasons=reasons)


def _sending_actions(findings: tuple[Finding, ...]) -> list[tuple[Action, str, str]]:
    out = []
    for f in findings:
        wanted = dict(f.details).get("action") if f.type in SENDING_TYPES else None
        if wanted and wanted != "none":
            what = "sender held" if f.type == HOLD_TYPE else "sending anomaly, high confidence"
            out.append((Action.parse(wanted), f"{what}: {f.evidence}", f.type))
    return out


def _threshold_actions(t: Thresholds, total: float,
                       findings: tuple[Finding, ...]) -> list[tuple[Action, str]]:
    out: list[tuple[Action, str]] = []
    made_of = ""  # the total is the sum over every detector: name what it is made of
    for action, bound in (
        (Action.QUARANTINE, t.quarantine),
        (Action.TEMPFAIL, t.tempfail),
        (Action.REJECT, t.reject),
    ):
        if bound is not None and total >= bound:
            made_of = made_of or sum_text(findings)  # only for a message that reached one
            out.append((action, f"score {total:.2f} >= {action.value} threshold {bound:g}"
                                f" ({made_of})"))
    return out


def _rule_matches(
    rule: Rule, direction: Direction, findings: tuple[Finding, ...], scores: dict[str, float]
) -> str | None:
    if rule.direction is not None and rule.direction is not direction:
        return None
    if rule.score_key is not None:
        value = scores.get(rule.score_key)
        if value is not None and value >= rule.above:
            return f"rule {rule.name}: {rule.score_key} {value:.3f} >= {rule.above:g}"
        return None
    count = sum(
        f.count
        for f in findings
        if f.type == rule.finding_type
        and (rule.detector is None or f.detector == rule.detector)
        and f.confidence.rank >= rule.min_confidence.rank
    )
    if count >= rule.min_count:
        return f"rule {rule.name}: {rule.finding_type} x{count} (>= {rule.min_count})"
    return None


def decide(
    policy: PolicyConfig,
    mode: str,
    direction: Direction,
    results: list[DetectorResult],
    ref: str,
    seconds: float = 0.0,
) -> Decision:
    """Combine detector results into the decision applied in ``mode``."""
    findings = tuple(f for r in results for f in r.findings)
    scores: dict[str, float] = {}
    for r in results:
        scores.update(r.scores)
    outcome = evaluate(policy, direction, findings, scores)
    return Decision(
        verdict=outcome.verdict,
        action=outcome.verdict if mode == "enforce" else Action.ACCEPT,
        score=outcome.score,
        scores=scores,
        findings=findings,
        reasons=outcome.reasons,
        ref=ref,
        mode=mode,
        errors=tuple(f"{r.detector}: {r.error}" for r in results if r.error),
        seconds=seconds,
    )


def failure_decision(on_error: Action, mode: str, ref: str, error: str) -> Decision:
    """The decision when scoring itself failed or ran out of time (fail-open by default)."""
    applied = on_error if mode == "enforce" else Action.ACCEPT
    return Decision(
        verdict=on_error,
        action=applied,
        score=0.0,
        scores={},
        findings=(),
        reasons=(f"scan failed: {error}",),
        ref=ref,
        mode=mode,
        errors=(error,),
    )
