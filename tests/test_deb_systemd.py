"""The .deb under a real systemd: a clean Debian 12 root booted with systemd-nspawn.

test_deb_install.py has to emulate the unit, because systemd is not PID 1 on the CI machine. Here
the same kind of root, with systemd as its init, boots in a container (``systemd-nspawn --boot``,
private network), so mailwarden.service runs exactly as shipped, with every sandbox option:
system-call filter, MemoryDenyWriteExecute, ProtectSystem, ProtectKernel* and the rest. Debian's
own ``postfix@-`` service runs beside it with its chrooted smtpd. The package is installed without
Recommends (no document readers, Postfix named explicitly) to show it works that way too. Mail
goes through; ``systemctl reload`` and ``restart`` work; ``systemd-analyze security`` rates the
unit; and apt purges the package while systemd runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian_root import PATH, DebianRoot
from test_deb import built_deb  # noqa: F401  (session fixture: `make deb` once)
from test_deb_install import card_dump, delivered, header, message, shipped_snippet

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postfix,
    # A chroot without /sys (e.g. shared/tools/fresh-debian-ci) cannot boot a container at all;
    # the unit is then still exercised by test_deb_install.py's emulation. Reported as a skip.
    pytest.mark.skipif(not any(Path("/sys/fs/cgroup").glob("*")),
                       reason="no cgroup filesystem here: cannot boot a systemd container"),
]
SEND = """import smtplib, sys
with smtplib.SMTP("127.0.0.1", 25, timeout=60) as smtp:
    smtp.sendmail(sys.argv[1], ["sink@localhost"], sys.stdin.buffer.read())
