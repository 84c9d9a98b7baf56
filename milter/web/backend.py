"""What the web interface may do with held mail, in-process or through the privileged helper.

:class:`Direct` opens the quarantine store and the MTA and calls the same
:mod:`mailwarden.quarantine.review` functions as ``mailwarden quarantine``; every result is a
JSON-ready dict so :class:`HelperClient` can carry the very same calls over the helper's unix
socket (:mod:`mailwarden.web.helper`). Actions are serialised by one lock and re-checked against
the MTA's hold queue, so a release can never happen twice. Reveals are written to the store's
audit trail (``events``) like every decision.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from mailwarden.quarantine import review
from mailwarden.quarantine.format import show_json
from mailwarden.quarantine.mta import HOLD, MailQueue, MtaError
from mailwarden.quarantine.sink import QuarantineSettings
from mailwarden.quarantine.store import QuarantineStore, StoreError

VERBS = ("entries", "show", "reveal", "release", "delete", "queue_ids")
MAX_REQUEST = 64 * 1024


class BackendError(Exception):
    """A refused or failed request; the message is safe to show to the reviewer."""


class Backend(Protocol):
    def call(self, verb: str, **args: Any) -> Any: ...


def entry_view(entry: review.Entry, settings: QuarantineSettings, now: float) -> dict[str, Any]:
    """One held message as the interface shows it (no body; masked evidence only)."""
    out = show_json(entry, None, False, now)
    out.setdefault("sender", f"@{entry.sender_domain}")
    out.setdefault("recipients", [])
    record = entry.record
    out["recipient_domains"] = list(record.recipient_domains) if record else sorted(
        {r.rpartition("@")[2].lower() for r in out["recipients"]})
    expiry = settings.expire_after_days * 86400.0
    out["expires_at"] = entry.held_at + expiry if expiry > 0 else None
    out.setdefault("ref", "")
    out.setdefault("findings", [])
    out.setdefault("mode", "")
    return out


class Direct:
    """Acts itself: needs the MTA's privilege (root, or the helper)."""

    def __init__(self, settings: QuarantineSettings, queue: MailQueue):
        self.settings = settings
        self.queue = queue
        self._lock = threading.Lock()

    def _store(self) -> QuarantineStore:
        return QuarantineStore(self.settings.database)

    def call(self, verb: str, **args: Any) -> Any:
        if verb not in VERBS:
            raise BackendError(f"unknown verb {verb!r}")
        try:
            with self._lock:
                return getattr(self, f"_{verb}")(**args)
        except (review.ReviewError, MtaError, StoreError) as exc:
            raise BackendError(str(exc)) from None
        except TypeError as exc:
            raise BackendError(f"bad arguments for {verb}: {exc}") from None

    def _entries(self, state: str | None = "held") -> list[dict[str, Any]]:
        store, now = self._store(), time.time()
        try:
            try:
                items = review.entries(store, self.queue, state)
            except MtaError:
                items = review.entries(store, None, state)
            return [entry_view(e, self.settings, now) for e in items]
        finally:
            store.close()

    def _show(self, key: str) -> dict[str, Any]:
        store = self._store()
        try:
            record = review.resolve(store, key)
        finally:
            store.close()
        queued = self.queue.messages().get(record.queue_id)
        entry = review.Entry(record, queued)
        out = entry_view(entry, self.settings, time.time())
        if queued is not None and queued.queue == HOLD and record.state == "held":
            head = self.queue.headers(record.queue_id).replace(b"\r\n", b"\n")
            out["headers"] = head.partition(b"\n\n")[0].decode("utf-8", "replace")
        return out

    def _reveal(self, key: str, who: str, reason: str) -> str:
        if not reason.strip():
            raise BackendError("a reason is required to reveal a message")
        store = self._store()
        try:
            record = review.resolve(store, key)
            queued = review.verify(self.queue, record)
            audit(store.path, record.id, record.queue_id, record.ref, "revealed", who, reason)
        finally:
            store.close()
        content = self.queue.content(queued.queue_id).replace(b"\r\n", b"\n")
        return content.partition(b"\n\n")[2].decode("utf-8", "replace")

    def _release(self, key: str, who: str, note: str, false_positive: bool = False,
                 allow: str | None = None, any_sender: bool = False,
                 allow_days: float = 0.0) -> dict[str, Any]:
        store = self._store()
        try:
            done = review.release(store, self.queue, key, who, false_positive, allow,
                                  any_sender, note)
            if allow and allow_days > 0:
                expire_allow(store.path, done.ref, time.time() + allow_days * 86400.0)
        finally:
            store.close()
        return {"queue_id": done.queue_id, "ref": done.ref, "state": done.state}

    def _delete(self, key: str, who: str, note: str,
                confirmed: bool = False) -> dict[str, Any]:
        store = self._store()
        try:
            done = review.delete(store, self.queue, key, who, confirmed, note)
        finally:
            store.close()
        return {"queue_id": done.queue_id, "ref": done.ref, "state": done.state}

    def _queue_ids(self) -> list[str]:
        return sorted(q.queue_id for q in self.queue.messages().values() if q.queue == HOLD)


def audit(path: Path, held_id: int, queue_id: str, ref: str, action: str, actor: str,
          detail: str) -> None:
    """One row in the store's audit trail (the ``events`` table, docs/quarantine.md)."""
    with _connect(path) as conn:
        conn.execute("INSERT INTO events (at, held_id, queue_id, ref, action, actor, detail)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (time.time(), held_id, queue_id, ref, action, actor, detail[:500]))


def expire_allow(path: Path, ref: str, expires: float) -> None:
    """Give the allow entries a release just added (from ``ref``) their expiry."""
    with _connect(path) as conn:
        conn.execute("UPDATE allow SET expires = ? WHERE ref = ? AND expires IS NULL",
                     (expires, ref))


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class HelperClient:
    """The same calls, answered by ``mailwarden web-helper`` over its unix socket."""

    def __init__(self, path: str, timeout: float = 150.0):
        self.path = path
        self.timeout = timeout

    def call(self, verb: str, **args: Any) -> Any:
        request = json.dumps({"verb": verb, "args": args}).encode() + b"\n"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(request)
                answer = _read_line(sock)
        except OSError as exc:
            raise BackendError(f"the review helper at {self.path} is not answering: {exc}") \
                from None
        try:
            reply = json.loads(answer)
        except ValueError:
            raise BackendError("the review helper gave a malformed answer") from None
        if not reply.get("ok"):
            raise BackendError(str(reply.get("error", "refused")))
        return reply.get("result")


def _read_line(sock: socket.socket, limit: int = 64 * 1024 * 1024) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > limit:
            break
    return b"".join(chunks)
