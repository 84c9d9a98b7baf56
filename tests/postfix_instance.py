"""A throwaway Postfix instance on loopback for end-to-end tests (and the benchmark).

It runs Debian's real Postfix binaries with a private config directory, queue and log under a
temporary directory: smtpd on 127.0.0.1:PORT, ``smtpd_milters``/``non_smtpd_milters`` pointing at
the milter under test, ``milter_default_action = accept``, and local delivery of every
``@sink.test`` recipient into one Maildir, so a test can see what was delivered, what sits in the
hold queue and what was refused. Needs root (Postfix's master runs as root and drops privileges).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SERVICES = """\
{listen} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
smtp unix - - n - - smtp
relay unix - - n - - smtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.mailwarden.test
mydomain = mailwarden.test
myorigin = $mydomain
mydestination = sink.test, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# No DNS in tests: a reverse lookup of 127.0.0.1 in a root without /etc/hosts waits 5 s.
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps = hash:{root}/etc/aliases
alias_database = hash:{root}/etc/aliases
local_recipient_maps =
luser_relay = sink@localhost
default_transport = discard
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
biff = no
smtputf8_enable = no
milter_default_action = accept
milter_protocol = 6
milter_connect_timeout = 5s
milter_command_timeout = 10s
milter_content_timeout = 30s
milter_mail_macros = i {{auth_type}} {{auth_authen}} {{auth_author}} {{mail_addr}}
"""


def public_tmpdir(prefix: str) -> Path:
    """A temporary directory that Postfix's unprivileged users can traverse (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0,
                   what: str = "") -> None:
    """Wait until ``proc`` accepts connections on 127.0.0.1:``port``; fail if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            assert proc.poll() is None, f"exited {proc.returncode}: {what}"
            assert time.monotonic() < deadline, f"not listening on {port}: {what}"
            time.sleep(0.1)


class PostfixInstance:
    def __init__(self, milter: str | None, extra_main_cf: str = ""):
        self.root = public_tmpdir("mw-postfix-")
        self.port = free_port()
        self.etc = self.root / "etc"
        self.maildir = self.root / "Maildir"
        self._milter = milter
        self._extra = extra_main_cf

    def start(self) -> PostfixInstance:
        self.etc.mkdir(parents=True)
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True)
        for path in [self.maildir, *self.maildir.iterdir()]:
            path.chmod(0o777)  # local(8) delivers to files as default_privs (nobody)
        main = MAIN_CF.format(root=self.root)
        if self._milter:
            main += f"smtpd_milters = {self._milter}\nnon_smtpd_milters = {self._milter}\n"
        (self.etc / "main.cf").write_text(main + self._extra)
        (self.etc / "master.cf").write_text(SERVICES.format(listen=f"127.0.0.1:{self.port}"))
        (self.etc / "aliases").write_text(f"sink: {self.maildir}/\npostmaster: sink\n")
        (self.root / "queue").mkdir()
        (self.root / "data").mkdir()
        shutil.chown(self.root / "data", "postfix")
        self._postfix("postalias", str(self.etc / "aliases"))
        self._postfix("postfix", "check")  # creates the queue's subdirectories, owned right
        self._postfix("postfix", "start")
        self._wait_listening()
        return self

    def _postfix(self, command: str, *args: str) -> str:
        out = subprocess.run([command, "-c", str(self.etc), *args], capture_output=True,
                             text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{command} {' '.join(args)} failed: {out.stderr}{out.stdout}")
        return out.stdout

    def _wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(512).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"postfix did not listen on {self.port}: {self.log()[-2000:]}")

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.etc), "stop"], capture_output=True, timeout=60,
                       check=False)
        pid_file = self.root / "queue" / "pid" / "master.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # master.pid stays behind: wait for the process
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def flush(self) -> None:
        self._postfix("postqueue", "-f")

    def queue(self) -> list[dict[str, object]]:
        """``postqueue -j``: one record per queued message (queue_name active/deferred/hold...)."""
        text = self._postfix("postqueue", "-j")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def held(self) -> list[dict[str, object]]:
        return [q for q in self.queue() if q.get("queue_name") == "hold"]

    def held_with_subject(self, subject: str, timeout: float = 20.0) -> str | None:
        """Queue ID of the held message with this subject (read with postcat, as root), or
        None when none is held within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.held():
                qid = str(entry["queue_id"])
                head = subprocess.run(["postcat", "-c", str(self.etc), "-q", "-h", qid],
                                      capture_output=True, text=True, check=False).stdout
                if f"Subject: {subject}\n" in head:
                    return qid
            time.sleep(0.1)
        return None

    def delivered(self) -> list[bytes]:
        files = sorted((self.maildir / "new").iterdir())
        return [f.read_bytes() for f in files]

    def wait_delivered(self, count: int, timeout: float = 30.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mails = self.delivered()
            if len(mails) >= count:
                return mails
            time.sleep(0.1)
        raise AssertionError(f"{len(self.delivered())} of {count} messages delivered; queue: "
                             f"{self.queue()}; log tail: {self.log()[-3000:]}")

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def postsuper(self, *args: str) -> str:
        return self._postfix("postsuper", *args)

    def sendmail(self, data: bytes, sender: str, *recipients: str) -> None:
        """Local submission through sendmail(1) (goes through non_smtpd_milters)."""
        env = {**os.environ, "MAIL_CONFIG": str(self.etc)}
        subprocess.run(["sendmail", "-f", sender, "--", *recipients], input=data, env=env,
                       check=True, timeout=30)
