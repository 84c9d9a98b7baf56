"""Pre-fork mode end to end: two worker processes behind one socket, fed by a real Postfix.

The daemon runs as ``mailwarden run --processes 2`` (and, for the start-up failure, with
``processes = 2`` in its ``[milter]`` section). Mail must be delivered, held and refused exactly
as with one process, the one metrics port must count every message whichever worker scored it,
SIGHUP must reload every worker without losing mail, a killed worker must be replaced while the
other keeps serving, and SIGTERM must drain and stop every process."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import config_text, message_bytes, write_config
from milter_process import PreforkMilter, with_postfix
from postfix_instance import PostfixInstance, public_tmpdir

pytestmark = pytest.mark.postfix
ACCEPT = {"action": "accept", "verdict": "accept", "direction": "outbound", "mode": "enforce"}


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[PostfixInstance, PreforkMilter]]:
    root = public_tmpdir("mw-prefork-")
    milter = PreforkMilter(write_config(root), root / "mw.sock")
    with with_postfix(milter, root) as both:
        yield both


def send(postfix: PostfixInstance, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.sendmail("alice@mailwarden.test", ["bob@sink.test"], data)


def delivered_with(postfix: PostfixInstance, token: str, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in postfix.delivered():
            if token.encode() in mail:
                return mail
        time.sleep(0.1)
    raise AssertionError(f"no delivered message contains {token!r}; log: {postfix.log()[-3000:]}")


def wait_for(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_two_workers_serve_and_one_port_counts_every_message(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = stack
    assert len(milter.workers()) == 2
    before = milter.metric("mailwarden_messages_total", **ACCEPT)
    for i in range(12):
        send(postfix, message_bytes(subject=f"pf-clean-{i}"))
    for i in range(12):
        assert b"X-Mailwarden-Verdict: accept" in delivered_with(postfix, f"pf-clean-{i}")
    assert milter.metric("mailwarden_messages_total", **ACCEPT) == before + 12
    assert milter.metric("mailwarden_worker_processes") == 2
    assert milter.metric("mailwarden_scan_budget_seconds") == 2.0  # scrape-time, taken once
    enabled = milter.metric("mailwarden_detector_enabled", detector="testmarker", state="enabled")
    assert enabled == 1  # the same in both workers: not summed


def test_hold_and_reject_work_as_in_one_process(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, _ = stack
    send(postfix, message_bytes(subject="pf-hold", marker="quarantine"))
    wait_for(lambda: len(postfix.held()) == 1)
    postfix.postsuper("-d", str(postfix.held()[0]["queue_id"]), "hold")
    with pytest.raises(smtplib.SMTPDataError) as err:
        send(postfix, message_bytes(subject="pf-reject", marker="reject"))
    assert err.value.smtp_code == 550


def test_sighup_reloads_every_worker_without_losing_mail(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = stack
    before = milter.metric("mailwarden_config_reloads_total", result="success")
    for i in range(6):
        if i == 2:
            milter.signal(signal.SIGHUP)
        send(postfix, message_bytes(subject=f"pf-reload-{i}"))
    for i in range(6):
        delivered_with(postfix, f"pf-reload-{i}")
    # counted once per SIGHUP (by worker 0), not once per worker, and logged once with the mode
    wait_for(lambda: milter.log().count("configuration and models reloaded") == 1)
    time.sleep(1.0)  # the other worker's reload has finished too
    assert milter.metric("mailwarden_config_reloads_total", result="success") == before + 1
    reloaded = [line for line in milter.log().splitlines() if "models reloaded" in line]
    assert len(reloaded) == 1 and "mode=enforce" in reloaded[0], reloaded
    assert milter.log().count("SIGHUP: reloading 2 worker(s)") == 1


def test_a_killed_worker_is_replaced_and_mail_keeps_flowing(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = stack
    counted = milter.metric("mailwarden_messages_total", **ACCEPT)  # the last scrape before
    victim = milter.workers()[0]
    os.kill(victim, signal.SIGKILL)
    for i in range(4):
        send(postfix, message_bytes(subject=f"pf-after-kill-{i}"))
    for i in range(4):
        delivered_with(postfix, f"pf-after-kill-{i}")
    wait_for(lambda: len(milter.workers()) == 2 and victim not in milter.workers())
    wait_for(lambda: milter.metric("mailwarden_worker_restarts_total") == 1)
    assert "died (signal 9)" in milter.log()
    # the dead worker's counts are carried over: the counter does not fall back (a "reset")
    assert milter.metric("mailwarden_messages_total", **ACCEPT) == counted + 4


def test_sigterm_drains_and_stops_every_process(tmp_path: Path) -> None:
    root = public_tmpdir("mw-prefork-stop-")
    milter = PreforkMilter(write_config(root), root / "mw.sock")
    try:
        milter.start()
        workers = milter.workers()
        assert milter.stop() == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
        assert "stopping: draining 2 worker(s)" in milter.log()
    finally:
        milter.kill()
        shutil.rmtree(root, ignore_errors=True)


def test_a_required_detector_that_cannot_load_fails_the_start_with_status_2(
        tmp_path: Path) -> None:
    extra = "[detectors.content]\nenabled = true\nrequired = true\n"  # no models under tmp_path
    config = tmp_path / "mailwarden.toml"
    text = config_text(tmp_path, extra=extra)
    assert "\nprocesses = 1\n" in text
    config.write_text(text.replace("\nprocesses = 1\n", "\nprocesses = 2\n", 1))
    cmd = [sys.executable, "-m", "mailwarden", "run", "--config", str(config),
           "--socket", f"unix:{tmp_path / 'mw.sock'}"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "required detector unavailable" in done.stderr


def test_start_and_stop_lines_are_logged_once_not_per_worker(tmp_path: Path) -> None:
    extra = "[detectors.content]\nenabled = true\n"  # no models under tmp_path: a warning
    root = public_tmpdir("mw-prefork-once-")
    milter = PreforkMilter(write_config(root, extra=extra), root / "mw.sock")
    try:
        milter.start()
        wait_for(lambda: "detector content LOST" in milter.log())
        time.sleep(1.0)  # both workers have built their engines (start() waited for both)
        assert milter.stop() == 0
        log = milter.log()
        assert log.count("detector content LOST") == 1, log
        assert log.count("stopping: no new connections") == 1, log
    finally:
        milter.kill()
        shutil.rmtree(root, ignore_errors=True)
