"""The ``sending`` detector: per-sender sending-pattern anomalies (compromised accounts, leaks).

It sits with the other detectors between the message snapshot and the policy. For each message it
builds a :class:`~mailwarden.detectors.sending.features.SendEvent` (identity from SASL login or
envelope sender, recipients, message time, sizes, reply or not), and in one atomic store transaction
reads the sender's profile as it was, computes the features, scores them with the configured
portable model (:mod:`mailwarden.detectors.sending.anomaly_models`) and writes the updated profile
back. ``scores["sending_anomaly"]`` (0..1) is always set; above ``report_above`` a
``sending_anomaly`` finding names the features that drove it. When the store is down the detector
skips messages (an ``error`` result, logged at most once per ``log_every_seconds``) and retries with
backoff until it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mailwarden.detectors.base import BaseDetector, DetectorContext, register
from mailwarden.detectors.sending.anomaly_models import MODEL_KINDS, Array, Scorer
from mailwarden.detectors.sending.features import (
    FeatureConfig,
    Observation,
    SendEvent,
    explain,
    learn,
    observe,
)
from mailwarden.detectors.sending.names import FEATURES, FINDING_TYPE, SCORE
from mailwarden.detectors.sending.profile import OrgPrior, Profile
from mailwarden.detectors.sending.settings import open_bundle, open_store, read_settings
from mailwarden.detectors.sending.state import StateStore, StoreUnavailable, Update, sender_key
from mailwarden.message import Message
from mailwarden.options import Options
from mailwarden.verdict import Confidence, DetectorResult, Finding

log = logging.getLogger(__name__)
NAME = "sending"
ANOMALOUS_WINDOW = 900.0
MAX_PARTS = 200


def attachment_bytes(message: Message) -> int:
    """Approximate decoded size of non-text MIME parts (no decoding: cost bounded by size)."""
    total = 0
    for count, part in enumerate(message.parsed.walk()):
        if count >= MAX_PARTS:
            break
        if part.is_multipart() or part.get_content_maintype() in ("text", "message"):
            continue
        payload = part.get_payload()
        size = len(payload) if isinstance(payload, str | bytes) else 0
        encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        total += size * 3 // 4 if encoding == "base64" else size
    return total


def event_from_message(message: Message, now: float | None = None) -> SendEvent:
    env = message.envelope
    parsed = message.parsed
    return SendEvent(
        at=env.received_at or (time.time() if now is None else now),
        sender=env.sender_identity,
        recipients=env.recipients,
        size=message.size,
        attach_bytes=message.memo("sending.attachment_bytes", lambda: attachment_bytes(message)),
        is_reply=bool(parsed.get("In-Reply-To") or parsed.get("References")),
    )


@dataclass(frozen=True)
class Outcome:
    anomaly: float
    obs: Observation
    scaled: Array


class SendingDetector(BaseDetector):
    name = NAME

    def __init__(self, scorer: Scorer, prior: OrgPrior, config: FeatureConfig,
                 store: StateStore, *, report_above: float = 0.6, weight: float = 6.0,
                 wall_clock: bool = True, retry_seconds: float = 1.0,
                 retry_max_seconds: float = 30.0, log_every_seconds: float = 60.0,
                 info: dict[str, str] | None = None) -> None:
        self._scorer, self._prior, self._config, self._store = scorer, prior, config, store
        self.report_above, self.weight = report_above, weight
        self._wall_clock = wall_clock
        self._retry, self._retry_max, self._log_every = (
            retry_seconds, retry_max_seconds, log_every_seconds)
        self._info = dict(info or {})
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._delay = 0.0
        self._last_log = -1e18
        self._latest = 0.0

    def analyse(self, message: Message) -> DetectorResult:
        event = event_from_message(message)
        if not event.sender:
            return DetectorResult(NAME, scores={SCORE: 0.0}, error="no sender identity")
        skip = self._skip_reason()
        if skip:
            return DetectorResult(NAME, error=skip)
        try:
            outcome = self._store.transact(sender_key(event.sender), lambda b: self._step(b, event))
        except StoreUnavailable as exc:
            return DetectorResult(NAME, error=self._failed(str(exc)))
        self._recovered()
        return self._result(outcome)

    def _step(self, blob: bytes | None, event: SendEvent) -> tuple[Update, Outcome]:
        profile = Profile.decode(blob)
        obs = observe(profile, event, self._prior, self._config)
        anomaly, scaled = self._scorer.score_one(obs.vector)
        learn(profile, event, obs)
        profile.score = anomaly
        flagged = event.at if anomaly > self.report_above else None
        with self._lock:
            self._latest = max(self._latest, event.at)
        return Update(profile.encode(), event.at, flagged), Outcome(anomaly, obs, scaled[0])

    def _result(self, outcome: Outcome) -> DetectorResult:
        scores = {SCORE: outcome.anomaly}
        if outcome.anomaly <= self.report_above:
            return DetectorResult(NAME, scores=scores)
        reasons = top_reasons(outcome.scaled)
        texts = list(dict.fromkeys(explain(outcome.obs, i) for i in reasons))
        finding = Finding(
            detector=NAME, type=FINDING_TYPE, score=self.weight * outcome.anomaly,
            location="envelope", evidence="; ".join(texts),
            confidence=Confidence.HIGH if outcome.anomaly >= 0.9 else Confidence.MEDIUM,
            details=(("model", self._scorer.kind), ("anomaly", f"{outcome.anomaly:.3f}"),
                     ("reason", FEATURES[reasons[0]]),
                     ("reasons", ",".join(FEATURES[i] for i in reasons))),
        )
        return DetectorResult(NAME, scores=scores, findings=(finding,))

    def _skip_reason(self) -> str | None:
        with self._lock:
            if self._down_until and time.monotonic() < self._down_until:
                return "store unavailable: retrying later"
        return None

    def _failed(self, reason: str) -> str:
        now = time.monotonic()
        with self._lock:
            self._delay = min(max(self._delay * 2, self._retry), self._retry_max)
            self._down_until = now + self._delay
            if now - self._last_log >= self._log_every:
                self._last_log = now
                log.warning("sending: %s; skipping messages, next try in %.1fs", reason,
                            self._delay)
        return f"store unavailable: {reason}"

    def _recovered(self) -> None:
        with self._lock:
            if not self._down_until:
                return
            self._down_until, self._delay = 0.0, 0.0
        log.warning("sending: state store is reachable again")

    def health(self) -> bool:
        """False while the store is known down or does not answer (for a health gauge)."""
        if self._skip_reason():
            return False
        return self._store.health()

    def anomalous_senders(self) -> int:
        """Senders whose last message scored above ``report_above`` in the last 15 minutes."""
        with self._lock:
            now = time.time() if self._wall_clock else self._latest
        try:
            return self._store.anomalous_count(now - ANOMALOUS_WINDOW)
        except StoreUnavailable:
            return 0

    def describe(self) -> dict[str, str]:
        return dict(self._info, model=self._scorer.kind, store=self._store.kind,
                    report_above=str(self.report_above), features=str(len(FEATURES)))

    def close(self) -> None:
        self._store.close()


def top_reasons(scaled: Array, limit: int = 3, above: float = 2.0) -> list[int]:
    """Feature indices most above the training distribution (at least one)."""
    order = [int(i) for i in np.argsort(-scaled)]
    chosen = [i for i in order[:limit] if scaled[i] > above]
    return chosen or order[:1]


@register(NAME, summary="per-sender sending-pattern anomalies (rate, recipients, hours, sizes)")
def build(options: Options, context: DetectorContext) -> SendingDetector:
    settings = read_settings(options, context)
    bundle = open_bundle(settings)
    scorer = bundle.scorers[settings.model]
    prior = OrgPrior.from_json(bundle.manifest["prior"])
    store = open_store(settings, context)
    info = {"trained_at": str(bundle.manifest.get("trained_at", "")),
            "version": str(bundle.manifest.get("format", "")),
            "training": str(bundle.manifest.get("training", {}).get("source", "")),
            "model_dir": str(Path(settings.model_dir))}
    return SendingDetector(
        scorer, prior, settings.features, store, report_above=settings.report_above,
        weight=settings.weight, wall_clock=context.run_mode == "milter",
        retry_seconds=settings.retry_seconds, retry_max_seconds=settings.retry_max_seconds,
        log_every_seconds=settings.log_every_seconds, info=info,
    )


__all__ = ["MODEL_KINDS", "SendingDetector", "attachment_bytes", "build", "event_from_message"]
