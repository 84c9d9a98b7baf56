"""The built .deb on a clean Debian 12 root, from ``apt-get install`` through mail flow to purge.

A copy of a debootstrap minbase root gets what every Debian 12 server has (systemd, logrotate),
then ``apt-get install ./mailwarden_*.deb``, which pulls Debian's own libraries and, through
Recommends, Postfix. The daemon is started the way mailwarden.service does (its Exec lines, user,
umask and sandbox: see debian_root.Unit), Debian's Postfix with its default chrooted master.cf gets
the shipped main.cf snippet, and messages go through it by SMTP and by sendmail(1). Finally the
package is purged and nothing named mailwarden may remain but the system user.
"""

from __future__ import annotations

import gzip
import random
import smtplib
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian_root import UNIT_PATH, Daemon, DebianRoot
from test_deb import built_deb  # noqa: F401  (session fixture: `make deb` once)

from postfix_instance import free_port

pytestmark = [pytest.mark.slow, pytest.mark.postfix]
CONF = "/etc/mailwarden/mailwarden.toml"


@pytest.fixture(scope="module")
def root(built_deb: Path) -> Iterator[DebianRoot]:  # noqa: F811
    debroot = DebianRoot.create("mw-deb-")
    try:
        debroot.run("debconf-set-selections", input_data=(
            "postfix postfix/main_mailer_type select Local only\n"
            "postfix postfix/mailname string mx.mailwarden.test\n"))
        debroot.apt("update")
        debroot.apt("install", "--no-install-recommends", "systemd", "logrotate")
        debroot.file("/root/pkg").mkdir()
        (debroot.file("/root/pkg") / built_deb.name).write_bytes(built_deb.read_bytes())
        debroot.apt("install", f"/root/pkg/{built_deb.name}")
        yield debroot
    finally:
        debroot.remove()


def packaged_config(root: DebianRoot) -> dict:  # type: ignore[type-arg]
    return tomllib.loads(root.file(CONF).read_text())


def socket_path(root: DebianRoot) -> Path:
    spec = packaged_config(root)["milter"]["socket"]
    assert spec.startswith("unix:")
    return root.file(spec.split(":", 1)[1])


def shipped_snippet(root: DebianRoot) -> str:
    path = root.file("/usr/share/doc/mailwarden/examples/postfix/main.cf")
    if path.exists():
        return path.read_text()
    return gzip.decompress(Path(f"{path}.gz").read_bytes()).decode()


def start_postfix(root: DebianRoot) -> int:
    """Debian's Postfix as installed (chrooted smtpd and cleanup) plus the shipped snippet."""
    port = free_port()
    with root.file("/etc/postfix/main.cf").open("a") as main:
        main.write("\n" + shipped_snippet(root))
    root.run("postconf", "-e", "maillog_file = /var/log/postfix.log", "inet_protocols = ipv4",
             "mydestination = localhost, mx.mailwarden.test", "myhostname = mx.mailwarden.test")
    root.run("postconf", "-MX", "smtp/inet")
    root.run("postconf", "-M", f"127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - y - - smtpd")
    if not root.run("getent", "passwd", "sink", check=False).stdout:
        root.run("useradd", "--system", "--no-create-home", "sink")
    root.run("/usr/lib/postfix/configure-instance.sh", "-")
    root.run("postfix", "check")
    root.run("postfix", "start")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5):
                return port
        except OSError:
            time.sleep(0.2)
    raise AssertionError(root.file("/var/log/postfix.log").read_text())


def luhn(prefix: str, rng: random.Random) -> str:
    digits = prefix + "".join(str(rng.randint(0, 9)) for _ in range(15 - len(prefix)))
    total = sum(int(d) if i % 2 else sum(divmod(int(d) * 2, 10))
                for i, d in enumerate(reversed(digits)))
    return digits + str((10 - total % 10) % 10)


