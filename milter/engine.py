"""The scoring engine: message snapshot in, decision out, with no knowledge of the MTA.

An :class:`Engine` is built once from a :class:`~mailwarden.config.Config` (detectors loaded,
models read, unavailable detectors disabled and reported, or start-up refused when ``required``)
and is then immutable: a reload builds a new engine and swaps it in. :meth:`Engine.scan` runs the
enabled detectors in order within the per-message time budget, hands their results to the policy
and records metrics; :meth:`Engine.scan_within_budget` additionally cuts off a stalled scan from a
worker pool, so a hung detector can never hold a message past the budget.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import ipaddress
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from mailwarden.config import Config, DetectorConfig
from mailwarden.detectors.base import Detector, DetectorContext, DetectorUnavailable, registrations
from mailwarden.explain import log_line, needs_line, thresholds_for
from mailwarden.message import Message
from mailwarden.metrics import Metrics
from mailwarden.options import ConfigError
from mailwarden.policy import decide, failure_decision
from mailwarden.scanpool import PoolExhausted, ScanPool
from mailwarden.sinks.base import build_sinks, deliver
from mailwarden.verdict import Decision, DetectorResult, Direction

log = logging.getLogger("mailwarden.engine")


@dataclass(frozen=True, slots=True)
class LoadedDetector:
    name: str
    weight: float
    detector: Detector


@dataclass(frozen=True, slots=True)
class DisabledDetector:
    name: str
    reason: str
    configured: bool  # True when the config enabled it but it could not load


class Engine:
    def __init__(self, config: Config, metrics: Metrics, run_mode: str = "milter"):
        self.config = config
        self.metrics = metrics
        self.detectors, self.disabled = _load_detectors(config, run_mode)
        self.sinks = build_sinks(config, metrics) if run_mode == "milter" else ()
        self._pool = ScanPool(config.milter.workers)
        self._report_detectors()
        # Metric children resolved once (labels() takes a lock and a dict lookup per call).
        stage = metrics.scan_seconds.labels
        self._t_parse, self._t_detectors, self._t_policy = (
            stage("parse"), stage("detectors"), stage("policy"))
        self._t_total, self._t_sinks = stage("total"), stage("sinks")
        self._detector_seconds = {d.name: metrics.detector_seconds.labels(d.name)
                                  for d in self.detectors}

    def _report_detectors(self) -> None:
        self.metrics.detectors_loaded(  # replaces the previous engine's series (reload)
            [(d.name, d.detector.describe()) for d in self.detectors],
            [(off.name, "unavailable" if off.configured else "disabled") for off in self.disabled],
        )
        # Loud: mail is now scored without it. Once per daemon: pre-fork workers build the same
        # engine, and worker 0 speaks for all of them.
        level = logging.ERROR if self.config.worker_index == 0 else logging.DEBUG
        for off in self.disabled:
            if off.configured:
                log.log(level, "detector %s LOST: enabled in the configuration but unavailable, "
                        "running without it: %s", off.name, off.reason)

    def direction(self, auth_user: str | None, client_addr: str | None) -> Direction:
        """Outbound when authenticated, from an internal network, or submitted locally."""
        if auth_user:
            return Direction.OUTBOUND
        if not client_addr:
            return Direction.OUTBOUND  # local submission (sendmail(1), non_smtpd_milters)
        try:
            addr = ipaddress.ip_address(client_addr.strip("[]").removeprefix("IPv6:"))
        except ValueError:
            return Direction.INBOUND
        # ::ffff:a.b.c.d (a dual-stack MTA's IPv4 client) must match the IPv4 networks
        addr = getattr(addr, "ipv4_mapped", None) or addr
        nets = self.config.milter.internal_networks
        return Direction.OUTBOUND if any(addr in n for n in nets) else Direction.INBOUND

    def scan(self, message: Message, deadline: float | None = None) -> Decision:
        """Score one message; never raises for a detector's failure."""
        started = time.monotonic()
        if deadline is None:
            deadline = started + self.config.milter.timeout_seconds
        _parse_once(message)
        parsed = time.monotonic()
        self._t_parse.observe(parsed - started)
        results = [self._run_one(d, message, deadline) for d in self.detectors]
        scored = time.monotonic()
        self._t_detectors.observe(scored - parsed)
        ref = new_ref()
        decision = decide(
            self.config.policy, self.config.milter.mode, message.envelope.direction, results,
            ref, seconds=time.monotonic() - started,
        )
        self._t_policy.observe(time.monotonic() - scored)
        if message.truncated:
            self.metrics.truncated.inc()
        self.metrics.record(decision, message.envelope.direction, message.size)
        return decision

    def _run_one(self, loaded: LoadedDetector, message: Message, deadline: float) -> DetectorResult:
        name = loaded.name
        if time.monotonic() >= deadline:
            self.metrics.detector_errors.labels(name).inc()
            return DetectorResult(name, error="skipped: time budget exhausted")
        started = time.monotonic()
        try:
            result = loaded.detector.analyse(message)
        except Exception as exc:
            log.exception("qid=%s detector %s failed", message.envelope.queue_id, name)
            result = DetectorResult(name, error=f"{type(exc).__name__}")
        elapsed = time.monotonic() - started
        timer = self._detector_seconds.get(name) or self.metrics.detector_seconds.labels(name)
        timer.observe(elapsed)
        if result.error:
            self.metrics.detector_errors.labels(name).inc()
        findings = result.findings
        if loaded.weight != 1.0 and findings:
            findings = tuple(dataclasses.replace(f, score=f.score * loaded.weight)
                             for f in findings)
        return DetectorResult(result.detector, result.scores, findings, result.error, elapsed)

    def scan_within_budget(self, message: Message,
                           adjust: Callable[[Decision], Decision] | None = None) -> Decision:
        """:meth:`scan` on a worker thread, cut off after ``timeout_seconds`` (fail by policy);
        the final decision then goes to every sink (audit, notifications, quarantine records).
        ``adjust`` (the adapter's: what this MTA connection can do) may rewrite the decision
        first, so the sinks record what is applied (no quarantine record for a hold the MTA
        cannot do)."""
        started = time.monotonic()
        decision = self._exempt(message) or self._scan_or_fail(message)
        if adjust is not None:
            decision = adjust(decision)
        if needs_line(decision):  # every hold, refusal and deferral says what it adds up to
            log.info("%s", log_line(message.envelope.queue_id, decision, thresholds_for(
                self.config.policy, message.envelope.direction)))
        scanned = time.monotonic()
        deliver(self.sinks, message, decision, self._sink_failed)
        done = time.monotonic()
        self._t_sinks.observe(done - scanned)
        self._t_total.observe(done - started)
        return decision

    def _exempt(self, message: Message) -> Decision | None:
        """A sink may vouch for a message it sent itself (the notifier's signed alert mail):
        its decision replaces the scan, so alerts are never scanned into a loop."""
        for sink in self.sinks:
            exempt = getattr(sink, "exempt", None)
            decision: Decision | None = exempt(message) if exempt is not None else None
            if decision is not None:
                self.metrics.record(decision, message.envelope.direction, message.size)
                return decision
        return None

    def _sink_failed(self, name: str) -> None:
        self.metrics.detector_errors.labels(f"sink:{name}").inc()

    def _scan_or_fail(self, message: Message) -> Decision:
        budget = self.config.milter.timeout_seconds
        deadline = time.monotonic() + budget
        try:
            decision: Decision = self._pool.run(lambda: self.scan(message, deadline), budget)
            return decision
        except concurrent.futures.TimeoutError:
            self.metrics.scan_timeouts.inc()
            error = f"time budget of {budget:g}s exceeded"
        except PoolExhausted as exc:
            self.metrics.scan_timeouts.inc()
            error = f"not scanned: {exc}"
        except Exception as exc:
            log.exception("qid=%s scan failed", message.envelope.queue_id)
            error = f"scan error: {type(exc).__name__}"
        decision = failure_decision(self.config.milter.on_error, self.config.milter.mode,
                                    new_ref(), error)
        self.metrics.record(decision, message.envelope.direction, message.size)
        return decision

    def close(self) -> None:
        self._pool.shutdown()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", sink.name)
        for d in self.detectors:
            try:
                d.detector.close()
            except Exception:
                log.exception("closing detector %s failed", d.name)


