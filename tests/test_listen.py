"""The listening socket opened through libmilter: identified, TCP without Nagle's algorithm.

Run in a subprocess: ``adapter.listen`` registers libmilter's process-wide callbacks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os, socket, sys
from mailwarden.mta import adapter
from mailwarden.verdict import Action
fd = adapter.listen("t", sys.argv[1], Action.ACCEPT)
listener = socket.socket(fileno=os.dup(fd))
words = [listener.family.name, str(listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))]
if listener.family != socket.AF_UNIX:
    client = socket.create_connection(listener.getsockname()[:2])
    accepted, _ = listener.accept()  # what libmilter's accept() gets, done here by hand
    words.append(str(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
print(" ".join(words))
"""


def listen(spec: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, spec], capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.split()


def test_inet_listener_is_found_and_connections_get_tcp_nodelay() -> None:
    assert listen("inet:0@127.0.0.1") == ["AF_INET", "1", "1"]


def test_unix_listener_is_found(tmp_path: Path) -> None:
    assert listen(f"unix:{tmp_path / 'm.sock'}") == ["AF_UNIX", "1"]