def card_dump(token: str, count: int = 6) -> bytes:
    """Luhn-valid card numbers with their keywords: six score above the reject threshold."""
    rng = random.Random(7)
    prefixes = ("453201", "491748", "542418", "552433", "402400", "455673")
    cards = [luhn(p, rng) for p in prefixes[:count]]
    lines = [f"Card {i}: {c[:4]} {c[4:8]} {c[8:12]} {c[12:]} exp 0{i}/28" for i, c in
             enumerate(cards, 1)]
    return message(token, "Customer credit card list (card number, expiry):\n\n" +
                   "\n".join(lines))


def message(subject: str, body: str) -> bytes:
    head = (f"From: Alice <alice@mailwarden.test>\r\nTo: sink@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@mailwarden.test>\r\n\r\n")
    return (head + body.replace("\n", "\r\n") + "\r\n").encode()


def delivered(root: DebianRoot, token: str, timeout: float = 60,
              log: str = "/var/log/postfix.log") -> str:
    """The header block of the message whose Subject is ``token`` in /var/mail/sink."""
    box = root.file("/var/mail/sink")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = box.read_text(errors="replace") if box.exists() else ""
        for mail in text.split("\nFrom ")[::-1]:
            if f"Subject: {token}\n" in mail:
                return mail.split("\n\n", 1)[0]
        time.sleep(0.2)
    text = root.file(log).read_text(errors="replace") if root.file(log).exists() else ""
    raise AssertionError(f"{token} not delivered: {text[-3000:]}")


def header(block: str, name: str) -> str:
    values = [line.split(": ", 1)[1] for line in block.splitlines()
              if line.lower().startswith(name.lower() + ": ")]
    assert len(values) == 1, (name, block)
    return values[0]


@pytest.fixture(scope="module")
def daemon(root: DebianRoot) -> Iterator[Daemon]:
    running = Daemon(root).start(socket_path(root))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def smtp_port(root: DebianRoot, daemon: Daemon) -> Iterator[int]:
    port = start_postfix(root)
    yield port
    root.run("postfix", "stop", check=False)


