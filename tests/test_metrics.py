"""Metrics: stages, anomaly reasons, model info on reload, scrape-time gauges, bounded labels."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mailwarden.config import load_config
from mailwarden.engine import Engine
from mailwarden.message import Envelope, Message
from mailwarden.metrics import ANOMALY_REASONS, STAGES, Metrics, model_info
from mailwarden.verdict import Action, Confidence, Decision, Direction, Finding

from conftest import REPO, config_text, make_config, message_bytes

SUBJECT = "Salaries of the board 2024"


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def msg(marker: str | None = None, sender: str = "alice@example.org") -> Message:
    data = message_bytes(subject=SUBJECT, marker=marker, sender=sender)
    return Message(Envelope("Q1", sender, ("bob@example.net",)), data, len(data))


def test_every_stage_is_timed_once_per_message(tmp_path: Path) -> None:
    engine = Engine(make_config(tmp_path), Metrics())
    try:
        for marker in (None, "quarantine", "reject"):
            engine.scan_within_budget(msg(marker))
    finally:
        engine.close()
    for stage in STAGES:
        assert value(engine.metrics, "mailwarden_scan_duration_seconds_count", stage=stage) == 3
    total = value(engine.metrics, "mailwarden_scan_duration_seconds_sum", stage="total")
    parts = sum(value(engine.metrics, "mailwarden_scan_duration_seconds_sum", stage=s)
                for s in ("parse", "detectors", "policy", "sinks"))
    assert 0 < parts <= total
    assert value(engine.metrics, "mailwarden_message_size_bytes_count") == 3


def test_total_includes_a_budget_cut_off(tmp_path: Path) -> None:
    engine = Engine(make_config(tmp_path, timeout=0.3, stall=2.0), Metrics())
    try:
        engine.scan_within_budget(msg("stall"))
    finally:
        engine.close()
    assert value(engine.metrics, "mailwarden_scan_duration_seconds_count", stage="total") == 1
    assert value(engine.metrics, "mailwarden_scan_duration_seconds_sum", stage="total") >= 0.3


def anomaly_decision(reasons: str, mode: str = "enforce") -> Decision:
    finding = Finding("sending", "sending_anomaly", 5.4, 1, "envelope", "", Confidence.HIGH,
                      (("reason", reasons.split(",", maxsplit=1)[0]), ("reasons", reasons)))
    verdict = Action.QUARANTINE
    return Decision(verdict, verdict if mode == "enforce" else Action.ACCEPT, 5.4,
                    {"sending_anomaly": 0.93}, (finding,), (), "MW-1", mode)


def test_anomalies_by_reason_and_would_have() -> None:
    metrics = Metrics()
    metrics.record(anomaly_decision("new_domains_10m,msgs_10m"), Direction.OUTBOUND, 100)
    metrics.record(anomaly_decision("msgs_10m,alice@example.org", "observe"), Direction.OUTBOUND,
                   100)
    assert value(metrics, "mailwarden_sending_anomalies_total", reason="msgs_10m") == 2
    assert value(metrics, "mailwarden_sending_anomalies_total", reason="new_domains_10m") == 1
    assert value(metrics, "mailwarden_sending_anomalies_total", reason="other") == 1
    assert value(metrics, "mailwarden_sending_anomaly_score_count") == 2
    assert value(metrics, "mailwarden_sending_anomaly_score_bucket", le="0.9") == 0
    assert value(metrics, "mailwarden_sending_anomaly_score_bucket", le="0.95") == 2
    assert value(metrics, "mailwarden_observe_would_have_total", verdict="quarantine",
                 direction="outbound") == 1
    assert value(metrics, "mailwarden_messages_total", action="accept", verdict="quarantine",
                 direction="outbound", mode="observe") == 1
    reasons = {s.labels["reason"] for m in metrics.registry.collect() for s in m.samples
               if s.name == "mailwarden_sending_anomalies_total"}
    assert reasons == {*ANOMALY_REASONS, "other"}


def test_model_info_is_replaced_on_reload_and_normalised() -> None:
    metrics = Metrics()
    metrics.detectors_loaded([("sending", {"model": "isolation_forest",
                                           "trained_at": "2024-09-01T00:00:00Z"})],
                             [("content", "unavailable")])
    metrics.detectors_loaded([("sending", {"model": "lof", "version": "2"})],
                             [("content", "disabled")])
    infos = [s.labels for m in metrics.registry.collect() for s in m.samples
             if s.name == "mailwarden_model_info"]
    assert infos == [{"detector": "sending", "model": "lof", "version": "2", "trained": ""}]
    states = {(s.labels["detector"], s.labels["state"]): s.value
              for m in metrics.registry.collect() for s in m.samples
              if s.name == "mailwarden_detector_enabled"}
    assert states == {("sending", "enabled"): 1.0, ("content", "disabled"): 0.0}
    assert metrics.registry.get_sample_value("mailwarden_detector_errors_total",
                                             {"detector": "sending"}) == 0.0
    assert metrics.registry.get_sample_value("mailwarden_detector_duration_seconds_count",
                                             {"detector": "sending"}) == 0.0
    assert metrics.models()["sending"].model == "lof"
    assert model_info({"model": "x" * 500, "trained": "2024"}).model == "x" * 80


class Stateful:
    def __init__(self, count: int, healthy: bool | None):
        self.count, self.healthy = count, healthy

    def anomalous_senders(self) -> int:
        return self.count

    def health(self) -> bool:
        if self.healthy is None:
            raise ConnectionError("redis went away")
        return self.healthy


def test_scrape_reads_the_current_engine() -> None:
    def engine(budget: float, *detectors: tuple[str, object]) -> SimpleNamespace:
        loaded = [SimpleNamespace(name=n, detector=d) for n, d in detectors]
        config = SimpleNamespace(milter=SimpleNamespace(timeout_seconds=budget))
        return SimpleNamespace(detectors=loaded, config=config)

    source = SimpleNamespace(engine=engine(5.0, ("sending", Stateful(4, True)),
                                           ("leak", object())))
    metrics = Metrics()
    metrics.watch(source)
    assert value(metrics, "mailwarden_senders_anomalous", detector="sending") == 4
    assert value(metrics, "mailwarden_state_store_up", detector="sending") == 1
    assert metrics.registry.get_sample_value("mailwarden_state_store_up",
                                             {"detector": "leak"}) is None
    assert value(metrics, "mailwarden_scan_budget_seconds") == 5.0
    source.engine = engine(2.5, ("sending", Stateful(0, None)))  # a reload swapped the engine
    assert value(metrics, "mailwarden_state_store_up", detector="sending") == 0
    assert value(metrics, "mailwarden_senders_anomalous", detector="sending") == 0
    assert value(metrics, "mailwarden_scan_budget_seconds") == 2.5


def test_no_label_carries_an_address_or_subject(tmp_path: Path) -> None:
    extra = (f'[detectors.leak]\nenabled = true\n[detectors.sending]\nenabled = true\n'
             f'model_dir = "{REPO}/models/sending"\n')
    engine = Engine(load_config(tmp_path / "t.toml", text=config_text(tmp_path, extra=extra)),
                    Metrics())
    try:
        for i, marker in enumerate((None, "quarantine", "reject", "crash", "bogus-type")):
            engine.scan_within_budget(msg(marker, sender=f"user{i}@corp{i}.example"))
    finally:
        engine.close()
    values = {v for m in engine.metrics.registry.collect() for s in m.samples
              for v in s.labels.values()}
    assert not any("@" in v or "corp" in v or "Salaries" in v for v in values)
    assert {"test_quarantine", "test_reject", "test_marker", "sending", "leak"} <= values
