"""Prometheus metrics: every metric of the process, defined in one place with bounded labels.

The engine, the milter adapter and the decision sinks record into one :class:`Metrics` object per
process, created with its own ``CollectorRegistry`` (so tests and the CLI get isolated registries)
and exported by ``mailwarden run`` on a loopback HTTP port. Label values come only from closed
sets (verdicts, directions, stages, detector names, finding types, callback names, a fixed list of
anomaly reasons): never a sender, recipient or subject. Values that belong to the *current* engine
(senders currently anomalous, state-store health) are read at scrape time through
:meth:`Metrics.watch`, so a reload never leaves a stale series behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mailwarden.detectors.sending.baseline import BEHAVIOURS
from mailwarden.detectors.sending.names import FEATURES, FINDING_TYPE, HOLD_TYPE, SCORE
from mailwarden.verdict import Action, Decision, Direction, Finding

log = logging.getLogger("mailwarden.metrics")

NAMESPACE = "mailwarden"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = tuple(float(2**n) for n in range(10, 27, 2))  # 1 KiB .. 64 MiB
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
CALLBACKS = ("connect", "envfrom", "envrcpt", "header", "eoh", "body", "eom", "abort", "close")
# total: what the MTA waits for at end of message (scan or budget cut-off, plus sinks).
STAGES = ("total", "parse", "detectors", "policy", "sinks")
# The sending detector's feature names and its baseline's behaviours: the only values of the
# anomaly ``reason`` label.
ANOMALY_TYPE = FINDING_TYPE
ANOMALY_REASONS = FEATURES + BEHAVIOURS
OTHER = "other"
LABEL_MAX = 80


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the model-info metric and the audit log say about one loaded detector."""

    model: str
    version: str
    trained: str


def model_info(describe: Mapping[str, str]) -> ModelInfo:
    """Normalise a detector's ``describe()`` (key spellings differ between detectors)."""
    def pick(*keys: str) -> str:
        return next((str(describe[k])[:LABEL_MAX] for k in keys if describe.get(k)), "")

    return ModelInfo(pick("model") or "none", pick("version", "model_version"),
                     pick("trained", "trained_at", "training_date"))


def anomaly_reasons(finding: Finding) -> tuple[str, ...]:
    """The reason labels of a sending-anomaly finding (unknown names become ``other``)."""
    details = dict(finding.details)
    names = (details.get("reasons") or details.get("reason") or "").split(",")
    out = [n.strip() if n.strip() in ANOMALY_REASONS else OTHER for n in names if n.strip()]
    return tuple(dict.fromkeys(out)) or (OTHER,)


class _Engine(Protocol):
    @property
    def detectors(self) -> Sequence[Any]: ...

    @property
    def config(self) -> Any: ...


