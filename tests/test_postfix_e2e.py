"""End to end through a real Postfix: smtpd_milters -> mailwarden run -> delivery / hold / 5.7.1.

Each test sends a handful of messages over loopback with smtplib to a throwaway Postfix instance
(see postfix_instance.py) whose ``smtpd_milters`` point at a real ``mailwarden run`` daemon in
enforce mode with the documented test detector enabled.
"""

from __future__ import annotations

import shutil
import signal
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import FIXTURES, message_bytes, write_config
from milter_process import MilterProcess, with_postfix
from postfix_instance import PostfixInstance, public_tmpdir

pytestmark = pytest.mark.postfix
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora"


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[PostfixInstance, MilterProcess]]:
    root = public_tmpdir("mw-e2e-")
    milter = MilterProcess(write_config(root), root / "mw.sock")
    with with_postfix(milter, root) as both:
        yield both


def send(postfix: PostfixInstance, data: bytes, to: str = "bob@sink.test") -> None:
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.sendmail("alice@mailwarden.test", [to], data)


def delivered_with(postfix: PostfixInstance, token: str, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in postfix.delivered():
            if token.encode() in mail:
                return mail
        time.sleep(0.1)
    raise AssertionError(f"no delivered message contains {token!r}; log: {postfix.log()[-3000:]}")


def test_clean_message_is_delivered_with_headers(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = stack
    send(postfix, message_bytes(subject="clean-1"))
    mail = delivered_with(postfix, "clean-1")
    assert b"X-Mailwarden-Verdict: accept; mode=enforce; ref=MW-" in mail
    assert b"X-Mailwarden-Findings: none" in mail
    assert "verdict=accept" in milter.log()


def test_quarantined_message_sits_in_hold_queue(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = stack
    send(postfix, message_bytes(subject="hold-1", marker="quarantine"))
    deadline = time.monotonic() + 20
    while not postfix.held() and time.monotonic() < deadline:
        time.sleep(0.1)
    held = postfix.held()
    assert len(held) == 1, postfix.queue()
    queue_id = str(held[0]["queue_id"])
    assert f"qid={queue_id} verdict=quarantine action=quarantine" in milter.log()
    assert not any(b"hold-1" in m for m in postfix.delivered())
    postfix.postsuper("-d", queue_id, "hold")


def test_rejected_message_gets_571_at_end_of_data(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = stack
    with pytest.raises(smtplib.SMTPDataError) as err:
        send(postfix, message_bytes(subject="reject-1", marker="reject"))
    assert err.value.smtp_code == 550
    assert err.value.smtp_error.startswith(b"5.7.1 Message refused by local policy (ref MW-")
    assert "verdict=reject action=reject" in milter.log()


def test_local_submission_goes_through_non_smtpd_milters(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, _ = stack
    postfix.sendmail(message_bytes(subject="local-1"), "ops@mailwarden.test", "carol@sink.test")
    assert b"X-Mailwarden-Verdict: accept" in delivered_with(postfix, "local-1")


def test_malformed_messages_are_delivered_and_milter_keeps_serving(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = stack
    samples = [p.read_bytes() for p in sorted(FIXTURES.glob("*.eml"))]
    samples += corpus_breakers()
    for i, data in enumerate(samples):
        send(postfix, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") +
             f"\r\nmalformed-token-{i}\r\n".encode())
    for i in range(len(samples)):
        assert b"X-Mailwarden-Verdict:" in delivered_with(postfix, f"malformed-token-{i}")
    send(postfix, message_bytes(subject="after-malformed"))
    assert b"X-Mailwarden-Verdict: accept" in delivered_with(postfix, "after-malformed")
    assert milter.proc is not None and milter.proc.poll() is None


def corpus_breakers() -> list[bytes]:
    """Real messages that break email.policy.default (see the Phishing Pot PROVENANCE.md)."""
    import tarfile

    archive = CORPUS / "phishing_pot" / "phishing_2019-2024.tar.gz"
    assert archive.exists(), f"shared corpus missing: {archive}"
    wanted = {f"phishing/sample-{n}.eml" for n in (176, 187, 271, 284, 290)}
    with tarfile.open(archive) as tar:
        return [tar.extractfile(m).read() for m in tar if m.name in wanted]  # type: ignore[union-attr]


def test_sighup_reloads_without_losing_mail(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = stack
    before = milter.metric("mailwarden_config_reloads_total", result="success")
    for i in range(6):
        if i == 3:
            milter.signal(signal.SIGHUP)
        send(postfix, message_bytes(subject=f"reload-{i}"))
    for i in range(6):
        delivered_with(postfix, f"reload-{i}")
    deadline = time.monotonic() + 10
    while milter.metric("mailwarden_config_reloads_total", result="success") <= before:
        assert time.monotonic() < deadline, milter.log()[-2000:]
        time.sleep(0.1)
    assert milter.proc is not None and milter.proc.poll() is None
    send(postfix, message_bytes(subject="after-reload", marker="quarantine"))
    time.sleep(0.5)
    assert any(h for h in postfix.held())


def test_metrics_count_messages(stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = stack
    labels = {"action": "accept", "verdict": "accept", "direction": "outbound", "mode": "enforce"}
    before = milter.metric("mailwarden_messages_total", **labels)
    send(postfix, message_bytes(subject="metrics-1"))
    delivered_with(postfix, "metrics-1")
    assert milter.metric("mailwarden_messages_total", **labels) == before + 1


def test_milter_down_postfix_delivers_by_default_action(tmp_path: Path) -> None:
    sock_dir = public_tmpdir("mw-down-")
    milter = MilterProcess(write_config(tmp_path), sock_dir / "mw.sock")
    postfix = PostfixInstance(milter.spec)
    try:
        milter.start()
        postfix.start()
        send(postfix, message_bytes(subject="up-1"))
        assert b"X-Mailwarden-Verdict" in delivered_with(postfix, "up-1")
        milter.kill()
        for i in range(3):
            send(postfix, message_bytes(subject=f"down-{i}", marker="reject"))
        for i in range(3):
            assert b"X-Mailwarden-Verdict" not in delivered_with(postfix, f"down-{i}")
        assert postfix.queue() == []
    finally:
        postfix.remove()
        milter.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    milter = MilterProcess(write_config(tmp_path), tmp_path / "mw.sock").start()
    assert milter.stop() == 0
    assert "stopping" in milter.log()
