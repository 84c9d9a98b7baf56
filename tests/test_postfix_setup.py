"""``mailwarden postfix-setup`` and the shipped ``smtp_header_checks``, on real Postfix tools.

The list handling is unit-tested; then the command runs against a Postfix configuration that
already has another milter (``postconf -c``): mailwarden is added in front, the other milter
stays, a ``non_smtpd_milters`` that follows ``$smtpd_milters`` is left alone, master.cf overrides
are extended, and a second run changes nothing. Finally a real Postfix instance with a dummy
milter gets mailwarden through the command and delivers one message locally and one over SMTP
to a loopback sink (a remote MX stand-in): both carry the dummy milter's header, the local one
keeps the ``X-Mailwarden-*`` headers, the one that left over SMTP has none.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_sink import SmtpSink

from mailwarden.mta.postfix_setup import milter_address, postfix_address, split_list, with_milter

from conftest import REPO, message_bytes, write_config
from milter_process import MilterProcess
from postfix_instance import PostfixInstance, free_port, public_tmpdir, wait_listening

HEADER_CHECKS = REPO / "deploy/postfix/smtp_header_checks"
OURS = "unix:/mailwarden/mailwarden.sock"


def setup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailwarden", "postfix-setup",
                           "--header-checks", str(HEADER_CHECKS), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def postconf(conf: Path, *args: str) -> str:
    return subprocess.run(["postconf", "-c", str(conf), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_lists_keep_braced_groups_and_find_the_address() -> None:
    value = "inet:localhost:8891, { unix:/a.sock, default_action=tempfail },unix:/b"
    assert split_list(value) == ["inet:localhost:8891", "{ unix:/a.sock, default_action=tempfail }",
                                 "unix:/b"]
    assert [milter_address(i) for i in split_list(value)] == [
        "inet:localhost:8891", "unix:/a.sock", "unix:/b"]
    same = "{ unix:/a.sock, default_action=tempfail }"
    assert with_milter(value, "unix:/a.sock", same, last=False) is None
    # The switch to enforce changes mailwarden's entry in place; the others stay, in order.
    accept = "inet:localhost:8891, { unix:/a.sock, default_action=accept }, unix:/b"
    assert with_milter(accept, "unix:/a.sock", same, last=False) == \
        "inet:localhost:8891, { unix:/a.sock, default_action=tempfail }, unix:/b"
    assert with_milter("", OURS, "{ x }", last=False) == "{ x }"
    assert with_milter("inet:localhost:8891", OURS, "E", last=True) == "inet:localhost:8891, E"
    assert postfix_address("unix:/var/spool/postfix/mailwarden/mailwarden.sock") == OURS
    assert postfix_address("inet:11339@127.0.0.1") == "inet:127.0.0.1:11339"
    assert postfix_address("unix:/run/mailwarden/mailwarden.sock") == \
        "unix:/run/mailwarden/mailwarden.sock"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    (tmp_path / "main.cf").write_text(
        "compatibility_level = 3.6\nsmtpd_milters = inet:localhost:8891\n"
        "non_smtpd_milters = $smtpd_milters\nmilter_default_action = accept\n")
    (tmp_path / "master.cf").write_text(
        "smtp inet n - y - - smtpd\n  -o smtpd_milters=\n"
        "submission inet n - y - - smtpd\n  -o smtpd_milters=inet:localhost:8891\n")
    return tmp_path


def test_adds_mailwarden_before_existing_milters_once(conf: Path) -> None:
    dry = setup("--postfix-config", str(conf), "--milter", OURS, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert postconf(conf, "-h", "smtpd_milters") == "inet:localhost:8891"  # nothing written
    assert not (conf / "mailwarden_smtp_header_checks").exists()
    out = setup("--postfix-config", str(conf), "--milter", OURS)
    assert out.returncode == 0, out.stderr
    smtpd = split_list(postconf(conf, "-h", "smtpd_milters"))
    assert [milter_address(i) for i in smtpd] == [OURS, "inet:localhost:8891"]
    assert "default_action=accept" in smtpd[0]
    assert postconf(conf, "-h", "non_smtpd_milters") == "$smtpd_milters"
    services = postconf(conf, "-P")
    submission = [line for line in services.splitlines() if line.startswith("submission/")]
    assert len(submission) == 1 and OURS in submission[0] and "8891" in submission[0]
    assert "smtp/inet/smtpd_milters =" in services.splitlines()  # an opt-out stays an opt-out
    assert "smtp/inet opts out of milters" in out.stdout
    copy = conf / "mailwarden_smtp_header_checks"  # Postfix's own copy: outlives the package
    assert postconf(conf, "-h", "smtp_header_checks") == f"regexp:{copy}"
    assert copy.read_bytes() == HEADER_CHECKS.read_bytes()
    assert postconf(conf, "-h", "milter_default_action") == "accept"  # not ours to change
    again = setup("--postfix-config", str(conf), "--milter", OURS)
    assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout
    assert [line for line in (conf / "main.cf").read_text().splitlines()
            if line.startswith("smtpd_milters")] == [f"smtpd_milters = {', '.join(smtpd)}"]
    check = subprocess.run(["postconf", "-c", str(conf), "-n"], capture_output=True, text=True,
                           check=True)
    assert "overriding" not in check.stderr


def test_keep_headers_leaves_smtp_header_checks_alone(conf: Path) -> None:
    out = setup("--postfix-config", str(conf), "--milter", OURS, "--keep-headers")
    assert out.returncode == 0, out.stderr
    assert postconf(conf, "-h", "smtp_header_checks") == ""
    assert not (conf / "mailwarden_smtp_header_checks").exists()


def test_shipped_table_strips_only_our_headers() -> None:
    def lookup(line: str) -> str:
        return subprocess.run(["postmap", "-q", line, f"regexp:{HEADER_CHECKS}"],
                              capture_output=True, text=True, check=False).stdout.strip()

    for name in ("X-Mailwarden-Verdict", "X-Mailwarden-Score", "X-Mailwarden-Findings",
                 "x-mailwarden-verdict"):
        assert lookup(f"{name}: quarantine; mode=observe") == "IGNORE", name
    for line in ("X-Mailer: mutt", "Subject: X-Mailwarden-Verdict: x", "X-Mailwardenx: 1"):
        assert lookup(line) == "", line


@pytest.fixture
def dummy_milter() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "bench/dummy_milter.py"), "--socket",
                             f"inet:{port}@127.0.0.1", "--cpu-ms", "0", "--verdict", "addheader"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.postfix
def test_headers_stay_inside_and_the_other_milter_stays_attached(dummy_milter: int) -> None:
    root = public_tmpdir("mw-setup-")
    sock = root / "mw.sock"
    milter = MilterProcess(write_config(root), sock, mode="observe").start()
    with SmtpSink() as sink:
        postfix = PostfixInstance(
            f"inet:127.0.0.1:{dummy_milter}",
            f"transport_maps = inline:{{ partner.test=smtp:[127.0.0.1]:{sink.port} }}\n")
        try:
            postfix.start()
            out = setup("--postfix-config", str(postfix.etc), "--milter", f"unix:{sock}")
            assert out.returncode == 0, out.stderr
            assert f"unix:{sock}" in postconf(postfix.etc, "-h", "non_smtpd_milters")
            postfix._postfix("postfix", "reload")
            time.sleep(1)
            data = message_bytes(subject="setup-out", marker="quarantine",
                                 sender="alice@mailwarden.test", to="carol@partner.test")
            local = message_bytes(subject="setup-in", marker="quarantine",
                                  sender="alice@mailwarden.test", to="bob@sink.test")
            try:
                with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
                    smtp.sendmail("alice@mailwarden.test", ["carol@partner.test"], data)
                    smtp.sendmail("alice@mailwarden.test", ["bob@sink.test"], local)
            except smtplib.SMTPException as exc:
                raise AssertionError(f"{exc}: {postfix.log()[-3000:]}") from None
            outbound = sink.wait_for("setup-out")
            inside = postfix.wait_delivered(1)[0]
            assert b"X-Bench-Scanned: yes" in outbound and b"X-Bench-Scanned: yes" in inside
            assert b"X-Mailwarden-Verdict: quarantine; mode=observe" in inside
            assert b"X-Mailwarden-Findings: test_quarantine=1" in inside
            assert b"x-mailwarden-" not in outbound.lower(), outbound.decode(errors="replace")
        finally:
            postfix.remove()
            milter.stop()
            shutil.rmtree(root, ignore_errors=True)


def test_switch_to_enforce_fails_closed_and_keeps_the_other_milters(conf: Path) -> None:
    assert setup("--postfix-config", str(conf), "--milter", OURS).returncode == 0
    out = setup("--postfix-config", str(conf), "--milter", OURS, "--default-action", "tempfail")
    assert out.returncode == 0, out.stderr
    smtpd = split_list(postconf(conf, "-h", "smtpd_milters"))
    assert [milter_address(i) for i in smtpd] == [OURS, "inet:localhost:8891"]
    assert "default_action=tempfail" in smtpd[0] and "accept" not in smtpd[0]
    submission = [line for line in postconf(conf, "-P").splitlines()
                  if line.startswith("submission/")]
    assert "default_action=tempfail" in submission[0] and "8891" in submission[0]
    assert postconf(conf, "-h", "milter_default_action") == "accept"  # the others' default
