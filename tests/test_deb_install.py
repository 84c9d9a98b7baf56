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
import json
import random
import shlex
import smtplib
import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian_root import APT_ARCHIVES, UNIT_PATH, Daemon, DebianRoot, link_debs
from guide_blocks import blocks, commands, matches, outputs
from smtp_sink import SmtpSink
from test_deb import built_deb  # noqa: F401  (session fixture: `make deb` once)

from conftest import REPO
from postfix_instance import free_port, wait_listening

pytestmark = [pytest.mark.slow, pytest.mark.postfix]
CONF = "/etc/mailwarden/mailwarden.toml"
GUIDE = REPO / "deploy/postfix/README.md"
TIMER = "mailwarden-quarantine-expire.timer"


@pytest.fixture(scope="module")
def base(built_deb: Path) -> Iterator[DebianRoot]:  # noqa: F811
    """A fresh root with what every Debian 12 server has, and the package where the guide says
    `make deb` puts it: the parent of the source tree (/root/src)."""
    debroot = DebianRoot.create("mw-deb-")
    try:
        debroot.run("debconf-set-selections", input_data=(
            "postfix postfix/main_mailer_type select Local only\n"
            "postfix postfix/mailname string mx.mailwarden.test\n"))
        debroot.apt("update")
        debroot.apt("install", "--no-install-recommends", "systemd", "logrotate")
        debroot.file("/root/src").mkdir()
        assert make_deb_output() == ".."  # the Makefile's default DEB_OUT, as the guide says
        (debroot.file("/root") / built_deb.name).write_bytes(built_deb.read_bytes())
        # `apt install` asks before installing; an operator answers yes.
        debroot.file("/etc/apt/apt.conf.d/90assume-yes").write_text(
            'APT::Get::Assume-Yes "true";\n')
        yield debroot
    finally:
        debroot.remove()


def make_deb_output() -> str:
    text = (REPO / "Makefile").read_text()
    return text.split("DEB_OUT ?= ", 1)[1].split("\n", 1)[0].strip()


class Guide:
    """Runs a guide's blocks in the root as written; `systemctl` is emulated (no systemd here):
    status starts the daemon the way the package would have, reload and restart act on it."""

    def __init__(self, root: DebianRoot):
        self.root = root
        self.daemon: Daemon | None = None
        self.outputs: dict[str, str] = {}

    def run(self, block: str, retry: tuple[str, ...] = ()) -> None:
        for line in blocks(GUIDE)[block]:
            self.run_line(line, retry)

    def run_line(self, line: str, retry: tuple[str, ...] = ()) -> None:
        for command in commands(line):
            self.outputs[command] = self.one(command, retry=bool(retry) and
                                             command.startswith(retry))

    def one(self, command: str, retry: bool = False) -> str:
        words = shlex.split(command)
        if words[0] == "systemctl":
            return self.systemctl(words[1:])
        deadline = time.monotonic() + (60 if retry else 0)
        while True:
            out = self.root.run("sh", "-c", f"cd /root/src && {command}", check=False,
                                timeout=1500)
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        link_debs(self.root.file("/var/cache/apt/archives"), APT_ARCHIVES)
        assert out.returncode == 0, f"{command}: exit {out.returncode}\n{out.stdout}{out.stderr}"
        return out.stdout

    def systemctl(self, args: list[str]) -> str:
        if args == ["status", "mailwarden"]:
            if self.daemon is None:  # the postinst starts it on a real system
                self.daemon = Daemon(self.root).start(socket_path(self.root))
            assert self.daemon.proc is not None and self.daemon.proc.poll() is None
            return "active (running)"
        if args == ["reload", "mailwarden"] and self.daemon is not None:
            done = self.daemon.log().count("configuration and models reloaded")
            self.daemon.reload()
            deadline = time.monotonic() + 120
            while self.daemon.log().count("configuration and models reloaded") == done:
                assert time.monotonic() < deadline, self.daemon.log()[-3000:]
                time.sleep(0.2)
            return ""
        if len(args) == 2 and args[0] == "list-timers":
            wants = self.root.file(f"/etc/systemd/system/timers.target.wants/{args[1]}")
            assert wants.is_symlink(), f"{args[1]} is not enabled"
            return args[1]
        raise AssertionError(f"the guide runs systemctl {' '.join(args)}: emulate it here")


