"""The privileged helper of the review interface, as a real process on a real unix socket.

``mailwarden web-helper`` is started the way systemd starts it (socket activation, through
``systemd-socket-activate``); requests come from root and, through ``runuser``, from an
unprivileged user that ``[web] helper_users`` does not name (refused by SO_PEERCRED). Only the
fixed verbs are answered.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import write_config
from postfix_instance import public_tmpdir

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemd-socket-activate"),
                                reason="needs root and systemd-socket-activate")

CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\\n")
print(s.makefile().readline())
"""


@pytest.fixture
def helper() -> Iterator[Path]:
    root = public_tmpdir("mw-helper-")
    sock = root / "helper.sock"
    config = write_config(root, extra="[web]\nhelper_users = []\n")
    proc = subprocess.Popen(["systemd-socket-activate", "-l", str(sock), sys.executable, "-m",
                             "mailwarden", "web-helper", "--config", str(config), "--socket",
                             str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    sock.chmod(0o666)  # so the unprivileged client reaches the peer check at all
    yield sock
    proc.terminate()
    proc.wait(timeout=20)
    shutil.rmtree(root, ignore_errors=True)


def ask(sock: Path, request: object, user: str | None = None) -> dict[str, object]:
    cmd = [sys.executable, "-c", CLIENT, str(sock), json.dumps(request)]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return dict(json.loads(out.stdout))


def test_root_gets_answers_fixed_verbs_only(helper: Path) -> None:
    answer = ask(helper, {"verb": "entries", "args": {"state": "held"}})
    assert answer == {"ok": True, "result": []}  # no record; the MTA's queue is unreachable
    assert ask(helper, {"verb": "shell", "args": {"cmd": "id"}}) == {
        "ok": False, "error": "unknown verb 'shell'"}
    refused = ask(helper, {"verb": "release", "args": {"key": "MW-0", "who": "t", "note": "n"}})
    assert refused["ok"] is False and "no mailwarden quarantine record" in str(refused["error"])


def test_malformed_request_is_refused(helper: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(helper))
        s.sendall(b"not json\n")
        assert json.loads(s.makefile().readline()) == {"ok": False,
                                                        "error": "malformed request"}


def test_peer_not_in_helper_users_is_refused(helper: Path) -> None:
    answer = ask(helper, {"verb": "entries", "args": {}}, user="nobody")
    assert answer == {"ok": False, "error": "not permitted"}
