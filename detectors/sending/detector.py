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
from mailwarden.detectors.sending.baseline import BEHAVIOURS, phrase
from mailwarden.detectors.sending.event import attachment_bytes, event_from_message
from mailwarden.detectors.sending.features import (
    FeatureConfig,
    Observation,
    SendEvent,
    explain,
    learn,
    observe,
)
from mailwarden.detectors.sending.hold import HoldPolicy, engage, held_since, judge, note_held
from mailwarden.detectors.sending.holds import HoldRecord, HoldRegistry, mask_identity
from mailwarden.detectors.sending.names import FEATURES, FINDING_TYPE, HELD_SCORE, HOLD_TYPE, SCORE
from mailwarden.detectors.sending.profile import OrgPrior, Profile
from mailwarden.detectors.sending.settings import open_bundle, open_holds, open_store, read_settings
from mailwarden.detectors.sending.state import StateStore, StoreUnavailable, Update, sender_key
from mailwarden.detectors.sending.tails import Tails
from mailwarden.message import Message
from mailwarden.options import Options
from mailwarden.verdict import Confidence, DetectorResult, Finding

log = logging.getLogger(__name__)
NAME = "sending"
# While a sender is learning, the model (trained on established senders) counts this much: its
# view of a newcomer is mostly "unlike an established sender", which is not suspicious.
LEARNING_MODEL = 0.5
ANOMALOUS_WINDOW = 900.0


@dataclass(frozen=True)
class Outcome:
    anomaly: float
    obs: Observation | None
    scaled: Array | None
    model_anomaly: float = 0.0
    tail_anomaly: float = 0.0
    tail_index: int = -1
    held_since: float | None = None  # the sender is held (this message is held with it)
    engaged: str | None = None  # the reason, when this message engaged the hold


class SendingDetector(BaseDetector):
    name = NAME

    def __init__(self, scorer: Scorer, prior: OrgPrior, config: FeatureConfig,
                 store: StateStore, *, report_above: float = 0.6, high_above: float = 0.98,
                 tails: Tails | None = None, hold: HoldPolicy | None = None,
                 actions: tuple[str, str] = ("quarantine", "quarantine"),
                 holds: HoldRegistry | None = None, wall_clock: bool = True,
                 retry_seconds: float = 1.0, retry_max_seconds: float = 30.0,
                 log_every_seconds: float = 60.0, info: dict[str, str] | None = None) -> None:
        self._scorer, self._prior, self._config, self._store = scorer, prior, config, store
        self.report_above, self.high_above = report_above, high_above
        self._tails, self._hold = tails, hold or HoldPolicy(enabled=False)
        self._on_high, self._on_hold = actions
        self._holds = holds
        self._wall_clock = wall_clock
        self._retry, self._retry_max, self._log_every = (
            retry_seconds, retry_max_seconds, log_every_seconds)
        self._info = dict(info or {})
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._delay = 0.0
        self._last_log = -1e18
        self._latest = 0.0
        self.holds_engaged = 0

    def analyse(self, message: Message) -> DetectorResult:
        event = event_from_message(message)
        if not event.sender:
            return DetectorResult(NAME, scores={SCORE: 0.0}, error="no sender identity")
        skip = self._skip_reason()
        if skip:
            return DetectorResult(NAME, error=skip)
        key = sender_key(event.sender)
        try:
            outcome = self._store.transact(key, lambda b: self._step(b, event))
            if outcome.engaged:
                self._engaged(key, event, outcome.engaged, message.envelope.queue_id)
        except StoreUnavailable as exc:
            return DetectorResult(NAME, error=self._failed(str(exc)))
        self._recovered()
        return self._result(outcome)

    def _step(self, blob: bytes | None, event: SendEvent) -> tuple[Update, Outcome]:
        profile = Profile.decode(blob)
        with self._lock:
            self._latest = max(self._latest, event.at)
        since = held_since(profile)
        if since is not None:  # held messages are not learned from: they may be the attacker's
            note_held(profile)
            return (Update(profile.encode(), event.at, event.at),
                    Outcome(1.0, None, None, held_since=since))
        obs = observe(profile, event, self._prior, self._config)
        model, scaled = self._scorer.score_one(obs.vector)
        learning = not obs.base.trusted
        tail, index = self._tails.one(obs.dev, learning) if self._tails else (0.0, -1)
        anomaly = combined(model, tail, obs.base.trusted)
        engaged = judge(profile, event.at, anomaly, tail, obs.base.trusted, self._hold)
        learn(profile, event, obs)
        profile.score = anomaly
        if engaged:
            engage(profile, event.at)
        flagged = event.at if anomaly > self.report_above else None
        outcome = Outcome(anomaly, obs, scaled[0], model, tail, index,
                          event.at if engaged else None, engaged)
        return Update(profile.encode(), event.at, flagged), outcome

    def _engaged(self, key: str, event: SendEvent, reason: str, queue_id: str) -> None:
        """A new hold episode: listed once, logged once (the alert), counted."""
        with self._lock:
            self.holds_engaged += 1
        new = True
        if self._holds is not None:
            new = self._holds.put(HoldRecord(key, mask_identity(event.sender), event.at, reason),
                                  "detector")
        if new:
            log.warning("%s: sending: sender %s held until a reviewer clears it (%s); "
                        "`mailwarden senders show %s`", queue_id or "-",
                        mask_identity(event.sender), reason, key)

    def _result(self, outcome: Outcome) -> DetectorResult:
        if outcome.obs is None or outcome.scaled is None:
            return DetectorResult(NAME, scores={SCORE: 1.0, HELD_SCORE: 1.0},
                                  findings=(hold_finding(outcome, self._on_hold),))
        scores = {SCORE: outcome.anomaly,
                  "sending_trusted": 1.0 if outcome.obs.base.trusted else 0.0}
        findings = [hold_finding(outcome, self._on_hold)] if outcome.engaged else []
        if outcome.anomaly > self.report_above:
            findings.insert(0, self._anomaly_finding(outcome, outcome.obs, outcome.scaled))
        if outcome.engaged:
            scores[HELD_SCORE] = 1.0
        return DetectorResult(NAME, scores=scores, findings=tuple(findings))

    def _anomaly_finding(self, outcome: Outcome, obs: Observation, scaled: Array) -> Finding:
        reasons = top_reasons(scaled)
        texts = [explain(obs, i) for i in reasons]
        names = [FEATURES[i] for i in reasons]
        if outcome.tail_index >= 0 and outcome.tail_anomaly > self.report_above:
            at = 0 if outcome.tail_anomaly >= outcome.model_anomaly else len(texts)
            texts.insert(at, phrase(outcome.tail_index, obs.activity, obs.base, obs.hour))
            names.insert(at, BEHAVIOURS[outcome.tail_index])
        high = outcome.anomaly >= self.high_above and obs.base.trusted
        return Finding(
            detector=NAME, type=FINDING_TYPE, score=outcome.anomaly,
            location="envelope", evidence="; ".join(dict.fromkeys(texts)),
            confidence=Confidence.HIGH if high else (
                Confidence.MEDIUM if outcome.anomaly >= 0.9 else Confidence.LOW),
            details=(("model", self._scorer.kind), ("anomaly", f"{outcome.anomaly:.3f}"),
                     ("model_anomaly", f"{outcome.model_anomaly:.3f}"),
                     ("tail_anomaly", f"{outcome.tail_anomaly:.3f}"),
                     ("baseline", obs.base.state), ("reason", names[0]),
                     ("reasons", ",".join(dict.fromkeys(names))),
                     ("action", self._on_high if high else "none")),
        )

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

    def held_senders(self) -> int:
        """Senders held until a reviewer clears them (for a gauge)."""
        if self._holds is None:
            return 0
        try:
            return len(self._holds.all())
        except StoreUnavailable:
            return 0

    def describe(self) -> dict[str, str]:
        return dict(self._info, model=self._scorer.kind, store=self._store.kind,
                    report_above=str(self.report_above), features=str(len(FEATURES)))

    def close(self) -> None:
        self._store.close()
        if self._holds is not None:
            self._holds.close()


