"""The .deb with Debian's Sendmail 8.17 (which conflicts with the postfix package) in its own root.

The root gets ``sendmail``, then ``apt-get install ./mailwarden_*.deb``: the package's
``Recommends: postfix | sendmail`` is satisfied and Postfix stays out. The steps of
deploy/sendmail/README.md follow: the socket moved to the unit's runtime directory, the shipped
``INPUT_MAIL_FILTER`` line in Debian's own sendmail.mc, ``make -C /etc/mail``. Sendmail runs from
its init script in a network namespace of its own (port 25 there is free whatever the machine
runs), and messages go through it by SMTP and by sendmail(1) (the MSP relays to the MTA). Then
enforce mode: a quarantined message shows in ``mailq -qQ`` and the documented release delivers it;
a card dump is refused with 550 5.7.1.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian_root import Daemon, DebianRoot, NetNamespace
from test_deb import built_deb  # noqa: F401  (session fixture: `make deb` once)
from test_deb_install import CONF, card_dump, delivered, header, message, socket_path

pytestmark = [pytest.mark.slow]
SEND = """import smtplib, sys
try:
    with smtplib.SMTP("127.0.0.1", 25, timeout=60) as smtp:
        smtp.sendmail(sys.argv[1], ["sink@localhost"], sys.stdin.buffer.read())
except smtplib.SMTPResponseException as exc:
    print(exc.smtp_code, exc.smtp_error.decode())
