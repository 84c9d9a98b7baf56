"""Prometheus metrics: every metric of the process, defined in one place with bounded labels.

The engine and the milter adapter record into one :class:`Metrics` object per process, created
with its own ``CollectorRegistry`` (so tests and the CLI get isolated registries) and exported by
``mailwarden run`` on a loopback HTTP port. Label values come only from closed sets (verdicts,
directions, detector names, finding types, callback names): never a sender, recipient or subject.
"""

from __future__ import annotations

from mailwarden.verdict import Action, Decision, Direction
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

NAMESPACE = "mailwarden"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = tuple(float(2**n) for n in range(10, 27, 2))  # 1 KiB .. 64 MiB
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
CALLBACKS = ("connect", "envfrom", "envrcpt", "header", "eoh", "body", "eom", "abort", "close")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
        self.reloads = Counter(
            "config_reloads", "Configuration reloads by result", ["result"],
            namespace=NAMESPACE, registry=r)
        self.sending_score = Histogram(
            "sending_anomaly_score", "Sending-pattern anomaly score per message",
            buckets=SCORE_BUCKETS, namespace=NAMESPACE, registry=r)
        self._initialise_labels()

    def _initialise_labels(self) -> None:
        for action in Action:
            for direction in Direction:
                for mode in ("observe", "enforce"):
                    self.messages.labels(action.value, action.value, direction.value, mode)
                self.would_have.labels(action.value, direction.value)
        for cb in CALLBACKS:
            self.callback_errors.labels(cb)
        for stage in ("total", "parse", "detectors", "policy"):
            self.scan_seconds.labels(stage)

    def record(self, decision: Decision, direction: Direction, size: int) -> None:
        self.messages.labels(
            decision.action.value, decision.verdict.value, direction.value, decision.mode
        ).inc()
        if decision.mode == "observe" and decision.verdict is not Action.ACCEPT:
            self.would_have.labels(decision.verdict.value, direction.value).inc()
        for f in decision.findings:
            self.findings.labels(f.detector, f.type).inc(f.count)
        self.scan_seconds.labels("total").observe(decision.seconds)
        self.message_bytes.observe(size)
        anomaly = decision.scores.get("sending_anomaly")
        if anomaly is not None:
            self.sending_score.observe(anomaly)

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)
