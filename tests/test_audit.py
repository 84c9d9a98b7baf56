"""Audit log: a JSON line per decision, private by default, safe with threads and logrotate."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from mailwarden.config import load_config
from mailwarden.engine import Engine
from mailwarden.message import Envelope, Message
from mailwarden.metrics import Metrics
from mailwarden.options import ConfigError
from mailwarden.sinks.audit import AuditFile
from mailwarden.sinks.keyfile import derive, install_secret, keyed_hash

from conftest import config_text, message_bytes

SUBJECT = "Quarterly numbers for Bob"


def engine_with(tmp_path: Path, audit: str = "") -> Engine:
    text = config_text(tmp_path, extra=f"[audit]\n{audit}\n" if audit else "")
    return Engine(load_config(tmp_path / "t.toml", text=text), Metrics())


def message(marker: str | None = None, sender: str = "Alice@Example.org",
            rcpts: tuple[str, ...] = ("bob@example.net", "carol@Gmail.com", "dan@example.net"),
            auth: str | None = None) -> Message:
    data = message_bytes(subject=SUBJECT, marker=marker, sender=sender.lower())
    env = Envelope("4QID1", sender, rcpts, auth_user=auth, received_at=1725271200.25)
    return Message(env, data, len(data))


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_decision_without_content_or_addresses(tmp_path: Path) -> None:
    engine = engine_with(tmp_path)
    try:
        engine.scan_within_budget(message())
        engine.scan_within_budget(message("quarantine"))
    finally:
        engine.close()
    path = tmp_path / "state" / "audit.jsonl"
    text = path.read_text()
    first, second = lines(path)
    assert SUBJECT not in text and "alice@" not in text.lower() and "bob@" not in text
    assert first["verdict"] == "accept" and second["verdict"] == "quarantine"
    assert second["action"] == "quarantine" and second["mode"] == "enforce"
    assert second["queue_id"] == "4QID1" and str(second["ref"]).startswith("MW-")
    assert second["time"] == "2024-09-02T10:00:00.250+00:00"
    assert second["direction"] == "outbound"
    assert second["sender_domain"] == "example.org"
    assert second["recipients"] == 3
    assert second["recipient_domains"] == ["example.net", "gmail.com"]
    assert second["findings"] == [{"detector": "testmarker", "type": "test_quarantine",
                                   "count": 1, "confidence": "high", "score": 6.0}]
    assert second["scores"] == {"testmarker": 6.0}
    assert second["contributions"] == {"testmarker": 6.0} and first["contributions"] == {}
    assert second["reasons"] == ["score 6.00 >= quarantine threshold 5 (testmarker=6.00)"]
    assert second["models"] == {"testmarker": {"model": "none", "version": "", "trained": ""}}
    key = derive(install_secret(tmp_path / "state" / "mailwarden.key"), "audit-sender")
    assert second["sender"] == keyed_hash(key, "alice@example.org")
    assert oct((tmp_path / "state" / "mailwarden.key").stat().st_mode & 0o777) == "0o600"


def test_building_creates_nothing_until_the_first_message(tmp_path: Path) -> None:
    """`mailwarden check` (maybe as root) must not leave files the daemon's user cannot open."""
    extra = '[notify]\nenabled = true\nadmins = ["sec@example.org"]\n'
    engine = Engine(load_config(tmp_path / "t.toml", text=config_text(tmp_path, extra=extra)),
                    Metrics())
    try:
        assert not (tmp_path / "state").exists()
        engine.scan_within_budget(message())
        assert (tmp_path / "state" / "audit.jsonl").exists()
        assert (tmp_path / "state" / "mailwarden.key").exists()
    finally:
        engine.close()


def test_unwritable_path_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="cannot be created"):
        engine_with(tmp_path, f'path = "{tmp_path}/file/audit.jsonl"')
    with pytest.raises(OSError, match="not a writable file"):
        engine_with(tmp_path, f'path = "{tmp_path}"')


