"""Shared test fixtures: configs built from TOML text, an engine, and pymilter's TestCtx."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwarden.config import Config, load_config
from mailwarden.engine import Engine
from mailwarden.metrics import Metrics

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent

TEST_CONFIG = """
[milter]
mode = "{mode}"
timeout_seconds = {timeout}
max_scan_bytes = {max_scan}
workers = 2
processes = 1
[metrics]
enabled = false
[paths]
model_dir = "{models}"
state_dir = "{state}"
[detectors.testmarker]
enabled = true
score = 6.0
stall_seconds = {stall}
[policy.outbound]
quarantine = 5.0
reject = 10.0
[[policy.rules]]
name = "reject-marker"
type = "test_reject"
action = "reject"
[[policy.rules]]
name = "tempfail-marker"
type = "test_tempfail"
action = "tempfail"
"""


def config_text(tmp_path: Path, mode: str = "enforce", timeout: float = 2.0,
                max_scan: int = 10 * 1024 * 1024, stall: float = 5.0, extra: str = "",
                only_testmarker: bool = True) -> str:
    """A test config: enforce mode, the test detector on, every other detector off by default."""
    from mailwarden.detectors.base import registrations

    text = TEST_CONFIG.format(mode=mode, timeout=timeout, max_scan=max_scan, stall=stall,
                              models=tmp_path / "models", state=tmp_path / "state")
    if only_testmarker:
        others = sorted(set(registrations()) - {"testmarker"})
        text += "".join(f"[detectors.{name}]\nenabled = false\n" for name in others
                        if f"[detectors.{name}]" not in extra)
    return text + extra


def make_config(tmp_path: Path, **kwargs: object) -> Config:
    return load_config(tmp_path / "test.toml", text=config_text(tmp_path, **kwargs))  # type: ignore[arg-type]


def write_config(tmp_path: Path, **kwargs: object) -> Path:
    path = tmp_path / "mailwarden.toml"
    path.write_text(config_text(tmp_path, **kwargs))  # type: ignore[arg-type]
    return path


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    eng = Engine(make_config(tmp_path), Metrics())
    yield eng
    eng.close()


def message_bytes(subject: str = "hello", body: str = "Just a note.\n", marker: str | None = None,
                  sender: str = "alice@example.org", to: str = "bob@example.net") -> bytes:
    lines = [f"From: Alice <{sender}>", f"To: {to}", f"Subject: {subject}",
             "Date: Mon, 02 Sep 2024 10:00:00 +0000", "Message-ID: <t1@example.org>"]
    if marker:
        lines.append(f"X-Mailwarden-Test: {marker}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogateescape")