@pytest.fixture(scope="module")
def guide(base: DebianRoot) -> Iterator[Guide]:
    running = Guide(base)
    running.run("install")
    yield running
    if running.daemon is not None:
        running.daemon.stop()


@pytest.fixture(scope="module")
def root(guide: Guide) -> DebianRoot:
    return guide.root


@pytest.fixture(scope="module")
def daemon(guide: Guide) -> Daemon:
    assert guide.daemon is not None
    return guide.daemon


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


def start_postfix(root: DebianRoot, milters: str = "", sink_port: int = 0) -> int:
    """Debian's Postfix as installed (chrooted smtpd and cleanup), already using ``milters``,
    with mail for partner.test sent over SMTP to a loopback sink (a remote MX stand-in)."""
    port = free_port()
    root.run("postconf", "-e", "maillog_file = /var/log/postfix.log", "inet_protocols = ipv4",
             "mydestination = localhost, mx.mailwarden.test", "myhostname = mx.mailwarden.test")
    if milters:
        root.run("postconf", "-e", f"smtpd_milters = {milters}", f"non_smtpd_milters = {milters}",
                 "milter_default_action = accept")
    if sink_port:
        root.run("postconf", "-e", "transport_maps = inline:{ partner.test=smtp:[127.0.0.1]:"
                 f"{sink_port} }}")
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
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture(scope="module")
def dummy_milter(root: DebianRoot) -> Iterator[int]:
    """bench/dummy_milter.py in the root (Debian's python3-milter), adding X-Bench-Scanned."""
    port = free_port()
    bench = root.file("/root/bench")
    bench.mkdir(exist_ok=True)
    for name in ("dummy_milter.py", "noop_milter.py"):
        (bench / name).write_bytes((REPO / "bench" / name).read_bytes())
    proc = subprocess.Popen(["chroot", str(root.path), "/usr/bin/python3",
                             "/root/bench/dummy_milter.py", "--socket", f"inet:{port}@127.0.0.1",
                             "--cpu-ms", "0", "--verdict", "addheader"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def smtp_port(guide: Guide, dummy_milter: int, sink: SmtpSink) -> Iterator[int]:
    """Postfix with another milter attached, then the guide's own "postfix" block."""
    port = start_postfix(guide.root, f"inet:127.0.0.1:{dummy_milter}", sink.port)
    guide.run("postfix")
    yield port
    guide.root.run("postfix", "stop", check=False)


def send(port: int, data: bytes, sender: str = "alice@mailwarden.test",
         to: str = "sink@localhost") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail(sender, [to], data)


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
    units = [UNIT_PATH, f"/lib/systemd/system/{TIMER}",
             f"/lib/systemd/system/{TIMER.replace('.timer', '.service')}"]
    verify = root.run("systemd-analyze", "verify", "--man=no", *units, check=False)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    assert root.file(f"/etc/systemd/system/timers.target.wants/{TIMER}").is_symlink()
    for page in ("man1/mailwarden.1.gz",):
        text = gzip.decompress(root.file(f"/usr/share/man/{page}").read_bytes()).decode()
        for command in ("quarantine", "report", "train", "evaluate", "postfix\\-setup"):
            assert f".B {command}" in text, command


def test_check_as_root_first_leaves_the_daemon_every_detector(
        root: DebianRoot, guide: Guide, daemon: Daemon) -> None:
    """The guide runs `mailwarden check` as root before the daemon's first start."""
    from mailwarden.detectors.base import registrations

    out = guide.outputs["mailwarden check"]
    assert f"config: {CONF}" in out
    assert "mode: observe  socket: unix:/var/spool/postfix/mailwarden/mailwarden.sock" in out
    assert "UNAVAILABLE" not in out, out
    models = root.file("/usr/lib/python3/dist-packages/mailwarden/models")
    modelled = {p.name for p in models.iterdir()}
    expected = sorted(modelled & set(registrations()))
    assert expected, modelled
    for name in expected:
        assert f"detector {name}: enabled" in out, out
    state = root.file("/var/lib/mailwarden")
    made = list(state.iterdir())
    assert "sending.sqlite" in [p.name for p in made], made  # created by check, as root
    assert {p.stat().st_uid for p in made} == {root.uid("mailwarden")}
    assert "LOST" not in daemon.log() and "readonly" not in daemon.log(), daemon.log()
    enabled = [line for line in daemon.metrics(packaged_config(root)["metrics"]["port"])
               .splitlines() if line.startswith("mailwarden_detector_enabled{")]
    for name in expected:
        assert [line for line in enabled if f'detector="{name}"' in line and
                'state="enabled"' in line and line.endswith(" 1.0")], (name, enabled)
    assert not [line for line in enabled if 'state="unavailable"' in line], enabled


def test_socket_is_reachable_by_postfix_only(root: DebianRoot, daemon: Daemon) -> None:
    sock = socket_path(root)
    owner = (root.uid("mailwarden"), root.gid("postfix"))
    assert (sock.stat().st_uid, sock.stat().st_gid, sock.stat().st_mode & 0o777) == (*owner, 0o770)
    folder = sock.parent.stat()
    assert (folder.st_uid, folder.st_gid, folder.st_mode & 0o7777) == (*owner, 0o2750)



def test_guide_keeps_the_other_milter_and_headers_inside(
        root: DebianRoot, guide: Guide, smtp_port: int, sink: SmtpSink) -> None:
    for name in ("smtpd_milters", "non_smtpd_milters"):
        value = root.run("postconf", "-h", name).stdout
        assert value.index("unix:/mailwarden/mailwarden.sock") < value.index("inet:127.0.0.1:")
    assert "overriding" not in root.run("postconf", "-n").stderr
    assert "nothing to change" in guide.one("mailwarden postfix-setup")  # idempotent
    guide.run("test-message", retry=("grep",))
    printed = guide.outputs[commands(blocks(GUIDE)["test-message"][1])[0]].splitlines()
    assert matches(outputs(GUIDE)["test-message"], printed), printed
    send(smtp_port, message("deb-out-1", "Quarterly figures attached."),
         to="carol@partner.test")
    send(smtp_port, message("deb-in-1", "Quarterly figures attached."))
    outbound = sink.wait_for("deb-out-1").decode(errors="replace")
    inside = delivered(root, "deb-in-1")
    assert "X-Bench-Scanned: yes" in outbound and "X-Bench-Scanned: yes" in inside
    assert header(inside, "X-Mailwarden-Verdict").startswith("accept; mode=observe")
    assert "x-mailwarden-" not in outbound.lower(), outbound


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


def held(root: DebianRoot, token: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in root.run("postqueue", "-j").stdout.splitlines():
            entry = json.loads(line)
            if entry["queue_name"] == "hold":
                head = root.run("postcat", "-h", "-q", entry["queue_id"], check=False).stdout
                if f"Subject: {token}\n" in head:
                    return str(entry["queue_id"])
        time.sleep(0.3)
    raise AssertionError(f"{token} not held: {root.run('postqueue', '-j').stdout}")


def test_enforce_hold_and_release_as_the_guide_says(root: DebianRoot, guide: Guide,
                                                    daemon: Daemon, smtp_port: int) -> None:
    guide.run("enforce")
    assert packaged_config(root)["milter"]["mode"] == "enforce"
    send(smtp_port, card_dump("deb-hold-1", count=2), sender="hold1@mailwarden.test")
    send(smtp_port, card_dump("deb-hold-2", count=2), sender="hold2@mailwarden.test")
    first, second = held(root, "deb-hold-1"), held(root, "deb-hold-2")
    for qid in (first, second):  # the log line names what each detector added
        lines = [line for line in daemon.log().splitlines() if f"qid={qid} " in line
                 and "contributions " in line]
        assert lines and "leak=" in lines[0] and "verdict=quarantine" in lines[0], lines
    for line in blocks(GUIDE)["review"]:
        target = second if " delete " in line else first
        guide.run_line(line.replace("QUEUE_ID", target))
    assert first in guide.outputs["mailwarden quarantine list"]
    assert "leak:" in guide.outputs[f"mailwarden quarantine show {first}"]
    released = delivered(root, "deb-hold-1")
    assert header(released, "X-Mailwarden-Verdict").startswith("quarantine; mode=enforce")
    queue = [json.loads(line) for line in root.run("postqueue", "-j").stdout.splitlines()]
    assert not [q for q in queue if q["queue_name"] == "hold"], queue
    records = {r["queue_id"]: r["record_state"] for r in map(json.loads, root.run(
        "mailwarden", "quarantine", "list", "--state", "all", "--json").stdout.splitlines())}
    assert records == {first: "released", second: "deleted"}, records
    metrics = daemon.metrics(packaged_config(root)["metrics"]["port"]).splitlines()
    gauge = [line for line in metrics if line.startswith("mailwarden_quarantine_held")]
    assert gauge and all(float(line.rsplit(" ", 1)[1]) == 0 for line in gauge), gauge
    guide.run("timer")


def test_enforce_refusal_names_its_contributions(root: DebianRoot, daemon: Daemon,
                                                 smtp_port: int) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(smtp_port, card_dump("deb-reject-1"), sender="hold3@mailwarden.test")
    assert refused.value.smtp_code == 550
    ref = refused.value.smtp_error.decode().split("(ref ", 1)[1].rstrip(")")
    rows = [json.loads(line) for line in
            root.file("/var/lib/mailwarden/audit.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["ref"] == ref)
    assert row["verdict"] == "reject" and row["contributions"]["leak"] > 0, row
    assert sum(row["contributions"].values()) == pytest.approx(row["score"], abs=0.01)
    logged = [line for line in daemon.log().splitlines() if f"ref={ref} " in line
              and "contributions " in line]
    assert logged and "verdict=reject" in logged[0] and "leak=" in logged[0], \
        daemon.log()[-2000:]


WEB_UNITS = ("mailwarden-web.service", "mailwarden-web-helper.socket",
             "mailwarden-web-helper.service")


def test_review_interface_installed_disabled_and_serving(root: DebianRoot) -> None:
    """The package ships the review interface's units without enabling them, and the installed
    `mailwarden web` serves its login form on loopback as the daemon's user."""
    for unit in WEB_UNITS:
        assert root.file(f"/lib/systemd/system/{unit}").is_file(), unit
    enabled = [p.name for p in root.file("/etc/systemd/system").rglob("mailwarden-web*")]
    assert enabled == []  # never enabled or started by the package
    root.run("mailwarden", "user", "add", "rita", "--role", "reviewer",
             input_data="a long enough passphrase\n")
    assert "rita" in root.run("mailwarden", "user", "list").stdout
    port = free_port()
    log = root.path.parent / "web.log"
    proc = subprocess.Popen(["chroot", str(root.path), "runuser", "-u", "mailwarden", "--",
                             "/usr/bin/mailwarden", "web", "--config", CONF, "--listen",
                             f"127.0.0.1:{port}"], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:
                    page, headers = r.read().decode(), r.headers
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        assert 'type="password"' in page and "csrf_token" in page
        assert "script-src 'self'" in headers["Content-Security-Policy"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_purge_leaves_nothing_behind(root: DebianRoot, daemon: Daemon, smtp_port: int) -> None:
    assert daemon.stop() == 0, daemon.log()
    assert "stopping" in daemon.log()
    root.run("postfix", "stop")
    root.apt("purge", "mailwarden")
    left = root.run("find", "/", "-xdev", "-name", "*mailwarden*", "-not", "-path", "/root/*.deb",
                    check=False).stdout.split()
    # Only the administrator's copy of the header table, made by `mailwarden postfix-setup`:
    # main.cf still names it, and smtp(8) would stop delivering without it.
    assert left == ["/etc/postfix/mailwarden_smtp_header_checks"]
    assert "mailwarden" not in root.file("/var/lib/dpkg/statoverride").read_text()
    assert not root.run("dpkg-query", "-W", "mailwarden", check=False).stdout.strip()
    # Kept on purge, as Debian policy recommends for system users: the user and group.
    assert root.run("getent", "passwd", "mailwarden").stdout
