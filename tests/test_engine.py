"""Engine: detectors run, failures isolated, time budget enforced, direction classified."""

from __future__ import annotations

import time
from pathlib import Path

from mailwarden.engine import Engine
from mailwarden.message import Envelope, Message
from mailwarden.metrics import Metrics
from mailwarden.verdict import Action, Direction

from conftest import make_config, message_bytes


def msg(marker: str | None = None, direction: Direction = Direction.OUTBOUND) -> Message:
    data = message_bytes(marker=marker)
    return Message(Envelope("Q1", "a@example.org", ("b@example.net",), direction), data, len(data))


def metric(engine: Engine, name: str, labels: dict[str, str] | None = None) -> float:
    value = engine.metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0


def test_clean_message_is_accepted(engine: Engine) -> None:
    decision = engine.scan(msg())
    assert decision.verdict is Action.ACCEPT
    assert decision.scores == {"testmarker": 0.0}
    assert decision.ref.startswith("MW-")


def test_marker_drives_policy(engine: Engine) -> None:
    assert engine.scan(msg("quarantine")).verdict is Action.QUARANTINE
    assert engine.scan(msg("reject")).verdict is Action.REJECT
    assert engine.scan(msg("tempfail")).verdict is Action.TEMPFAIL
    labels = {"action": "reject", "verdict": "reject", "direction": "outbound", "mode": "enforce"}
    assert metric(engine, "mailwarden_messages_total", labels) == 1.0


def test_detector_crash_is_isolated(engine: Engine) -> None:
    decision = engine.scan(msg("crash"))
    assert decision.verdict is Action.ACCEPT
    assert decision.errors == ("testmarker: RuntimeError",)
    assert metric(engine, "mailwarden_detector_errors_total", {"detector": "testmarker"}) == 1.0


def test_stalled_detector_is_cut_off_by_budget(tmp_path: Path) -> None:
    engine = Engine(make_config(tmp_path, timeout=0.3, stall=3.0), Metrics())
    try:
        started = time.monotonic()
        decision = engine.scan_within_budget(msg("stall"))
        elapsed = time.monotonic() - started
        assert elapsed < 2.0  # the detector sleeps 3 s; the budget is 0.3 s
        assert decision.action is Action.ACCEPT
        assert decision.errors == ("time budget of 0.3s exceeded",)
        assert metric(engine, "mailwarden_scan_timeouts_total") == 1.0
    finally:
        engine.close()


def test_stall_with_tempfail_policy(tmp_path: Path) -> None:
    config = make_config(tmp_path, timeout=0.2, stall=2.0, extra="")
    from dataclasses import replace

    config = replace(config, milter=replace(config.milter, on_error=Action.TEMPFAIL))
    engine = Engine(config, Metrics())
    try:
        assert engine.scan_within_budget(msg("stall")).action is Action.TEMPFAIL
    finally:
        engine.close()


def test_direction(engine: Engine) -> None:
    assert engine.direction("alice", "203.0.113.9") is Direction.OUTBOUND
    assert engine.direction(None, "127.0.0.1") is Direction.OUTBOUND
    assert engine.direction(None, "::1") is Direction.OUTBOUND
    assert engine.direction(None, None) is Direction.OUTBOUND
    assert engine.direction(None, "203.0.113.9") is Direction.INBOUND
    assert engine.direction(None, "not-an-ip") is Direction.INBOUND


def test_inbound_not_acted_on(engine: Engine) -> None:
    assert engine.scan(msg("quarantine", Direction.INBOUND)).verdict is Action.ACCEPT
    # rules without a direction apply to both
    assert engine.scan(msg("reject", Direction.INBOUND)).verdict is Action.REJECT


def test_weight_scales_finding_scores(tmp_path: Path) -> None:
    text_extra = ""
    config = make_config(tmp_path, extra=text_extra)
    from dataclasses import replace

    detectors = tuple(replace(d, weight=0.5) if d.name == "testmarker" else d
                      for d in config.detectors)
    engine = Engine(replace(config, detectors=detectors), Metrics())
    try:
        decision = engine.scan(msg("quarantine"))
        assert decision.score == 3.0  # 6.0 x 0.5, below the quarantine threshold
        assert decision.verdict is Action.ACCEPT
    finally:
        engine.close()
