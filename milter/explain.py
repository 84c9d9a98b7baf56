"""Why a message got its verdict: each detector's contribution to the total, against the thresholds.

The policy (:mod:`mailwarden.policy`) adds up the weighted scores of every finding, whatever
detector made it, and compares the total with the thresholds of the message's direction; a rule
can also ask for an action on its own. This module turns a decision into the words an operator
needs: ``sending=4.96 + leak=2.50 = 7.46 >= reject 6`` for the log line the engine writes for
every refusal, deferral and hold, the ``contributions`` of the audit record, and the lines of
``mailwarden score --explain``. Only detector names, finding types, counts and scores: no content.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailwarden.config import PolicyConfig, Thresholds
from mailwarden.verdict import Action, Decision, Direction, Finding


def contributions(findings: Iterable[Finding]) -> dict[str, float]:
    """Weighted score per detector, largest first (what the total is made of)."""
    sums: dict[str, float] = {}
    for f in findings:
        sums[f.detector] = sums.get(f.detector, 0.0) + f.score
    ordered = sorted(sums.items(), key=lambda item: (-item[1], item[0]))
    return {name: round(value, 4) for name, value in ordered}


def sum_text(findings: Iterable[Finding]) -> str:
    """``sending=4.96 + leak=2.50`` (``none`` without findings)."""
    parts = contributions(findings)
    return " + ".join(f"{name}={value:.2f}" for name, value in parts.items()) or "none"


def thresholds_text(t: Thresholds) -> str:
    """``quarantine>=3 reject>=6`` (unset thresholds left out)."""
    pairs = (("quarantine", t.quarantine), ("tempfail", t.tempfail), ("reject", t.reject))
    return " ".join(f"{name}>={bound:g}" for name, bound in pairs if bound is not None) or \
        "no thresholds"


def thresholds_for(policy: PolicyConfig, direction: Direction) -> Thresholds:
    return policy.outbound if direction is Direction.OUTBOUND else policy.inbound


def explanation(decision: Decision, thresholds: Thresholds) -> str:
    """One line: contributions, total, thresholds, and the reasons of the verdict."""
    reasons = "; ".join(decision.reasons) or "no threshold or rule reached"
    return (f"contributions {sum_text(decision.findings)} = {decision.score:.2f} against "
            f"{thresholds_text(thresholds)}: {reasons}")


def log_line(queue_id: str, decision: Decision, thresholds: Thresholds) -> str:
    """The engine's line for every message the policy did not simply accept."""
    applied = "" if decision.action is decision.verdict else f" action={decision.action.value}"
    return (f"qid={queue_id or 'NOQUEUE'} ref={decision.ref} verdict={decision.verdict.value}"
            f"{applied} mode={decision.mode} {explanation(decision, thresholds)}")


def needs_line(decision: Decision) -> bool:
    return decision.verdict is not Action.ACCEPT


def explain_lines(decision: Decision, thresholds: Thresholds) -> list[str]:
    """``mailwarden score --explain``: one line per detector, then per finding type."""
    lines = [f"  total {decision.score:.2f} = {sum_text(decision.findings)} "
             f"(scores add up across detectors; {thresholds_text(thresholds)})"]
    by_type: dict[tuple[str, str], tuple[int, float]] = {}
    for f in decision.findings:
        count, score = by_type.get((f.detector, f.type), (0, 0.0))
        by_type[(f.detector, f.type)] = (count + f.count, score + f.score)
    for (detector, kind), (count, score) in sorted(by_type.items(), key=lambda i: -i[1][1]):
        lines.append(f"  {detector}: {kind} x{count} adds {score:.2f}")
    for name, value in sorted(decision.scores.items()):
        lines.append(f"  raw score {name} = {value:.3f}")
    lines += [f"  because: {reason}" for reason in decision.reasons] or \
        ["  because: no threshold or rule reached: accept"]
    lines += [f"  error: {error}" for error in decision.errors]
    return lines