def test_hash_is_stable_per_install_and_differs_between_installs(tmp_path: Path) -> None:
    records = []
    for install in ("a", "a", "b"):
        root = tmp_path / install
        engine = engine_with(root)
        try:
            engine.scan_within_budget(message(auth="alice-login"))
        finally:
            engine.close()
        records.append(lines(root / "state" / "audit.jsonl")[-1])
    assert records[0]["sender"] == records[1]["sender"] != records[2]["sender"]
    assert records[0]["authenticated"] is True


@pytest.mark.parametrize(("mode", "expected"), [("clear", "alice-login"), ("none", None)])
def test_sender_clear_or_omitted(tmp_path: Path, mode: str, expected: str | None) -> None:
    engine = engine_with(tmp_path, f'senders = "{mode}"\npath = "{tmp_path}/a.jsonl"')
    try:
        engine.scan_within_budget(message(auth="Alice-Login"))
    finally:
        engine.close()
    record = lines(tmp_path / "a.jsonl")[0]
    assert record.get("sender") == expected
    assert not (tmp_path / "state" / "mailwarden.key").exists()


def test_disabled_and_unknown_keys(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, "enabled = false")
    try:
        assert "audit" not in [s.name for s in engine.sinks]
    finally:
        engine.close()
    with pytest.raises(ConfigError, match=r"audit\.colour"):
        engine_with(tmp_path, 'colour = "blue"')
    with pytest.raises(ConfigError, match=r"audit\.senders"):
        engine_with(tmp_path, 'senders = "sha1"')


def test_concurrent_appends_and_rotation_never_mix_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditFile(path)
    threads, per_thread = 8, 300
    pad = "x" * 3000  # lines larger than a pipe buffer make interleaving visible if it happens

    def work(n: int) -> None:
        for i in range(per_thread):
            audit.append({"thread": n, "i": i, "pad": pad})
            if n == 0 and i == per_thread // 2:
                os.rename(path, tmp_path / "audit.jsonl.1")  # logrotate's "create" mode

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    audit.close()
    rotated, current = lines(tmp_path / "audit.jsonl.1"), lines(path)
    assert rotated and current
    seen = {(r["thread"], r["i"]) for r in rotated + current}
    assert len(rotated) + len(current) == len(seen) == threads * per_thread


def test_copytruncate_keeps_appending_at_the_new_end(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditFile(path)
    audit.append({"n": 1})
    audit.append({"n": 2})
    os.truncate(path, 0)  # logrotate's "copytruncate"
    audit.append({"n": 3})
    audit.close()
    assert path.read_bytes() == b'{"n":3}\n'


def test_write_failure_is_counted_not_raised(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "audit.jsonl"
    engine = engine_with(tmp_path, f'path = "{log_path}"')
    try:
        engine.scan_within_budget(message())
        log_path.unlink()
        log_path.mkdir()  # the path is now a directory: reopening fails
        decision = engine.scan_within_budget(message("quarantine"))
        assert decision.action.value == "quarantine"
        registry = engine.metrics.registry
        assert registry.get_sample_value("mailwarden_audit_records_total",
                                         {"result": "written"}) == 1.0
        assert registry.get_sample_value("mailwarden_audit_records_total",
                                         {"result": "failed"}) == 1.0
    finally:
        engine.close()


def test_example_config_documents_the_defaults() -> None:
    from mailwarden.sinks.audit import read_settings

    from conftest import REPO

    example = load_config(REPO / "deploy" / "mailwarden.toml")
    defaults = load_config()
    assert read_settings(example.sections["audit"], example.state_dir) == read_settings(
        defaults.sections["audit"], defaults.state_dir)
    assert read_settings(defaults.sections["audit"], Path("/var/lib/mailwarden")).path == Path(
        "/var/lib/mailwarden/audit.jsonl")
