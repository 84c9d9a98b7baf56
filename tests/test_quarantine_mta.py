"""MTA backends: command lines, output parsing and error translation.

The outputs below were captured from the real tools (Postfix 3.7.11 ``postqueue -j`` and
``postsuper``; Sendmail 8.17.1.9 ``sendmail -bp -qQ`` with and without ``-v`` and a quarantined
``hf`` control file); the second Sendmail job adds the variants mailq(1) documents (status
character, deferral message, bracketed addresses, single-digit day). Postfix's own tools are
also exercised for real, including as an unprivileged user, and Sendmail's when a binary is
given (it cannot be installed next to Postfix).
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from mailwarden.quarantine.cli import make_queue
from mailwarden.quarantine.mta import (
    HOLD,
    Completed,
    MtaError,
    MtaNotFound,
    MtaPermissionError,
    PostfixQueue,
    parse_postqueue_json,
    run_command,
)
from mailwarden.quarantine.sendmail import SendmailQueue, parse_control_headers, parse_mailq

from postfix_instance import PostfixInstance

POSTQUEUE_J = (
    b'{"queue_name": "hold", "queue_id": "AE1EC21F030", "arrival_time": 1795378301, '
    b'"message_size": 372, "forced_expire": false, "sender": "alice@example.org", '
    b'"recipients": [{"address": "bob@sink.test"}, {"address": "carol@sink.test"}]}\n'
    b'{"queue_name": "deferred", "queue_id": "7F48021E8F5", "arrival_time": 1795378401, '
    b'"message_size": 300, "forced_expire": false, "sender": "", "recipients": '
    b'[{"address": "x@example.net", "delay_reason": "connect to example.net: refused"}]}\n'
)
MAILQ = """\
\t\t/var/spool/mqueue (2 requests)
-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------
6AMKDLUm026219        5 Sun Nov 22 20:13 alice@example.org
     QUARANTINE: mailwarden MW-0A1B2C3D4E5F: test_quarantine=1
\t\t\t\t\t bob@example.net
\t\t\t\t\t carol@example.net
6AMKELVn026301*    1234 Sun Nov  2 09:05 <mallory@example.org>
     QUARANTINE: mailwarden MW-FFEEDDCCBBAA: credit_card=2
\t\t\t\t\t (Deferred: Connection refused by example.net.)
\t\t\t\t\t <eve@example.net>
\t\tTotal requests: 2
"""
MAILQ_VERBOSE = """\
\t\t/var/spool/mqueue (1 request)
-----Q-ID----- --Size-- -Priority- ---Q-Time--- --------Sender/Recipient--------
6AMKDLUm026219        5      60106 Nov 22 20:13 alice@example.org
     QUARANTINE: mailwarden MW-0A1B2C3D4E5F: test_quarantine=1
