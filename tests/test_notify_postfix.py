"""Alert mail through a real Postfix: sent, delivered, unscanned, free of sensitive content.

A throwaway Postfix (tests/postfix_instance.py) runs ``mailwarden run`` as its milter and also
serves as the notifier's SMTP relay (or local MTA through sendmail(1)), delivering alerts for
``security@sink.test`` into its Maildir. A quarantined message carries a subject and card numbers;
the alert must name the queue ID, reference and finding types with masked fragments, and contain
neither. Alert mail itself passes the milter unscanned because its signature verifies, while an
altered copy is scanned like any other message. With two pre-fork workers, one of them stopped
in turn, the admin still gets one digest stream: worker 1's events reach worker 0 through the
spool, and the digest window holds across workers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import time
import uuid
from collections.abc import Iterator

import pytest

from conftest import message_bytes, write_config
from milter_process import MilterProcess, PreforkMilter
from postfix_instance import PostfixInstance, public_tmpdir

pytestmark = pytest.mark.postfix
ADMIN = "security@sink.test"
FROM = "mailwarden@mx.mailwarden.test"
TEST_CARD = "4111 1111 1111 1111"
REAL_CARD = "4556 7375 8689 9855"  # Luhn-valid: the leak detector reports it (masked)


def notify_config(transport: str, postfix: PostfixInstance) -> str:
    if transport == "smtp":
        how = f'transport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {postfix.port}\n'
    else:
        how = (f'transport = "sendmail"\n'
               f'sendmail_command = ["/usr/sbin/sendmail", "-C", "{postfix.etc}", "-i"]\n')
    return f"""
[detectors.leak]
enabled = true
weight = 0.25
[notify]
enabled = true
admins = ["{ADMIN}"]
from_address = "{FROM}"
hostname = "mx.mailwarden.test"
batch_seconds = 0.5
digest_seconds = 4.0
{how}"""


def start_stack(transport: str) -> Iterator[tuple[PostfixInstance, MilterProcess]]:
    root = public_tmpdir("mw-notify-")
    sock = root / "mw.sock"
    postfix = PostfixInstance(f"unix:{sock}")
    config = write_config(root, extra=notify_config(transport, postfix))
    milter = MilterProcess(config, sock).start()
    try:
        postfix.start()
        yield postfix, milter
    finally:
        postfix.remove()
        milter.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def smtp_stack() -> Iterator[tuple[PostfixInstance, MilterProcess]]:
    yield from start_stack("smtp")


@pytest.fixture
def sendmail_stack() -> Iterator[tuple[PostfixInstance, MilterProcess]]:
    yield from start_stack("sendmail")


def send(postfix: PostfixInstance, data: bytes, sender: str = "alice@mailwarden.test") -> None:
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.sendmail(sender, ["bob@sink.test"], data)


def sensitive(subject: str) -> bytes:
    body = f"Card for the booking: {TEST_CARD}, backup card {REAL_CARD}.\n"
    return message_bytes(subject=subject, body=body, marker="quarantine")


def alert_files(postfix: PostfixInstance) -> list[tuple[float, bytes]]:
    """(delivery time, mail) of the alerts delivered to the admin, in delivery order."""
    files = sorted((postfix.maildir / "new").iterdir(), key=lambda f: f.stat().st_mtime_ns)
    mails = [(f.stat().st_mtime, f.read_bytes()) for f in files]
    return [(at, m) for at, m in mails
            if b"\nX-Mailwarden-Alert: v1;" in m and b"X-Original-To: " + ADMIN.encode() in m]


def alerts(postfix: PostfixInstance, count: int, timeout: float = 20) -> list[bytes]:
    """The delivered alert mails, once there are ``count`` of them (in delivery order)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for _, m in alert_files(postfix)]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, f"{len(found)} alerts; log: {postfix.log()[-3000:]}"
            return found
        time.sleep(0.1)


def current_alerts(postfix: PostfixInstance) -> list[bytes]:
    return [
        m for m in postfix.delivered()
        if b"\nX-Mailwarden-Alert: v1;" in m and b"X-Original-To: " + ADMIN.encode() in m]


def held_ids(postfix: PostfixInstance, count: int) -> set[str]:
    deadline = time.monotonic() + 20
    while len(postfix.held()) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return {str(q["queue_id"]) for q in postfix.held()}


def assert_no_secret(alert: bytes, subject: str) -> None:
    flat = re.sub(rb"\s", b"", alert)
    for secret in (TEST_CARD, REAL_CARD):
        assert secret.encode() not in alert and secret.replace(" ", "").encode() not in flat
    assert subject.encode() not in alert and subject.rsplit(maxsplit=1)[-1].encode() not in alert


def as_sent(delivered: bytes) -> bytes:
    """A delivered mail as its recipient could send it again: trace headers dropped, CRLF."""
    head, _, body = delivered.partition(b"\n\n")
    lines: list[bytes] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += b"\n" + line
        else:
            lines.append(line)
    trace = (b"return-path:", b"delivered-to:", b"x-original-to:", b"received:", b"x-mailwarden-v",
             b"x-mailwarden-s", b"x-mailwarden-f")
    kept = [line for line in lines if not line.lower().startswith(trace)]
    return (b"\n".join(kept) + b"\n\n" + body).replace(b"\n", b"\r\n")