def send(port: int, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail("alice@mailwarden.test", ["sink@localhost"], data)


def test_installed_as_a_debian_service(root: DebianRoot) -> None:
    status = root.run("dpkg-query", "-W", "-f", "${Status} ${Version}\n", "mailwarden", "postfix")
    assert status.stdout.count("install ok installed") == 2, status.stdout
    user = root.run("getent", "passwd", "mailwarden").stdout.strip().split(":")
    assert user[5:] == ["/var/lib/mailwarden", "/usr/sbin/nologin"]
    conf = root.file(CONF).stat()
    assert (conf.st_uid, conf.st_gid, conf.st_mode & 0o7777) == (0, root.gid("mailwarden"), 0o640)
    state = root.file("/var/lib/mailwarden").stat()
    assert (state.st_uid, state.st_mode & 0o7777) == (root.uid("mailwarden"), 0o750)
    assert root.file("/etc/systemd/system/multi-user.target.wants/mailwarden.service").is_symlink()
    code = ("import mailwarden.cli as c, mailwarden.detectors.base as b;"
            " print(c.__file__, b.__file__)")
    where = root.run("/usr/bin/python3", "-c", code).stdout.split()
    assert where == ["/usr/lib/python3/dist-packages/mailwarden/cli.py",
                     "/usr/lib/python3/dist-packages/mailwarden/detectors/base.py"]
    verify = root.run("systemd-analyze", "verify", "--man=no", UNIT_PATH, check=False)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")


def test_check_loads_the_packaged_config_and_models(root: DebianRoot, daemon: Daemon) -> None:
    from mailwarden.detectors.base import registrations

    out = daemon.pre_output
    assert f"config: {CONF}" in out
    assert "mode: observe  socket: unix:/var/spool/postfix/mailwarden/mailwarden.sock" in out
    assert "UNAVAILABLE" not in out, out
    models = root.file("/usr/lib/python3/dist-packages/mailwarden/models")
    modelled = {p.name for p in models.iterdir()}
    expected = sorted(modelled & set(registrations()))
    assert expected, modelled
    for name in expected:
        assert f"detector {name}: enabled" in out, out


def test_socket_is_reachable_by_postfix_only(root: DebianRoot, daemon: Daemon) -> None:
    sock = socket_path(root)
    owner = (root.uid("mailwarden"), root.gid("postfix"))
    assert (sock.stat().st_uid, sock.stat().st_gid, sock.stat().st_mode & 0o777) == (*owner, 0o770)
    folder = sock.parent.stat()
    assert (folder.st_uid, folder.st_gid, folder.st_mode & 0o7777) == (*owner, 0o2750)



def test_mail_flows_through_postfix_in_observe_mode(root: DebianRoot, daemon: Daemon,
                                                    smtp_port: int) -> None:
    send(smtp_port, message("deb-clean-1", "Lunch at noon on Friday?"))
    clean = delivered(root, "deb-clean-1")
    assert header(clean, "X-Mailwarden-Verdict").startswith("accept; mode=observe; ref=MW-")
    dump = card_dump("deb-cards-1")
    send(smtp_port, dump)
    cards = delivered(root, "deb-cards-1")  # observe mode: delivered whatever the verdict
    assert not header(cards, "X-Mailwarden-Verdict").startswith("accept"), cards
    assert "credit_card" in header(cards, "X-Mailwarden-Findings")
    root.run("/usr/sbin/sendmail", "-f", "cron@mailwarden.test", "sink@localhost",
             input_data=message("deb-local-1", "Nightly job done.").decode())
    local = delivered(root, "deb-local-1")  # non_smtpd_milters: cleanup's milter connection
    assert header(local, "X-Mailwarden-Verdict").startswith("accept; mode=observe")
    port = packaged_config(root)["metrics"]["port"]
    metrics = daemon.metrics(port)
    would = [line for line in metrics.splitlines()
             if line.startswith("mailwarden_observe_would_have_total{")]
    assert would and sum(float(line.rsplit(" ", 1)[1]) for line in would) >= 1, metrics
    secrets = [line.split(": ", 1)[1].replace(" ", "")[:16] for line in
               dump.decode().splitlines() if line.startswith("Card ")]
    logged = daemon.log() + root.file("/var/lib/mailwarden/audit.jsonl").read_text()
    assert "deb-cards-1" not in logged and not [s for s in secrets if s in logged.replace(" ", "")]


def test_reload_and_log_rotation(root: DebianRoot, daemon: Daemon, smtp_port: int) -> None:
    daemon.reload()
    deadline = time.monotonic() + 60
    while "configuration and models reloaded" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.2)
    audit = root.file("/var/lib/mailwarden/audit.jsonl")
    before = audit.read_text().count("\n")
    assert before >= 1
    root.run("logrotate", "--force", "/etc/logrotate.d/mailwarden")
    rotated = root.file("/var/lib/mailwarden/audit.jsonl.1")
    assert rotated.read_text().count("\n") == before
    fresh = audit.stat()
    assert (fresh.st_uid, fresh.st_mode & 0o777, fresh.st_size) == (root.uid("mailwarden"),
                                                                    0o640, 0)
    send(smtp_port, message("deb-after-rotate", "Still there?"))
    delivered(root, "deb-after-rotate")
    deadline = time.monotonic() + 10
    while audit.read_text().count("\n") < 1:  # the daemon re-opened the new file
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.1)
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_purge_leaves_nothing_behind(root: DebianRoot, daemon: Daemon, smtp_port: int) -> None:
    assert daemon.stop() == 0, daemon.log()
    assert "stopping" in daemon.log()
    root.run("postfix", "stop")
    root.apt("purge", "mailwarden")
    left = root.run("find", "/", "-xdev", "-name", "*mailwarden*", "-not", "-path", "/root/pkg/*",
                    check=False).stdout.split()
    assert left == []
    assert "mailwarden" not in root.file("/var/lib/dpkg/statoverride").read_text()
    assert not root.run("dpkg-query", "-W", "mailwarden", check=False).stdout.strip()
    # Kept on purge, as Debian policy recommends for system users: the user and group.
    assert root.run("getent", "passwd", "mailwarden").stdout
