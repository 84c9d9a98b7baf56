"""Quarantine review end to end: a real Postfix hold queue, a real daemon, the real CLI.

A throwaway Postfix (postfix_instance.py) hands mail to ``mailwarden run`` in enforce mode with
the test detector, so ``X-Mailwarden-Test: quarantine`` messages land in the hold queue with a
record in the quarantine store. Every review step then goes through
``python -m mailwarden quarantine ... --config ... --postfix-config <instance>/etc``.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import message_bytes, write_config
from milter_process import MilterProcess
from postfix_instance import PostfixInstance, public_tmpdir

pytestmark = pytest.mark.postfix


@dataclass
class Stack:
    postfix: PostfixInstance
    milter: MilterProcess
    config: Path
    root: Path


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = public_tmpdir("mw-quarantine-")
    sock = root / "mw.sock"
    postfix = PostfixInstance(f"unix:{sock}")
    extra = "[detectors.allowlist]\nenabled = true\ncache_seconds = 0.2\n"
    config = write_config(root, extra=extra)
    milter = MilterProcess(config, sock).start()
    postfix.start()
    yield Stack(postfix, milter, config, root)
    postfix.remove()
    milter.stop()
    shutil.rmtree(root, ignore_errors=True)


def cli(stack: Stack, *args: str, config: Path | None = None,
        user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mailwarden", "quarantine", *args,
           "--config", str(config or stack.config), "--postfix-config", str(stack.postfix.etc)]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                          cwd=stack.root)


def listed(stack: Stack, *args: str) -> dict[str, dict[str, object]]:
    out = cli(stack, "list", "--json", *args)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return {str(row["queue_id"]): row for row in rows}


def send(stack: Stack, subject: str, sender: str = "alice@mailwarden.test",
         to: str = "bob@sink.test", marker: str | None = "quarantine") -> None:
    data = message_bytes(subject=subject, body=f"body of {subject}\n", marker=marker,
                         sender=sender, to=to)
    with smtplib.SMTP("127.0.0.1", stack.postfix.port, timeout=30) as smtp:
        smtp.sendmail(sender, [to], data)


def held_id(stack: Stack, subject: str, timeout: float = 20.0) -> str:
    """Queue ID of the held message with this subject (read with postcat, as root)."""
    qid = stack.postfix.held_with_subject(subject, timeout)
    if qid is not None:
        return qid
    raise AssertionError(f"{subject} not held; queue {stack.postfix.queue()}; "
                         f"milter log {stack.milter.log()[-2000:]}")


def delivered(stack: Stack, token: str) -> list[bytes]:
    return [m for m in stack.postfix.delivered() if token.encode() in m]


def wait_delivered(stack: Stack, token: str, count: int = 1, timeout: float = 30.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mails = delivered(stack, token)
        if len(mails) >= count:
            return mails
        time.sleep(0.1)
    raise AssertionError(f"{token}: {len(delivered(stack, token))} of {count} delivered; "
                         f"queue {stack.postfix.queue()}; log {stack.postfix.log()[-2000:]}")


def queued_ids(stack: Stack) -> set[str]:
    return {str(q["queue_id"]) for q in stack.postfix.queue()}


def test_held_message_is_recorded_listed_and_filtered(stack: Stack) -> None:
    send(stack, "q-list-1")
    qid = held_id(stack, "q-list-1")
    rows = listed(stack)
    assert qid in rows, rows
    row = rows[qid]
    assert row["state"] == "held" and row["mta_queue"] == "hold"
    assert row["detectors"] == ["testmarker"] and row["types"] == ["test_quarantine"]
    assert row["sender"] == "alice@mailwarden.test" and row["recipients"] == ["bob@sink.test"]
    assert str(row["ref"]).startswith("MW-")
    assert qid in listed(stack, "--detector", "testmarker")
    assert qid not in listed(stack, "--detector", "leak")
    assert qid in listed(stack, "--sender-domain", "mailwarden.test")
    assert qid not in listed(stack, "--sender-domain", "other.example")
    assert qid in listed(stack, "--newer-than", "1h")
    assert qid not in listed(stack, "--older-than", "1h")
    text = cli(stack, "list")
    assert text.returncode == 0 and qid in text.stdout and "test_quarantine=1" in text.stdout
    assert cli(stack, "delete", qid).returncode == 0


def test_show_prints_headers_and_findings_body_only_on_request(stack: Stack) -> None:
    send(stack, "q-show-1")
    qid = held_id(stack, "q-show-1")
    out = cli(stack, "show", qid)
    assert out.returncode == 0, out.stderr
    assert "Subject: q-show-1" in out.stdout
    assert "testmarker: test_quarantine x1" in out.stdout
    assert "X-Mailwarden-Test: quarantine" in out.stdout  # the finding's (masked) evidence
    assert "body of q-show-1" not in out.stdout
    record = json.loads(cli(stack, "show", qid, "--json").stdout)
    assert f"ref={record['ref']}" in str(record["headers"])  # our header names the same ref
    by_ref = cli(stack, "show", str(record["ref"]), "--body")
    assert by_ref.returncode == 0 and "body of q-show-1" in by_ref.stdout
    assert cli(stack, "delete", qid).returncode == 0


def test_release_delivers_the_message(stack: Stack) -> None:
    send(stack, "q-release-1")
    qid = held_id(stack, "q-release-1")
    assert not delivered(stack, "q-release-1")
    out = cli(stack, "release", qid)
    assert out.returncode == 0, out.stderr
    assert f"released {qid}" in out.stdout
    mail = wait_delivered(stack, "q-release-1")[0]
    assert b"X-Mailwarden-Verdict: quarantine; mode=enforce" in mail
    assert qid not in listed(stack)
    assert listed(stack, "--state", "released")[qid]["reviewed_by"] == "root"
    again = cli(stack, "release", qid)
    assert again.returncode == 1 and "already released" in again.stderr


def test_delete_removes_the_message_and_keeps_feedback_without_content(stack: Stack) -> None:
    send(stack, "q-delete-1")
    qid = held_id(stack, "q-delete-1")
    ref = listed(stack)[qid]["ref"]
    out = cli(stack, "delete", qid, "--confirmed")
    assert out.returncode == 0, out.stderr
    assert qid not in queued_ids(stack)
    time.sleep(1.0)
    assert not delivered(stack, "q-delete-1")
    assert "state:       deleted" in cli(stack, "show", qid).stdout
    feedback = cli(stack, "feedback")
    rows = [json.loads(line) for line in feedback.stdout.splitlines()]
    mine = [r for r in rows if r["ref"] == ref]
    assert len(mine) == 1 and mine[0]["label"] == "confirmed_leak"
    assert mine[0]["findings"][0]["type"] == "test_quarantine"
    assert "evidence" not in mine[0]["findings"][0]
    assert "q-delete-1" not in feedback.stdout and "alice@" not in feedback.stdout


def test_false_positive_release_lets_the_next_identical_message_pass(stack: Stack) -> None:
    sender, to = "carol@mailwarden.test", "dave@sink.test"
    send(stack, "q-fp", sender=sender, to=to)
    qid = held_id(stack, "q-fp")
    out = cli(stack, "release", qid, "--false-positive", "--allow", "pair")
    assert out.returncode == 0, out.stderr
    wait_delivered(stack, "q-fp")
    send(stack, "q-fp", sender=sender, to=to)  # the same message again: allowed now
    second = wait_delivered(stack, "q-fp", count=2)[1]
    assert b"X-Mailwarden-Verdict: accept; mode=enforce" in second
    assert b"allowlisted=1" in second
    send(stack, "q-fp-other", sender=sender, to="erin@sink.test")  # other recipient: held
    other = held_id(stack, "q-fp-other")
    allow = cli(stack, "allowlist")
    assert allow.returncode == 0 and "pair:" in allow.stdout
    assert cli(stack, "delete", other).returncode == 0


def test_expiry_deletes_unreviewed_mail_with_log_line_and_metric(stack: Stack) -> None:
    send(stack, "q-expire-1", sender="frank@mailwarden.test")
    qid = held_id(stack, "q-expire-1")
    config = stack.root / "expire.toml"
    config.write_text(stack.config.read_text()
                      + '[quarantine]\nexpire_after_days = 0.00001\nexpire_action = "delete"\n')
    before = stack.milter.metric("mailwarden_quarantine_expired_total", action="delete")
    time.sleep(1.5)  # older than 0.00001 days (0.9 s)
    dry = cli(stack, "expire", "--dry-run", config=config)
    assert dry.returncode == 0 and f"would expire {qid}" in dry.stdout
    assert qid in queued_ids(stack)
    out = cli(stack, "expire", config=config)
    assert out.returncode == 0, out.stderr
    assert f"expired {qid}" in out.stdout
    assert f"qid={qid} " in out.stderr and "expired unreviewed after" in out.stderr
    assert qid not in queued_ids(stack)
    after = stack.milter.metric("mailwarden_quarantine_expired_total", action="delete")
    assert after == before + 1
    assert listed(stack, "--state", "expired")[qid]["note"].startswith("expired unreviewed")


def test_expiry_can_release_and_marks_vanished_messages_gone(stack: Stack) -> None:
    send(stack, "q-expire-2", sender="gina@mailwarden.test")
    send(stack, "q-expire-3", sender="gina@mailwarden.test")
    released, vanished = held_id(stack, "q-expire-2"), held_id(stack, "q-expire-3")
    stack.postfix.postsuper("-d", vanished, "hold")  # deleted behind mailwarden's back
    assert listed(stack)[vanished]["state"] == "missing"
    config = stack.root / "expire-release.toml"
    config.write_text(stack.config.read_text()
                      + '[quarantine]\nexpire_after_days = 0.00001\nexpire_action = "release"\n')
    time.sleep(1.5)
    out = cli(stack, "expire", config=config)
    assert out.returncode == 0, out.stderr
    assert f"expired {released} " in out.stdout and f"expired {vanished} " in out.stdout
    wait_delivered(stack, "q-expire-2")
    assert listed(stack, "--state", "gone")[vanished]["state"] == "gone"


def test_unprivileged_user_gets_a_clear_error(stack: Stack) -> None:
    send(stack, "q-perm-1")
    qid = held_id(stack, "q-perm-1")
    for action in ("release", "delete"):
        out = cli(stack, action, qid, user="nobody")
        assert out.returncode == 1, (out.stdout, out.stderr)
        assert "root" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert qid in {str(q["queue_id"]) for q in stack.postfix.held()}
    assert listed(stack)[qid]["state"] == "held"
    assert cli(stack, "delete", qid).returncode == 0


def test_unknown_id_fails_with_exit_1(stack: Stack) -> None:
    out = cli(stack, "release", "ABCDEF12345")
    assert out.returncode == 1 and "no mailwarden quarantine record" in out.stderr


def test_holds_released_or_deleted_with_postsuper_are_reconciled(stack: Stack) -> None:
    from mailwarden.quarantine.review import RECONCILE_GRACE

    send(stack, "q-ext-1", sender="hank@mailwarden.test")
    send(stack, "q-ext-2", sender="hank@mailwarden.test")
    released, deleted = held_id(stack, "q-ext-1"), held_id(stack, "q-ext-2")
    held_before = stack.milter.metric("mailwarden_quarantine_held")
    stack.postfix.postsuper("-H", released)  # behind mailwarden's back: to the deferred queue
    stack.postfix.postsuper("-d", deleted, "hold")
    time.sleep(RECONCILE_GRACE + 0.5)  # a missing message younger than this may be in cleanup
    out = cli(stack, "reconcile")
    assert out.returncode == 0, out.stderr
    assert f"{released} " in out.stdout and "released_externally (now deferred)" in out.stdout
    assert f"{deleted} " in out.stdout and "gone (now missing)" in out.stdout
    assert released not in listed(stack) and deleted not in listed(stack)
    assert listed(stack, "--state", "released_externally")[released]["reviewed_by"] == "mta"
    assert deleted in listed(stack, "--state", "gone")
    assert stack.milter.metric("mailwarden_quarantine_held") == held_before - 2
    assert stack.milter.metric("mailwarden_quarantine_reconciled_total",
                               state="released_externally") >= 1
    again = cli(stack, "release", released)
    assert again.returncode == 1 and "already released_externally" in again.stderr
    assert "0 record(s) reconciled" in cli(stack, "reconcile").stdout
    stack.postfix.flush()
    wait_delivered(stack, "q-ext-1")