class EngineSource(Protocol):
    """The runtime (or anything) that knows the current engine."""

    @property
    def engine(self) -> _Engine: ...


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self._models: dict[str, ModelInfo] = {}
        self._lock = threading.Lock()
        self._define_traffic(self.registry)
        self._define_health(self.registry)
        self._define_sinks(self.registry)
        self._initialise_labels()

    def _define_traffic(self, r: CollectorRegistry) -> None:
        self.messages = Counter(
            "messages", "Messages scored, by applied action, policy verdict, direction and mode",
            ["action", "verdict", "direction", "mode"], namespace=NAMESPACE, registry=r)
        self.would_have = Counter(
            "observe_would_have", "Messages that enforce mode would have acted on (observe mode)",
            ["verdict", "direction"], namespace=NAMESPACE, registry=r)
        self.findings = Counter(
            "findings", "Findings by detector and type (summed counts)",
            ["detector", "type"], namespace=NAMESPACE, registry=r)
        self.scan_seconds = Histogram(
            "scan_duration_seconds", "Time to score one message, by stage",
            ["stage"], buckets=LATENCY_BUCKETS, namespace=NAMESPACE, registry=r)
        self.detector_seconds = Histogram(
            "detector_duration_seconds", "Time one detector took for one message",
            ["detector"], buckets=LATENCY_BUCKETS, namespace=NAMESPACE, registry=r)
        self.message_bytes = Histogram(
            "message_size_bytes", "Size of scored messages", buckets=SIZE_BUCKETS,
            namespace=NAMESPACE, registry=r)
        self.sending_score = Histogram(
            "sending_anomaly_score", "Sending-pattern anomaly score per message",
            buckets=SCORE_BUCKETS, namespace=NAMESPACE, registry=r)
        self.anomalies = Counter(
            "sending_anomalies", "Sending-anomaly findings by reason (a message counts once for "
            "each of its top reasons)", ["reason"], namespace=NAMESPACE, registry=r)
        self.sending_baseline = Counter(
            "sending_baseline_messages", "Messages scored against the sender's own (trusted) "
            "baseline or while the sender is still learning (compared with the org's new "
            "senders)", ["state"], namespace=NAMESPACE, registry=r)
        self.sender_holds = Counter(
            "sender_hold_episodes", "Sender holds engaged by the sending detector (one per "
            "episode)", namespace=NAMESPACE, registry=r)
        self.sender_held_messages = Counter(
            "sender_held_messages", "Messages of held senders (each held until a reviewer "
            "clears the sender)", namespace=NAMESPACE, registry=r)

    def _define_health(self, r: CollectorRegistry) -> None:
        self.callback_errors = Counter(
            "milter_callback_errors", "Exceptions caught in milter callbacks",
            ["callback"], namespace=NAMESPACE, registry=r)
        self.detector_errors = Counter(
            "detector_errors", "Detector failures (exception, store down, budget)",
            ["detector"], namespace=NAMESPACE, registry=r)
        self.scan_timeouts = Counter(
            "scan_timeouts", "Messages whose scan ran past the per-message time budget",
            namespace=NAMESPACE, registry=r)
        self.truncated = Counter(
            "messages_truncated", "Messages larger than max_scan_bytes, scored on a prefix",
            namespace=NAMESPACE, registry=r)
        self.detector_enabled = Gauge(
            "detector_enabled", "1 if the detector is loaded, 0 if disabled or unavailable",
            ["detector", "state"], namespace=NAMESPACE, registry=r)
        self.model_info = Gauge(
            "model_info", "Loaded models (value 1) with their version and training date",
            ["detector", "model", "version", "trained"], namespace=NAMESPACE, registry=r)
        self.quarantine_fallbacks = Counter(
            "quarantine_fallbacks", "Messages the policy would hold, answered with the "
            "configured fallback because the MTA did not offer the quarantine action",
            ["action"], namespace=NAMESPACE, registry=r)
        self.reloads = Counter(
            "config_reloads", "Configuration reloads by result", ["result"],
            namespace=NAMESPACE, registry=r)

    def _define_sinks(self, r: CollectorRegistry) -> None:
        self.audit_records = Counter(
            "audit_records", "Audit-log lines by result (written, failed)", ["result"],
            namespace=NAMESPACE, registry=r)
        self.notify_events = Counter(
            "notify_events", "Held or refused messages seen by the notifier, by what became of "
            "them (queued, duplicate, dropped; episode: a held sender's later message, alerted "
            "once when the hold engaged)", ["result"], namespace=NAMESPACE, registry=r)
        self.notifications = Counter(
            "notifications", "Alert mails by recipient kind (admin, sender) and result "
            "(sent, failed)", ["recipient", "result"], namespace=NAMESPACE, registry=r)
        self.alert_exempt = Counter(
            "alert_mail_exempt", "Own alert mails recognised by their token and passed unscanned",
            namespace=NAMESPACE, registry=r)

    def _initialise_labels(self) -> None:
        for action in Action:
            for direction in Direction:
                for mode in ("observe", "enforce"):
                    self.messages.labels(action.value, action.value, direction.value, mode)
                self.would_have.labels(action.value, direction.value)
        for cb in CALLBACKS:
            self.callback_errors.labels(cb)
        for stage in STAGES:
            self.scan_seconds.labels(stage)
        for reason in (*ANOMALY_REASONS, OTHER):
            self.anomalies.labels(reason)
        for result in ("success", "failure"):
            self.reloads.labels(result)
        for fallback in (Action.TEMPFAIL, Action.REJECT):
            self.quarantine_fallbacks.labels(fallback.value)
        for result in ("written", "failed"):
            self.audit_records.labels(result)
        for result in ("queued", "duplicate", "dropped", "episode"):
            self.notify_events.labels(result)
        for recipient in ("admin", "sender"):
            for result in ("sent", "failed"):
                self.notifications.labels(recipient, result)

    def record(self, decision: Decision, direction: Direction, size: int) -> None:
        """Count one final decision (the ``total`` stage is timed by the engine)."""
        self.messages.labels(
            decision.action.value, decision.verdict.value, direction.value, decision.mode
        ).inc()
        if decision.mode == "observe" and decision.verdict is not Action.ACCEPT:
            self.would_have.labels(decision.verdict.value, direction.value).inc()
        for f in decision.findings:
            self.findings.labels(f.detector, f.type).inc(f.count)
            if f.type == ANOMALY_TYPE:
                for reason in anomaly_reasons(f):
                    self.anomalies.labels(reason).inc()
        self.message_bytes.observe(size)
        anomaly = decision.scores.get(SCORE)
        if anomaly is not None:
            self.sending_score.observe(anomaly)
        self._sending(decision)

    def _sending(self, decision: Decision) -> None:
        trusted = decision.scores.get("sending_trusted")
        if trusted is not None:
            self.sending_baseline.labels("trusted" if trusted else "learning").inc()
        for f in decision.findings:
            if f.type == HOLD_TYPE:
                self.sender_held_messages.inc()
                if dict(f.details).get("engaged"):
                    self.sender_holds.inc()

    def detectors_loaded(self, loaded: Iterable[tuple[str, Mapping[str, str]]],
                         disabled: Iterable[tuple[str, str]]) -> None:
        """Replace the detector and model-info series with those of a newly built engine."""
        models = {name: model_info(info) for name, info in loaded}
        with self._lock:
            self._models = models
            self.detector_enabled.clear()
            self.model_info.clear()
            for name, m in models.items():
                self.detector_errors.labels(name)  # zero series: rate() sees the first increase
                self.detector_seconds.labels(name)
                self.detector_enabled.labels(name, "enabled").set(1)
                self.model_info.labels(name, m.model, m.version, m.trained).set(1)
            for name, state in disabled:
                self.detector_enabled.labels(name, state).set(0)

    def models(self) -> dict[str, ModelInfo]:
        """The models of the most recently loaded engine (for the audit log)."""
        with self._lock:
            return dict(self._models)

    def watch(self, source: EngineSource) -> None:
        """Export gauges read from ``source.engine``'s detectors at every scrape."""
        self.registry.register(EngineCollector(source))

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)