def _parse_once(message: Message) -> None:
    """Parse before the detectors (they share the tree) so parsing is a stage of its own."""
    try:
        message.parsed  # noqa: B018 - cached_property: the access is the point
    except Exception:  # noqa: BLE001 - each detector that needs the tree reports its own error
        log.debug("qid=%s message did not parse", message.envelope.queue_id)


def new_ref() -> str:
    """A reference ID that can be quoted to the sender without disclosing anything."""
    return "MW-" + uuid.uuid4().hex[:12].upper()


def _load_detectors(
    config: Config, run_mode: str
) -> tuple[tuple[LoadedDetector, ...], tuple[DisabledDetector, ...]]:
    known = registrations()
    context = DetectorContext(
        model_dir=config.model_dir, state_dir=config.state_dir, run_mode=run_mode,
        timezone=config.timezone,
    )
    loaded, disabled = [], []
    for dc in config.detectors:
        if not dc.enabled:
            disabled.append(DisabledDetector(dc.name, "not enabled in config", configured=False))
            continue
        try:
            detector = known[dc.name].factory(dc.options, context)
        except DetectorUnavailable as exc:
            _refuse_if_required(dc, str(exc))
            disabled.append(DisabledDetector(dc.name, str(exc), configured=True))
            continue
        loaded.append(LoadedDetector(dc.name, dc.weight, detector))
    return tuple(loaded), tuple(disabled)


def _refuse_if_required(dc: DetectorConfig, reason: str) -> None:
    if dc.required:
        raise ConfigError(f"detectors.{dc.name}", f"required detector unavailable: {reason}")