\t\t\t\t\t\tbob@example.net
\t\tTotal requests: 1
"""
HF_FILE = (b"V8\nT1795378401\nK0\nN0\nP60106\nFs\n$_root@localhost\n${daemon_flags}c u\n"
           b"qmailwarden MW-ABC: test_quarantine=1\nSalice@example.org\n"
           b"rrfc822; bob@example.net\nRPFD:bob@example.net\nH??From: alice@example.org\n"
           b"H??Subject: sm test\nH??X-Long: first\n\tsecond\n"
           b"H??X-Mailwarden-Verdict: quarantine; mode=enforce; ref=MW-ABC\n.\n")


class FakeRunner:
    """Records command lines and answers with canned results, in order."""

    def __init__(self, *answers: Completed):
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> Completed:
        self.calls.append(list(argv))
        return self.answers.pop(0) if self.answers else Completed(0, b"", b"")


def ok(stdout: bytes = b"", stderr: bytes = b"") -> Completed:
    return Completed(0, stdout, stderr)


def test_postqueue_json_is_parsed_per_queue() -> None:
    queued = parse_postqueue_json(POSTQUEUE_J)
    held = queued["AE1EC21F030"]
    assert held.queue == HOLD and held.arrival == 1795378301.0 and held.size == 372
    assert held.recipients == ("bob@sink.test", "carol@sink.test")
    assert queued["7F48021E8F5"].queue == "deferred" and queued["7F48021E8F5"].sender == ""
    with pytest.raises(MtaError, match="cannot parse"):
        parse_postqueue_json(b'{"queue_id": "X"}\n')


def test_postfix_commands_use_the_instance_config_dir() -> None:
    runner = FakeRunner(ok(POSTQUEUE_J), ok(b"Subject: x\n"),
                        ok(stderr=b"postsuper: AE1EC21F030: released from hold\n"
                                  b"postsuper: Released from hold: 1 message\n"),
                        ok(), ok(stderr=b"postsuper: Deleted: 1 message\n"))
    queue = PostfixQueue("/etc/postfix-out", runner)
    assert "AE1EC21F030" in queue.messages()
    assert queue.headers("AE1EC21F030") == b"Subject: x\n"
    queue.release("AE1EC21F030")
    queue.delete("AE1EC21F030")
    assert runner.calls == [
        ["postqueue", "-c", "/etc/postfix-out", "-j"],
        ["postcat", "-c", "/etc/postfix-out", "-q", "-h", "AE1EC21F030"],
        ["postsuper", "-c", "/etc/postfix-out", "-H", "AE1EC21F030"],
        ["postqueue", "-c", "/etc/postfix-out", "-i", "AE1EC21F030"],  # deliver now
        ["postsuper", "-c", "/etc/postfix-out", "-d", "AE1EC21F030", "hold"],
    ]


def test_postsuper_zero_count_means_not_held() -> None:
    queue = PostfixQueue("", FakeRunner(ok(stderr=b"postsuper: Released from hold: 0 messages\n"),
                                        ok(stderr=b"postsuper: Deleted: 0 messages\n")))
    with pytest.raises(MtaNotFound):
        queue.release("AE1EC21F030")
    with pytest.raises(MtaNotFound):
        queue.delete("AE1EC21F030")


def test_permission_failures_become_clear_errors() -> None:
    denied = Completed(1, b"", b"postsuper: fatal: use of this command is reserved for the "
                               b"superuser\n")
    with pytest.raises(MtaPermissionError, match=r"not permitted.*run this command as root"):
        PostfixQueue("", FakeRunner(denied)).release("AE1EC21F030")
    other = Completed(75, b"", b"postsuper: fatal: queue directory is corrupt\n")
    with pytest.raises(MtaError, match="corrupt") as err:
        PostfixQueue("", FakeRunner(other)).delete("AE1EC21F030")
    assert not isinstance(err.value, MtaPermissionError)


@pytest.mark.parametrize("bad", ["-d", "ALL", "AE1EC21F030 hold", "../etc", ""])
def test_queue_ids_cannot_inject_options(bad: str) -> None:
    runner = FakeRunner()
    with pytest.raises(MtaError, match="not a queue ID"):
        PostfixQueue("", runner).delete(bad)
    assert runner.calls == []


def test_missing_tool_is_reported() -> None:
    with pytest.raises(MtaError, match="command not found"):
        run_command(["mailwarden-no-such-tool-xyz"])
    with pytest.raises(MtaError, match="unknown MTA"):
        make_queue("exim")


def test_mailq_quarantine_listing_is_parsed() -> None:
    now = time.mktime(time.strptime("2026-11-23 10:00", "%Y-%m-%d %H:%M"))
    jobs = parse_mailq(MAILQ, now=now)
    assert set(jobs) == {"6AMKDLUm026219", "6AMKELVn026301"}
    first = jobs["6AMKDLUm026219"]
    assert first.queue == HOLD and first.size == 5 and first.sender == "alice@example.org"
    assert first.recipients == ("bob@example.net", "carol@example.net")
    assert first.reason == "mailwarden MW-0A1B2C3D4E5F: test_quarantine=1"
    assert first.location == "/var/spool/mqueue"
    assert time.localtime(first.arrival)[:5] == (2026, 11, 22, 20, 13)
    locked = jobs["6AMKELVn026301"]
    assert locked.sender == "mallory@example.org" and locked.recipients == ("eve@example.net",)
    assert time.localtime(locked.arrival)[:5] == (2026, 11, 2, 9, 5)
    verbose = parse_mailq(MAILQ_VERBOSE, now=now)["6AMKDLUm026219"]
    assert verbose.recipients == ("bob@example.net",) and verbose.reason.endswith("=1")
    assert parse_mailq("/var/spool/mqueue is empty\n\t\tTotal requests: 0\n") == {}


def test_mailq_time_without_year_is_never_in_the_future() -> None:
    jan = time.mktime(time.strptime("2027-01-02 08:00", "%Y-%m-%d %H:%M"))
    job = parse_mailq(MAILQ, now=jan)["6AMKDLUm026219"]
    assert time.localtime(job.arrival)[:3] == (2026, 11, 22)


def test_control_file_headers_unfold_conditionals() -> None:
    assert parse_control_headers(HF_FILE) == (
        b"From: alice@example.org\nSubject: sm test\nX-Long: first\n\tsecond\n"
        b"X-Mailwarden-Verdict: quarantine; mode=enforce; ref=MW-ABC\n")


def sendmail_dir(tmp_path: Path) -> Path:
    (tmp_path / "hf6AMKDLUm026219").write_bytes(HF_FILE)
    (tmp_path / "df6AMKDLUm026219").write_bytes(b"body\n")
    return tmp_path


def test_sendmail_show_and_delete_use_the_queue_files(tmp_path: Path) -> None:
    listing = MAILQ_VERBOSE.replace("/var/spool/mqueue", str(sendmail_dir(tmp_path))).encode()
    runner = FakeRunner(ok(listing), ok(listing), ok(listing))
    queue = SendmailQueue("/etc/mail/out.cf", "/usr/sbin/sendmail", runner)
    assert b"Subject: sm test\n" in queue.headers("6AMKDLUm026219")
    assert queue.content("6AMKDLUm026219").endswith(b"ref=MW-ABC\n\nbody\n")
    queue.delete("6AMKDLUm026219")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert runner.calls[0] == ["/usr/sbin/sendmail", "-C", "/etc/mail/out.cf", "-bp", "-qQ"]


def test_sendmail_release_unquarantines_then_delivers(tmp_path: Path) -> None:
    listing = MAILQ_VERBOSE.replace("/var/spool/mqueue", str(sendmail_dir(tmp_path))).encode()
    runner = FakeRunner(ok(listing), ok(), ok(b"/x is empty\n"), ok())
    SendmailQueue("", "sendmail", runner).release("6AMKDLUm026219")
    assert runner.calls[1:] == [["sendmail", "-qQ", "-qI6AMKDLUm026219", "-Q"],
                                ["sendmail", "-bp", "-qQ"], ["sendmail", "-qI6AMKDLUm026219"]]
    stuck = FakeRunner(ok(listing), ok(), ok(listing))
    with pytest.raises(MtaError, match="left it in the quarantine"):
        SendmailQueue("", "sendmail", stuck).release("6AMKDLUm026219")
    gone = FakeRunner(ok(b"/x is empty\n"))
    with pytest.raises(MtaNotFound):
        SendmailQueue("", "sendmail", gone).release("6AMKDLUm026219")


def test_sendmail_untrusted_user_is_told_so() -> None:
    denied = Completed(64, b"", b"Permission denied (real uid not trusted)\n")
    with pytest.raises(MtaPermissionError, match="root"):
        SendmailQueue("", "sendmail", FakeRunner(denied)).messages()


@pytest.mark.postfix
def test_real_postfix_tools_as_root_and_as_nobody() -> None:
    postfix = PostfixInstance(None).start()
    try:
        (postfix.etc / "hc").write_text("/^Subject: hold-me/ HOLD test\n")
        for cmd in (["postconf", "-c", str(postfix.etc), "-e",
                     f"header_checks = regexp:{postfix.etc}/hc"],
                    ["postfix", "-c", str(postfix.etc), "reload"]):
            subprocess.run(cmd, check=True, capture_output=True)
        time.sleep(1)
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
            smtp.sendmail("a@example.org", ["bob@sink.test"], b"Subject: hold-me\r\n\r\nhi\r\n")
        queue = PostfixQueue(str(postfix.etc))
        deadline = time.monotonic() + 20
        while not queue.messages() and time.monotonic() < deadline:
            time.sleep(0.1)
        ((qid, held),) = queue.messages().items()
        assert held.queue == HOLD and held.recipients == ("bob@sink.test",)
        nobody = PostfixQueue(str(postfix.etc), runner=as_user("nobody"))
        with pytest.raises(MtaPermissionError, match="superuser"):
            nobody.release(qid)
        with pytest.raises(MtaPermissionError, match="root"):
            nobody.headers(qid)
        assert b"Subject: hold-me" in queue.headers(qid)
        with pytest.raises(MtaNotFound):
            queue.headers("ABCDEF12345")
        queue.delete(qid)
        assert queue.messages() == {}
        with pytest.raises(MtaNotFound):
            queue.delete(qid)
    finally:
        postfix.remove()


def as_user(user: str):  # type: ignore[no-untyped-def]
    def runner(argv: Sequence[str]) -> Completed:
        return run_command(["runuser", "-u", user, "--", *argv])
    return runner


SENDMAIL = os.environ.get("MAILWARDEN_TEST_SENDMAIL", "")


@pytest.mark.skipif(not SENDMAIL, reason="set MAILWARDEN_TEST_SENDMAIL to a Sendmail binary")
def test_real_sendmail_quarantine(tmp_path: Path) -> None:
    """Against a real Sendmail binary with a private config and queue (Debian's sendmail
    conflicts with postfix: run with an unpacked sendmail-bin, see docs/quarantine.md)."""
    spool = tmp_path / "mqueue"
    spool.mkdir(mode=0o700)
    cf = tmp_path / "test.cf"
    cf.write_text(SENDMAIL_CF.format(spool=spool, stats=tmp_path / "statistics"))
    # Sendmail sleeps a minute per start when the host name is not qualified: give it one.
    binary = tmp_path / "sendmail"
    binary.write_text("#!/bin/sh\nexec unshare -u sh -c "
                      f"'hostname localhost.localdomain && exec \"$0\" \"$@\"' {SENDMAIL} \"$@\"\n")
    binary.chmod(0o755)
    base = [str(binary), "-C", str(cf)]
    for subject in ("one", "two"):
        subprocess.run([*base, "-odq", "-f", "alice@example.org", "bob@example.net"],
                       check=True, input=f"From: alice@example.org\nSubject: {subject}\n\nb\n"
                       .encode())
    qids = sorted(p.name[2:] for p in spool.iterdir() if p.name.startswith("qf"))
    for qid in qids:
        subprocess.run([*base, f"-qI{qid}", f"-Qmailwarden MW-0A1B2C3D4E5F: {qid}"], check=True)
    queue = SendmailQueue(str(cf), str(binary))
    jobs = queue.messages()
    assert set(jobs) == set(qids) and jobs[qids[0]].location == str(spool)
    assert jobs[qids[0]].reason == f"mailwarden MW-0A1B2C3D4E5F: {qids[0]}"
    assert jobs[qids[0]].recipients == ("bob@example.net",)
    assert b"Subject: " in queue.headers(qids[0])
    queue.release(qids[0])  # back in the normal queue (this config's mailer defers delivery)
    queue.delete(qids[1])
    assert queue.messages() == {}
    left = sorted(p.name for p in spool.iterdir())
    assert f"hf{qids[0]}" not in left and not any(name.endswith(qids[1]) for name in left)
    assert f"qf{qids[0]}" in left


SENDMAIL_CF = """\
V10/Berkeley
O QueueDirectory={spool}
O DontProbeInterfaces=true
O DeliveryMode=queue
O StatusFile={stats}
DnMAILER-DAEMON
Dj$w
Mlocal, P=/bin/true, F=lsDFMAqPm, S=0, R=0, A=true
Mprog, P=/bin/sh, F=lsDFMoqeu9, S=0, R=0, A=sh -c $u
S0
R$*\t\t$#local $: $1
S1
S2
S3
S4
S5
"""
