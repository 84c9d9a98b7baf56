"""The quarantine sink in the engine, its settings, and the metrics read from the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden.config import load_config
from mailwarden.engine import Engine
from mailwarden.message import Envelope, Message
from mailwarden.metrics import Metrics
from mailwarden.options import ConfigError
from mailwarden.quarantine.records import Review
from mailwarden.quarantine.sink import read_settings
from mailwarden.quarantine.store import FILENAME, QuarantineStore

from conftest import REPO, config_text, make_config, message_bytes


def message(marker: str | None, queue_id: str = "4XyZ1AbC2D") -> Message:
    raw = message_bytes(subject="Quarterly numbers", marker=marker,
                        sender="alice@example.org", to="bob@partner.example")
    env = Envelope(queue_id=queue_id, mail_from="alice@example.org",
                   recipients=("bob@partner.example", "Carol@Other.example"), received_at=5.0)
    return Message(env, raw, len(raw))


def scan(tmp_path: Path, marker: str | None, mode: str = "enforce",
         metrics: Metrics | None = None) -> QuarantineStore | None:
    engine = Engine(make_config(tmp_path, mode=mode), metrics or Metrics())
    try:
        engine.scan_within_budget(message(marker))
    finally:
        engine.close()
    path = tmp_path / "state" / FILENAME
    return QuarantineStore(path) if path.exists() else None


def test_quarantined_message_gets_a_record_keyed_by_queue_id(tmp_path: Path) -> None:
    store = scan(tmp_path, "quarantine")
    assert store is not None
    (rec,) = store.records()
    assert rec.queue_id == "4XyZ1AbC2D" and rec.ref.startswith("MW-") and rec.created == 5.0
    assert rec.verdict == "quarantine" and rec.mode == "enforce" and rec.score == 6.0
    assert rec.types == ("test_quarantine",) and rec.detectors == ("testmarker",)
    assert rec.findings[0]["evidence"] == "X-Mailwarden-Test: quarantine"
    assert rec.models["testmarker"] == "none"
    assert rec.sender_domain == "example.org"
    assert rec.sender_hash == store.hash("alice@example.org")
    assert rec.recipient_hashes == (store.hash("bob@partner.example"),
                                    store.hash("carol@other.example"))
    assert rec.recipient_domains == ("other.example", "partner.example")
    assert rec.size == len(message("quarantine").raw)
    store.close()


@pytest.mark.parametrize(("marker", "mode"), [(None, "enforce"), ("reject", "enforce"),
                                              ("quarantine", "observe")])
def test_only_an_applied_quarantine_is_recorded(tmp_path: Path, marker: str | None,
                                                mode: str) -> None:
    store = scan(tmp_path, marker, mode=mode)
    assert store is None or store.records() == []  # the file is created on first use only


def test_check_does_not_create_the_store(tmp_path: Path) -> None:
    engine = Engine(make_config(tmp_path), Metrics())
    engine.close()
    assert not (tmp_path / "state").exists()


def test_metrics_come_from_the_store_and_survive_a_reload(tmp_path: Path) -> None:
    metrics = Metrics()
    store = scan(tmp_path, "quarantine", metrics=metrics)
    assert store is not None
    value = metrics.registry.get_sample_value
    assert value("mailwarden_quarantine_held") == 1
    assert value("mailwarden_quarantine_expired_total", {"action": "delete"}) == 0
    store.review(store.records()[0], Review("expired", "root", counters=(("expired", "delete"),)))
    Engine(make_config(tmp_path), metrics).close()  # a reload registers again: no error
    assert value("mailwarden_quarantine_held") == 0
    assert value("mailwarden_quarantine_expired_total", {"action": "delete"}) == 1
    assert value("mailwarden_quarantine_reviewed_total", {"action": "release"}) == 0
    store.close()


def test_disabled_section_builds_no_sink(tmp_path: Path) -> None:
    config = make_config(tmp_path, extra="[quarantine]\nenabled = false\n")
    engine = Engine(config, Metrics())
    try:
        assert [s.name for s in engine.sinks if s.name == "quarantine"] == []
        engine.scan_within_budget(message("quarantine"))
    finally:
        engine.close()
    assert not (tmp_path / "state" / FILENAME).exists()


@pytest.mark.parametrize(("extra", "key"), [
    ("[quarantine]\nexpire_days = 3\n", "quarantine.expire_days"),
    ('[quarantine]\nexpire_action = "bounce"\n', "quarantine.expire_action"),
    ('[quarantine]\nmta = "exim"\n', "quarantine.mta"),
    ("[quarantine]\nexpire_after_days = -1\n", "quarantine.expire_after_days"),
])
def test_bad_settings_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    config = load_config(tmp_path / "t.toml", text=config_text(tmp_path, extra=extra))
    with pytest.raises(ConfigError) as err:
        read_settings(config.sections["quarantine"], config)
    assert err.value.key == key


def test_shipped_example_section_equals_the_defaults() -> None:
    example = load_config(REPO / "deploy" / "mailwarden.toml")
    defaults = load_config()
    assert read_settings(example.sections["quarantine"], example) == \
        read_settings(defaults.sections["quarantine"], defaults)
    assert "[quarantine]" in (REPO / "deploy" / "mailwarden.toml").read_text()
    allow = [d for d in example.detectors if d.name == "allowlist"]
    assert allow and allow[0].enabled