"""


@pytest.fixture(scope="module")
def root(built_deb: Path) -> Iterator[DebianRoot]:  # noqa: F811
    debroot = DebianRoot.create("mw-deb-sendmail-")
    try:
        # Sendmail wants a fully qualified host name and resolvable sender domains.
        debroot.file("/etc/hosts").write_text(
            f"127.0.0.1 localhost\n127.0.1.1 mx.mailwarden.test mx {socket.gethostname()}\n"
            "127.0.1.2 mailwarden.test\n")
        debroot.apt("update")
        debroot.apt("install", "--no-install-recommends", "systemd", "logrotate", "sendmail")
        debroot.file("/root/pkg").mkdir()
        (debroot.file("/root/pkg") / built_deb.name).write_bytes(built_deb.read_bytes())
        debroot.apt("install", f"/root/pkg/{built_deb.name}")
        yield debroot
    finally:
        debroot.remove()


@pytest.fixture(scope="module")
def daemon(root: DebianRoot) -> Iterator[Daemon]:
    # deploy/sendmail/README.md, step 1
    root.run("sed", "-i", 's|^socket = .*|socket = "unix:/run/mailwarden/mailwarden.sock"|', CONF)
    running = Daemon(root).start(socket_path(root))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def netns(root: DebianRoot, daemon: Daemon) -> Iterator[NetNamespace]:
    snippet = root.file("/usr/share/doc/mailwarden/examples/sendmail/sendmail.mc").read_text()
    lines = [line for line in snippet.splitlines() if not line.startswith("dnl")]
    mc = root.file("/etc/mail/sendmail.mc")
    assert mc.read_text().count("\nMAILER_DEFINITIONS\n") == 1
    mc.write_text(mc.read_text().replace("\nMAILER_DEFINITIONS\n",
                                         "\n" + "\n".join(lines) + "\nMAILER_DEFINITIONS\n"))
    root.run("make", "-C", "/etc/mail")
    root.run("useradd", "--system", "--no-create-home", "sink")
    ns = NetNamespace(root.path.parent / "netns")
    subprocess.run(ns.command("chroot", str(root.path), "/etc/init.d/sendmail", "start"),
                   check=True, capture_output=True, timeout=300)
    yield ns
    subprocess.run(ns.command("chroot", str(root.path), "/etc/init.d/sendmail", "stop"),
                   check=False, capture_output=True, timeout=120)
    ns.remove()


def inside(root: DebianRoot, ns: NetNamespace, *cmd: str, data: bytes = b"") -> str:
    out = subprocess.run(ns.command("chroot", str(root.path), *cmd), input=data,
                         capture_output=True, timeout=120, check=True)
    return out.stdout.decode(errors="replace")


def smtp(root: DebianRoot, ns: NetNamespace, data: bytes,
         sender: str = "alice@mailwarden.test") -> str:
    """Sends over SMTP to the MTA on port 25 of the namespace; '' or the refusal."""
    return inside(root, ns, "/usr/bin/python3", "-c", SEND, sender, data=data).strip()


def test_recommends_are_satisfied_by_sendmail(root: DebianRoot) -> None:
    status = root.run("dpkg-query", "-W", "-f", "${Package} ${Status}\n", "mailwarden",
                      "sendmail-bin", "postfix", check=False).stdout
    assert "mailwarden install ok installed" in status
    assert "sendmail-bin install ok installed" in status
    assert "postfix install ok installed" not in status
    # No Postfix spool: socket-dir did nothing and the unit's optional ReadWritePaths is absent.
    assert not root.file("/var/spool/postfix").exists()


def test_mail_through_sendmail_in_observe_mode(root: DebianRoot, netns: NetNamespace) -> None:
    assert "InputMailFilters=mailwarden" in root.file("/etc/mail/sendmail.cf").read_text()
    assert smtp(root, netns, message("sm-clean-1", "Lunch at noon on Friday?")) == ""
    verdict = header(delivered(root, "sm-clean-1"), "X-Mailwarden-Verdict")
    assert verdict.startswith("accept; mode=observe; ref=MW-")
    assert smtp(root, netns, card_dump("sm-cards-1")) == ""
    cards = delivered(root, "sm-cards-1")
    assert "credit_card" in header(cards, "X-Mailwarden-Findings")
    assert not header(cards, "X-Mailwarden-Verdict").startswith("accept")
    inside(root, netns, "/usr/sbin/sendmail", "-f", "cron@mailwarden.test", "sink@localhost",
           data=message("sm-local-1", "Nightly job done."))
    local = delivered(root, "sm-local-1")  # the MSP relayed it to the MTA, which asked mailwarden
    assert header(local, "X-Mailwarden-Verdict").startswith("accept; mode=observe")


def test_enforce_quarantine_release_and_reject(root: DebianRoot, daemon: Daemon,
                                               netns: NetNamespace) -> None:
    root.run("sed", "-i", 's/^mode = "observe"/mode = "enforce"/', CONF)  # README step 5
    daemon.reload()
    deadline = time.monotonic() + 60
    while "configuration and models reloaded" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.2)
    # Two card numbers score between the quarantine (5) and reject (10) thresholds; a sender of
    # its own keeps the sending-pattern detector out of it.
    two = card_dump("sm-cards-2", count=2)
    assert smtp(root, netns, two, sender="carol@mailwarden.test") == "", daemon.log()[-2000:]
    refused = smtp(root, netns, card_dump("sm-cards-6"))
    assert refused.startswith("550 5.7.1 Message refused by local policy (ref MW-"), refused
    held = inside(root, netns, "mailq", "-qQ")
    assert "QUARANTINE: mailwarden MW-" in held, held
    found = re.search(r"^(\w+)\s+\d+ .*\n\s+QUARANTINE: mailwarden MW-", held, re.MULTILINE)
    assert found, held
    queue_id = found.group(1)
    assert not root.file("/var/mail/sink").read_text().count("Subject: sm-cards-2\n")
    inside(root, netns, "/usr/sbin/sendmail", "-qQ", "-Q", f"-qI{queue_id}")  # README: release
    inside(root, netns, "/usr/sbin/sendmail", f"-qI{queue_id}")
    released = delivered(root, "sm-cards-2")
    assert header(released, "X-Mailwarden-Verdict").startswith("quarantine; mode=enforce")
    assert "sm-cards-6" not in root.file("/var/mail/sink").read_text()
