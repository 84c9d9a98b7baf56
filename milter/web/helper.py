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
        if path.is_socket():
            path.unlink()
        self.backend = backend
        self.uids = uids
        super().__init__(str(path), _Handler)
        os.chmod(path, mode)

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


def serve(path: Path, backend: Direct, users: tuple[str, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    server = HelperServer(path, backend, allowed_uids(users))
    log.info("helper: listening on %s (verbs: %s)", path, ", ".join(VERBS))
    try:
        server.serve_forever()
    finally:
        server.server_close()
        path.unlink(missing_ok=True)
