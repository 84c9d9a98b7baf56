"""A throwaway Postfix instance on loopback, for end-to-end benchmarks and tests.

Used by ``postfix_bench.py`` and ``tests/test_bench_postfix.py``: ``start()`` writes a
private ``config_directory`` (its own ``main.cf``/``master.cf``, no chroot), ``queue_directory``,
``data_directory`` and ``maillog_file`` under a temp dir, listens on ``127.0.0.1:PORT`` only,
relays nothing (mail from 127.0.0.0/8 is accepted and every transport is ``discard:``, so the MTA
path is measured without delivery), and sets ``smtpd_milters`` to the milter under test. It never
reads or changes the system's own Postfix (``/etc/postfix`` is only the default ``meta_directory``
for ``postfix-files``) and ``stop()`` (also on ``with`` exit) always stops this master and removes
the directory. Needs root, ``postfix`` and the ``postfix``/``postdrop`` accounts.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from milterprocs import free_port, postfix_spec

POSTFIX = "/usr/sbin/postfix"
_QUEUE_ID = re.compile(r"\]: ([0-9A-F]{6,}): client=")
_SERVICES = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def main_cf(root: Path, milter: str | None, extra: Mapping[str, str]) -> str:
    settings = {
        "compatibility_level": "3.6", "queue_directory": str(root / "queue"),
        "data_directory": str(root / "data"), "mail_owner": "postfix",
        "setgid_group": "postdrop", "myhostname": "bench.localdomain",
        "mydomain": "localdomain", "myorigin": "$myhostname", "mydestination": "",
        "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4", "mynetworks": "127.0.0.0/8",
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "default_transport": "discard:bench", "relay_transport": "discard:bench",
        "local_transport": "discard:bench", "alias_maps": "", "alias_database": "",
        "maillog_file": str(root / "maillog"), "maillog_file_prefixes": str(root),
        "syslog_name": "postfix-bench", "biff": "no", "milter_protocol": "6",
        "milter_default_action": "tempfail",
    }
    if milter:
        settings["smtpd_milters"] = postfix_spec(milter)
    settings.update(extra)
    return "".join(f"{key} = {value}\n" for key, value in settings.items())


def _postfix(config_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([POSTFIX, "-c", str(config_dir), *args], capture_output=True,
                          text=True, check=check, timeout=120)


@dataclass
class PostfixInstance:
    root: Path
    port: int
    milter_socket: str | None
    keep: bool = False

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def maillog(self) -> Path:
        return self.root / "maillog"

    def log_lines(self) -> list[str]:
        try:
            return self.maillog.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def queue_ids(self) -> list[str]:
        """Queue IDs of the messages smtpd accepted so far, in log order."""
        return [m.group(1) for line in self.log_lines() if (m := _QUEUE_ID.search(line))]

    def count(self, needle: str) -> int:
        """Log lines containing ``needle`` (e.g. ``status=sent``, ``milter-reject``)."""
        return sum(needle in line for line in self.log_lines())

    def wait_for(self, predicate: Callable[[PostfixInstance], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.1)
        return predicate(self)

    def master_pid(self) -> int | None:
        try:
            return int((self.root / "queue" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop this instance's master (abort if a clean stop fails) and remove its files."""
        pid = self.master_pid()
        if pid is not None and _alive(pid):
            if _postfix(self.config_dir, "stop", check=False).returncode != 0:
                _postfix(self.config_dir, "abort", check=False)
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostfixInstance:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _listening(instance: PostfixInstance) -> bool:
    if instance.count("daemon started") == 0:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", instance.port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start(milter_socket: str | None = None, extra_main_cf: Mapping[str, str] | None = None,
          port: int | None = None, root: Path | None = None, keep: bool = False,
          timeout: float = 30.0) -> PostfixInstance:
    """Write the config, start the master and wait until smtpd answers on the port."""
    root = Path(root or tempfile.mkdtemp(prefix="mw-bench-postfix-"))
    instance = PostfixInstance(root, port or free_port(), milter_socket, keep)
    try:
        root.chmod(0o755)
        for sub in ("etc", "queue", "data"):
            (root / sub).mkdir(exist_ok=True)
        shutil.chown(root / "data", "postfix")
        (root / "etc" / "main.cf").write_text(main_cf(root, milter_socket, extra_main_cf or {}))
        (root / "etc" / "master.cf").write_text(
            f"127.0.0.1:{instance.port} inet n - n - - smtpd\n{_SERVICES}")
        _postfix(instance.config_dir, "check")
        _postfix(instance.config_dir, "start")
        if not instance.wait_for(_listening, timeout):
            raise TimeoutError(f"postfix did not start in {root}")
    except BaseException:
        instance.stop()
        raise
    return instance