"""


class Container:
    """A root booted by systemd-nspawn; commands run inside with nsenter."""

    def __init__(self, root: DebianRoot):
        self.root = root
        self.log = root.path.parent / "nspawn.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def boot(self, timeout: float = 180) -> Container:
        nspawn = shutil.which("systemd-nspawn")
        assert nspawn, "systemd-nspawn missing: scripts/bootstrap installs systemd-container"
        self.root.release_mounts()
        self.root.file("/usr/sbin/policy-rc.d").unlink()  # services start as on a real system
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([nspawn, "-D", str(self.root.path), "--boot",
                                          "--private-network", "--register=no", "--keep-unit"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not self.leader:
            assert self.proc.poll() is None and time.monotonic() < deadline, self.console()
            self.leader = self._init_pid(self.proc.pid)
            time.sleep(0.2)
        # Type=exec: active once started; the socket follows when the models are loaded.
        while self.run("systemctl", "is-active", "mailwarden", "postfix@-",
                       check=False).stdout.split() != ["active", "active"] or \
                "listening on" not in self.journal():
            assert time.monotonic() < deadline, self.console() + self.journal()
            time.sleep(0.5)
        return self

    @staticmethod
    def _init_pid(nspawn: int) -> int:
        """The container's init (systemd), once nspawn's child has executed it; else 0."""
        try:
            for pid in Path(f"/proc/{nspawn}/task/{nspawn}/children").read_text().split():
                argv0 = Path(f"/proc/{pid}/cmdline").read_text(errors="replace").split("\0")[0]
                if argv0.endswith("/systemd"):  # not nspawn's own fork before exec
                    return int(pid)
        except FileNotFoundError:
            pass
        return 0

    def run(self, *cmd: str, check: bool = True,
            data: bytes | None = None) -> subprocess.CompletedProcess[str]:
        full = ["nsenter", "-t", str(self.leader), "-a", "env", "-i", f"PATH={PATH}",
                "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", *cmd]
        out = subprocess.run(full, input=data, capture_output=True, timeout=900, check=False)
        result = subprocess.CompletedProcess(full, out.returncode, out.stdout.decode(
            errors="replace"), out.stderr.decode(errors="replace"))
        assert not check or out.returncode == 0, f"{cmd}: {result.stdout}{result.stderr}"
        return result

    def journal(self, unit: str = "mailwarden") -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-o", "cat", check=False).stdout

    def console(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def poweroff(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # nspawn asks the container's systemd to halt
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def container(built_deb: Path) -> Iterator[Container]:  # noqa: F811
    root = DebianRoot.create("mw-deb-systemd-")
    booted = Container(root)
    try:
        root.run("debconf-set-selections", input_data=(
            "postfix postfix/main_mailer_type select Local only\n"
            "postfix postfix/mailname string mx.mailwarden.test\n"))
        root.apt("update")
        root.apt("install", "--no-install-recommends", "systemd-sysv", "logrotate")
        root.file("/root/pkg").mkdir()
        (root.file("/root/pkg") / built_deb.name).write_bytes(built_deb.read_bytes())
        root.apt("install", "--no-install-recommends", f"/root/pkg/{built_deb.name}", "postfix")
        with root.file("/etc/postfix/main.cf").open("a") as main:  # no other milter here
            main.write("\n" + shipped_snippet(root))
        root.run("useradd", "--system", "--no-create-home", "sink")
        yield booted.boot()
    finally:
        booted.poweroff()
        root.remove()


def send(box: Container, data: bytes, sender: str = "alice@mailwarden.test") -> None:
    box.run("/usr/bin/python3", "-c", SEND, sender, data=data)


def test_the_unit_runs_with_its_sandbox(container: Container) -> None:
    shown = container.run("systemctl", "show", "mailwarden", "-p", "User", "-p", "ProtectSystem",
                          "-p", "NoNewPrivileges", "-p", "MemoryDenyWriteExecute",
                          "-p", "ActiveState").stdout.split()
    assert sorted(shown) == ["ActiveState=active", "MemoryDenyWriteExecute=yes",
                             "NoNewPrivileges=yes", "ProtectSystem=strict", "User=mailwarden"]
    journal = container.journal()
    assert "Traceback" not in journal and "LOST" not in journal, journal
    check = container.run("mailwarden", "check").stdout  # as root, the daemon running
    assert "config: /etc/mailwarden/mailwarden.toml" in check
    assert "reader_docx=yes" in check  # the document readers are dependencies now
    assert "UNAVAILABLE" not in check, check
    timer = container.run("systemctl", "is-enabled", "mailwarden-quarantine-expire.timer")
    assert timer.stdout.strip() == "enabled"
    assert container.run("systemctl", "is-active", "mailwarden-quarantine-expire.timer"
                         ).stdout.strip() == "active"
    sock = container.run("stat", "-c", "%U:%G %a",
                         "/var/spool/postfix/mailwarden/mailwarden.sock").stdout.strip()
    assert sock == "mailwarden:postfix 770"


def test_mail_through_debians_postfix_service(container: Container) -> None:
    root = container.root
    send(container, message("sd-clean-1", "Lunch at noon on Friday?"))
    verdict = header(delivered(root, "sd-clean-1"), "X-Mailwarden-Verdict")
    assert verdict.startswith("accept; mode=observe; ref=MW-")
    send(container, card_dump("sd-cards-1"))
    cards = delivered(root, "sd-cards-1")
    assert "credit_card" in header(cards, "X-Mailwarden-Findings")
    container.run("/usr/sbin/sendmail", "-f", "cron@mailwarden.test", "sink@localhost",
                  data=message("sd-local-1", "Nightly job done."))
    assert header(delivered(root, "sd-local-1"), "X-Mailwarden-Verdict").startswith("accept")
    assert "Traceback" not in container.journal()


def test_reload_restart_and_exposure(container: Container) -> None:
    container.run("systemctl", "reload", "mailwarden")
    deadline = time.monotonic() + 60
    while "configuration and models reloaded" not in container.journal():
        assert time.monotonic() < deadline, container.journal()
        time.sleep(0.5)
    started = container.journal().count("listening on")
    container.run("systemctl", "restart", "mailwarden")
    assert container.run("systemctl", "is-active", "mailwarden").stdout.strip() == "active"
    while container.journal().count("listening on") == started:
        assert time.monotonic() < deadline + 60, container.journal()
        time.sleep(0.5)
    send(container, message("sd-after-restart", "Still there?"))
    assert header(delivered(container.root, "sd-after-restart"), "X-Mailwarden-Verdict")
    rating = container.run("systemd-analyze", "security", "--no-pager", "mailwarden.service",
                           check=False).stdout
    found = re.search(r"Overall exposure level for mailwarden\.service: (\d+\.\d+)", rating)
    assert found and float(found.group(1)) <= 2.0, rating[-2000:]


def test_purge_while_systemd_runs(container: Container) -> None:
    container.run("apt-get", "-q", "-y", "purge", "mailwarden")
    state = container.run("systemctl", "is-active", "mailwarden", check=False).stdout.strip()
    assert state in ("inactive", "unknown")
    left = container.run("find", "/", "-xdev", "-name", "*mailwarden*", "-not", "-path",
                         "/root/pkg/*", check=False).stdout.split()
    assert left == []
    # Postfix keeps delivering without the milter (default_action=accept in the snippet).
    send(container, message("sd-after-purge", "And now?"))
    block = delivered(container.root, "sd-after-purge")
    assert "X-Mailwarden-Verdict" not in block