class EngineCollector(Collector):  # type: ignore[misc]
    """Scrape-time gauges of the current engine: the scan budget, and of detectors that keep
    state, ``anomalous_senders()`` and ``health()``."""

    def __init__(self, source: EngineSource):
        self._source = source

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        anomalous, store_up, budget, held = self._families()
        engine = self._source.engine
        budget.add_metric([], float(engine.config.milter.timeout_seconds))
        for loaded in engine.detectors:
            detector = loaded.detector
            count = _probe(loaded.name, "anomalous_senders", detector)
            if count is not None:
                anomalous.add_metric([loaded.name], count)
            holds = _probe(loaded.name, "held_senders", detector)
            if holds is not None:
                held.add_metric([loaded.name], holds)
            healthy = _probe(loaded.name, "health", detector)
            if healthy is not None:
                store_up.add_metric([loaded.name], 1.0 if healthy > 0 else 0.0)
        yield anomalous
        yield store_up
        yield budget
        yield held

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                             GaugeMetricFamily]:
        return (
            GaugeMetricFamily(f"{NAMESPACE}_senders_anomalous",
                              "Senders whose latest message was anomalous (recent window)",
                              labels=["detector"]),
            GaugeMetricFamily(f"{NAMESPACE}_state_store_up",
                              "1 if the detector's state store answers, else 0",
                              labels=["detector"]),
            GaugeMetricFamily(f"{NAMESPACE}_scan_budget_seconds",
                              "Per-message time budget (milter.timeout_seconds)"),
            GaugeMetricFamily(f"{NAMESPACE}_senders_held",
                              "Senders held until a reviewer clears them (sender hold)",
                              labels=["detector"]),
        )


def _probe(name: str, method: str, detector: object) -> float | None:
    """Call ``detector.method()`` if it exists; a failure reads as 0 (store down)."""
    fn = getattr(detector, method, None)
    if not callable(fn):
        return None
    try:
        return float(fn())
    except Exception:  # a scrape must never fail because a backend is down
        log.warning("detector %s: %s() failed during scrape", name, method, exc_info=True)
        return 0.0