def combined(model: float, tail: float, trusted: bool) -> float:
    """The reported anomaly: the larger of model and tail model (the model damped while the
    sender is learning)."""
    return max(model, tail) if trusted else max(tail, model * LEARNING_MODEL)


def hold_finding(outcome: Outcome, action: str) -> Finding:
    since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(outcome.held_since or 0.0))
    why = f" after {outcome.engaged}" if outcome.engaged else ""
    engaged = (("engaged", "1"),) if outcome.engaged else ()
    return Finding(
        detector=NAME, type=HOLD_TYPE, score=1.0, location="envelope",
        evidence=f"sender held since {since}{why}; every message waits until a reviewer runs "
                 "`mailwarden senders clear`",
        confidence=Confidence.HIGH, details=(("held_since", f"{outcome.held_since or 0:.0f}"),
                                             ("reason", HOLD_TYPE), ("action", action),
                                             *engaged))


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
    tails = bundle.manifest.get("tails")
    info = {"trained_at": str(bundle.manifest.get("trained_at", "")),
            "version": str(bundle.manifest.get("format", "")),
            "training": str(bundle.manifest.get("training", {}).get("source", "")),
            "model_dir": str(Path(settings.model_dir))}
    return SendingDetector(
        scorer, prior, settings.features, store, report_above=settings.report_above,
        high_above=settings.high_above, tails=Tails.from_json(tails) if tails else None,
        hold=settings.hold, holds=open_holds(settings, context),
        actions=(settings.on_high_confidence, settings.on_sender_hold),
        wall_clock=context.run_mode == "milter",
        retry_seconds=settings.retry_seconds, retry_max_seconds=settings.retry_max_seconds,
        log_every_seconds=settings.log_every_seconds, info=info,
    )


__all__ = ["MODEL_KINDS", "SendingDetector", "attachment_bytes", "build", "event_from_message"]