def test_quarantine_alerts_admin_without_sensitive_content(smtp_stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = smtp_stack
    time.sleep(0.6)  # nothing is left in the notifier's batch window
    before = len(current_alerts(postfix))
    exempt = milter.metric("mailwarden_alert_mail_exempt_total")
    subject = f"Payroll export {uuid.uuid4().hex[:8]}"
    known = held_ids(postfix, 0)
    send(postfix, sensitive(subject))
    (queue_id,) = held_ids(postfix, len(known) + 1) - known
    ref = re.search(rf"qid={queue_id} verdict=quarantine .* ref=(MW-\w+)", milter.log())
    assert ref, milter.log()[-2000:]
    alert = alerts(postfix, before + 1)[-1]
    assert f"Queue ID:   {queue_id}".encode() in alert
    assert f"Reference:  {ref.group(1)}".encode() in alert
    assert b"test_quarantine x1 (confidence high)" in alert
    assert b"credit_card x1 (confidence high)  ****9855" in alert
    assert_no_secret(alert, subject)
    assert b"Delivered-To: " + ADMIN.encode() in alert
    # The alert passed the milter on its way in, unscanned because its signature verified.
    assert b"X-Mailwarden-Verdict: accept" in alert
    assert len(postfix.held()) == len(known) + 1
    assert milter.metric("mailwarden_alert_mail_exempt_total") == exempt + 1
    assert milter.metric("mailwarden_notifications_total", recipient="admin", result="sent") >= 1


def test_burst_becomes_one_digest_and_forgeries_are_scanned(smtp_stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = smtp_stack
    known = held_ids(postfix, 0)
    time.sleep(0.6)  # nothing is left in the notifier's batch window
    before = len(current_alerts(postfix))
    send(postfix, sensitive("first"))
    first = alerts(postfix, before + 1)[-1]
    queued = milter.metric("mailwarden_notify_events_total", result="queued")
    for i in range(6):
        send(postfix, sensitive(f"burst {i}"))
    ids = held_ids(postfix, len(known) + 7) - known
    digest = alerts(postfix, before + 2)[-1]
    (first_at, _), (digest_at, _) = alert_files(postfix)[-2:]
    assert digest_at - first_at >= 3.5  # not before the digest window (4 s) had passed
    assert b"held or refused 6 outgoing message(s)" in digest
    assert b"and 5 more like it" in digest
    assert sum(qid.encode() in digest for qid in ids) == 6
    time.sleep(1.0)
    assert len(alerts(postfix, before + 2)) == before + 2
    assert milter.metric("mailwarden_notify_events_total", result="queued") == queued + 6
    # Someone who saw an alert re-sends it with a payload: the signature no longer holds.
    exempt = milter.metric("mailwarden_alert_mail_exempt_total")
    clean = as_sent(first)
    forged = clean.replace(b"\r\n\r\n", b"\r\nX-Mailwarden-Test: reject\r\n\r\n", 1)
    with pytest.raises(smtplib.SMTPDataError) as err:
        send(postfix, forged, sender=FROM)
    assert err.value.smtp_code == 550
    send(postfix, clean.replace(b"held or refused", b"held"), sender=FROM)
    time.sleep(0.5)
    assert milter.metric("mailwarden_alert_mail_exempt_total") == exempt


def test_alert_through_local_sendmail(sendmail_stack) -> None:  # type: ignore[no-untyped-def]
    postfix, milter = sendmail_stack
    subject = f"Customer list {uuid.uuid4().hex[:8]}"
    send(postfix, sensitive(subject))
    (queue_id,) = held_ids(postfix, 1)
    (alert,) = alerts(postfix, 1)
    assert f"Queue ID:   {queue_id}".encode() in alert
    assert_no_secret(alert, subject)
    assert b"X-Mailwarden-Verdict: accept" in alert  # through non_smtpd_milters, exempt
    assert b"(Postfix, from userid 0)" in alert  # it really came in through pickup
    assert milter.metric("mailwarden_alert_mail_exempt_total") == 1.0


def test_pre_fork_workers_alert_through_one_sender() -> None:
    root = public_tmpdir("mw-notify-prefork-")
    sock = root / "mw.sock"
    postfix = PostfixInstance(f"unix:{sock}")
    milter = PreforkMilter(write_config(root, extra=notify_config("smtp", postfix)), sock)
    try:
        milter.start()
        postfix.start()
        found = re.search(r"this worker \(pid (\d+)\) sends the alert mail of all 2 workers",
                          milter.log())
        assert found, milter.log()[-2000:]
        sender = int(found.group(1))
        (other,) = set(milter.workers()) - {sender}
        # worker 0's line says it for all; the others stay quiet at start (logged once)
        assert milter.log().count("sends the alert mail of all 2 workers") == 1
        assert f"alert events of this worker (pid {other})" not in milter.log()
        os.kill(sender, signal.SIGSTOP)  # worker 1 scores these three and only spools them
        try:
            for i in range(3):
                send(postfix, sensitive(f"spooled {i}"))
            spooled = held_ids(postfix, 3)
            time.sleep(1.0)
            assert alert_files(postfix) == []  # worker 1 never sends
        finally:
            os.kill(sender, signal.SIGCONT)
        first = alerts(postfix, 1)[0]
        assert b"held or refused 3 outgoing message(s)" in first
        assert all(qid.encode() in first for qid in spooled) and len(spooled) == 3
        os.kill(other, signal.SIGSTOP)  # now worker 0 scores: same queue, same digest window
        try:
            send(postfix, sensitive("direct"))
            (direct,) = held_ids(postfix, 4) - spooled
        finally:
            os.kill(other, signal.SIGCONT)
        second = alerts(postfix, 2)[1]
        (first_at, _), (second_at, _) = alert_files(postfix)
        assert second_at - first_at >= 3.5  # digest_seconds = 4, across both workers
        assert direct.encode() in second and not any(q.encode() in second for q in spooled)
        assert milter.metric("mailwarden_notify_events_total", result="queued") == 4
    finally:
        postfix.remove()
        milter.stop()
        shutil.rmtree(root, ignore_errors=True)
