"""``mailwarden web-helper``: the small privileged process the unprivileged web interface asks.

It listens on a unix socket (mode 0660) and answers one JSON request per connection with a
fixed set of verbs (:data:`mailwarden.web.backend.VERBS`: list held mail, show headers, reveal a
body, release, delete, list held queue IDs), each carried out by
:class:`mailwarden.web.backend.Direct`, i.e. the CLI's review code with its identity check
against the hold queue. The peer's user is checked with ``SO_PEERCRED`` against
``[web] helper_users`` (root always may) and every request is logged with who asked.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
import socketserver
import struct
from pathlib import Path
from typing import Any

from mailwarden.web.backend import MAX_REQUEST, VERBS, BackendError, Direct

log = logging.getLogger("mailwarden.web.helper")


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def allowed_uids(users: tuple[str, ...]) -> set[int]:
    uids = {0}
    for name in users:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            log.warning("helper: [web] helper_users names an unknown user %r", name)
    return uids


class _Handler(socketserver.StreamRequestHandler):
    server: HelperServer

    def handle(self) -> None:
        uid = peer_uid(self.request)
        line = self.rfile.readline(MAX_REQUEST)
        reply = self.server.answer(uid, line)
        self.wfile.write(json.dumps(reply).encode() + b"\n")


class HelperServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, backend: Direct, uids: set[int], mode: int = 0o660):
        self.backend = backend
        self.uids = uids
        inherited = systemd_socket()
        self.activated = inherited is not None
        if inherited is not None:  # socket activation: systemd made the socket (owner, mode)
            super().__init__(str(path), _Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = inherited
            return
        if path.is_socket():
            path.unlink()
        super().__init__(str(path), _Handler)
        path.chmod(mode)

    def answer(self, uid: int, line: bytes) -> dict[str, Any]:
        if uid not in self.uids:
            log.warning("helper: refused peer uid=%d (not in helper_users)", uid)
            return {"ok": False, "error": "not permitted"}
        try:
            request = json.loads(line)
            verb, args = str(request["verb"]), dict(request.get("args", {}))
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "malformed request"}
        if verb not in VERBS:
            return {"ok": False, "error": f"unknown verb {verb!r}"}
        key = args.get("key", "-")
        who = args.get("who", "-")
        try:
            result = self.backend.call(verb, **args)
        except BackendError as exc:
            log.info("qid=%s helper: %s for %s (peer uid=%d) refused: %s", key, verb, who,
                     uid, exc)
            return {"ok": False, "error": str(exc)}
        if verb in ("reveal", "release", "delete"):
            log.info("qid=%s helper: %s done for %s (peer uid=%d)", key, verb, who, uid)
        return {"ok": True, "result": result}


def systemd_socket() -> socket.socket | None:
    """The listening socket systemd passed (LISTEN_FDS, fd 3), if this process was activated."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    return socket.socket(fileno=3)


def serve(path: Path, backend: Direct, users: tuple[str, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    server = HelperServer(path, backend, allowed_uids(users))
    # The web process's group may connect (mode 0660); systemd sets that itself when activated.
    if os.geteuid() == 0 and users and not server.activated:
        try:
            os.chown(path, 0, pwd.getpwnam(users[0]).pw_gid)
        except KeyError:
            log.warning("helper: no user %r: socket %s stays root-only", users[0], path)
    log.info("helper: listening on %s (verbs: %s)", path, ", ".join(VERBS))
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if not server.activated:
            path.unlink(missing_ok=True)
