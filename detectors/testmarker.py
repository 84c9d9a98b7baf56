"""A documented test detector that drives the policy from a header: never enabled by default.

It exists so that the end-to-end tests (and an operator checking a fresh install) can make the
policy quarantine, reject or tempfail a chosen message without real sensitive content: a message
carrying ``X-Mailwarden-Test: <type>`` gets one finding of that type with the configured score.
Enable it only in test configs (``[detectors.testmarker] enabled = true``).
"""

from __future__ import annotations

import time

from mailwarden.detectors.base import BaseDetector, DetectorContext, register
from mailwarden.message import Message
from mailwarden.options import Options
from mailwarden.verdict import Confidence, DetectorResult, Finding

HEADER = "X-Mailwarden-Test"
# Finding types stay a closed set (they become metric label values).
KNOWN = ("quarantine", "reject", "tempfail", "stall", "marker")


class TestMarkerDetector(BaseDetector):
    name = "testmarker"

    def __init__(self, score: float, delay_seconds: float):
        self._score = score
        self._delay = delay_seconds

    def analyse(self, message: Message) -> DetectorResult:
        value = (message.header(HEADER) or "").strip().lower()
        if value == "crash":
            raise RuntimeError("testmarker asked to crash")
        if value == "stall" and self._delay > 0:
            time.sleep(self._delay)
        if not value:
            return DetectorResult(self.name, scores={"testmarker": 0.0})
        finding = Finding(
            detector=self.name,
            type=f"test_{value if value in KNOWN else 'marker'}",
            score=self._score,
            location="header",
            evidence=f"{HEADER}: {value[:20]}",
            confidence=Confidence.HIGH,
        )
        return DetectorResult(self.name, scores={"testmarker": self._score}, findings=(finding,))

    def describe(self) -> dict[str, str]:
        return {"model": "none", "header": HEADER}


@register("testmarker", summary="test-only: findings from an X-Mailwarden-Test header",
          default_enabled=False)
def build(options: Options, context: DetectorContext) -> TestMarkerDetector:
    score = options.get_number("score", 10.0, minimum=0.0)
    delay = options.get_number("stall_seconds", 30.0, minimum=0.0)
    options.finish()
    return TestMarkerDetector(score, delay)
