"""Immutable values that flow through the pipeline.

Detectors return a :class:`DetectorResult` (raw ``scores`` and :class:`Finding` values, never an
action); the policy turns all results into one :class:`Decision`; the milter adapter applies the
decision to the MTA and the CLI prints it. Nothing here knows about the MTA or about any detector.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Action(enum.Enum):
    """What the MTA is told to do with a message, ordered by severity."""

    ACCEPT = "accept"
    QUARANTINE = "quarantine"
    TEMPFAIL = "tempfail"
    REJECT = "reject"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def parse(cls, value: str) -> Action:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(a.value for a in cls)
            raise ValueError(f"unknown action {value!r} (expected one of: {names})") from None

    @staticmethod
    def most_severe(actions: list[Action] | tuple[Action, ...]) -> Action:
        return max(actions, key=lambda a: a.severity, default=Action.ACCEPT)


# A finding of this type (from the allow-list detector) is how a reviewed false positive (sender/
# recipient pair or domain) stops being held: the policy lifts the score thresholds and quarantine
# rules, while the operator's explicit reject/tempfail rules (e.g. a card dump) still apply.
ALLOW_TYPE = "allowlisted"

_SEVERITY = {Action.ACCEPT: 0, Action.QUARANTINE: 1, Action.TEMPFAIL: 2, Action.REJECT: 3}


class Direction(enum.Enum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class Confidence(enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return ("low", "medium", "high").index(self.value)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a detector found. ``evidence`` is always masked: never content or secrets."""

    detector: str
    type: str
    score: float
    count: int = 1
    location: str = "message"
    evidence: str = ""
    confidence: Confidence = Confidence.MEDIUM
    details: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "detector": self.detector,
            "type": self.type,
            "score": round(self.score, 6),
            "count": self.count,
            "location": self.location,
            "evidence": self.evidence,
            "confidence": self.confidence.value,
        }
        if self.details:
            out["details"] = dict(self.details)
        return out


@dataclass(frozen=True, slots=True)
class DetectorResult:
    """What one detector said about one message: raw model scores plus findings."""

    detector: str
    scores: dict[str, float] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer for one message.

    ``verdict`` is what the policy decided; ``action`` is what is applied (equal to ``verdict`` in
    enforce mode, always ``ACCEPT`` in observe mode).
    """

    verdict: Action
    action: Action
    score: float
    scores: dict[str, float]
    findings: tuple[Finding, ...]
    reasons: tuple[str, ...]
    ref: str
    mode: str
    errors: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def finding_summary(self) -> str:
        """``type=count`` pairs, the only finding detail safe to put in a header or log line."""
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.type] = counts.get(f.type, 0) + f.count
        return ",".join(f"{t}={n}" for t, n in sorted(counts.items()))
