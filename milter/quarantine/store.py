"""The quarantine store: why each message was held, what reviewers decided, and what they taught.

One SQLite file, ``<state_dir>/quarantine.sqlite`` in WAL mode, shared by the daemon (the
``quarantine`` sink writes a :class:`HeldRecord` per held message; the ``allowlist`` detector
reads the allow list) and by ``mailwarden quarantine`` (review, expiry). It never holds message
content or addresses: senders and recipients are keyed hashes (the key is a random salt made
with the file), only domains are kept in clear. Tables (documented in docs/quarantine.md):
``held`` (one row per held message), ``events`` (audit trail), ``counters`` (for metrics),
``allow`` (reviewer allow list) and ``feedback`` (features and scores of reviewed messages,
labelled ``false_positive`` or ``confirmed_leak``, for ``mailwarden train``).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from mailwarden.quarantine.records import (
    ANY_SENDER,
    HELD_COLUMNS,
    INSERT_HELD,
    SCHEMA,
    SCHEMA_VERSION,
    AllowEntry,
    HeldRecord,
    Review,
    address_hash,
    from_row,
    to_row,
)
from mailwarden.sqlite import retry_locked

FILENAME = "quarantine.sqlite"


class StoreError(Exception):
    """The store cannot be opened or written; the message is safe to print."""


class QuarantineStore:
    def __init__(self, path: Path, *, create: bool = True, busy_timeout_ms: int = 5000):
        self.path = Path(path)
        self._create = create
        self._busy_ms = busy_timeout_ms
        # One connection, one operation at a time: the daemon's writers are libmilter's
        # per-connection threads (a connection per thread would leak with them) and writes
        # serialise in SQLite anyway.
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            if create:  # every pre-fork worker may open a fresh file at the same moment
                retry_locked(lambda: self._init_schema(conn), self._busy_ms / 1000.0)
            self.salt = bytes.fromhex(self._meta(conn, "salt") or "")
            _match_owner(self.path)
        except (sqlite3.Error, OSError, ValueError) as exc:
            self.close()
            raise StoreError(f"cannot open the quarantine store {self.path}: {exc}"
                             f"{_hint(exc)}") from None
        if not self.salt:
            raise StoreError(f"quarantine store {self.path} has no salt (not initialised)")

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            mode = "rwc" if self._create else "rw"
            conn = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True,
                                   timeout=self._busy_ms / 1000.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.row_factory = sqlite3.Row
            self._db = conn
        return self._db

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn().execute(sql, params).fetchall()

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        with self._tx(conn):
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('salt', ?)",
                         (secrets.token_hex(16),))

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    @contextmanager
    def _tx(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = conn or self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def hash(self, address: str) -> str:
        return address_hash(self.salt, address)

    def add(self, record: HeldRecord) -> int:
        row = to_row(record)
        with self._tx() as conn:
            cur = conn.execute(INSERT_HELD, tuple(row[name] for name in HELD_COLUMNS))
            return int(cur.lastrowid or 0)

    def find(self, key: str) -> HeldRecord | None:
        """A record by reference (MW-...) or queue ID (the newest one with that ID)."""
        if key.upper().startswith("MW-"):
            sql = "SELECT * FROM held WHERE ref = ?"
            key = key.upper()
        else:
            sql = "SELECT * FROM held WHERE queue_id = ? ORDER BY created DESC, id DESC LIMIT 1"
        rows = self._rows(sql, (key,))
        return from_row(rows[0]) if rows else None

    def records(self, state: str | None = "held") -> list[HeldRecord]:
        if state is None:
            rows = self._rows("SELECT * FROM held ORDER BY created, id")
        else:
            rows = self._rows("SELECT * FROM held WHERE state = ? ORDER BY created, id",
                              (state,))
        return [from_row(row) for row in rows]

    def review(self, record: HeldRecord, review: Review) -> HeldRecord:
        """Mark ``record`` reviewed; add the event, feedback row and allow entries it asks for."""
        now = time.time()
        with self._tx() as conn:
            conn.execute("UPDATE held SET state = ?, state_at = ?, state_by = ?, note = ?"
                         " WHERE id = ?", (review.state, now, review.actor, review.detail,
                                           record.id))
            conn.execute("INSERT INTO events (at, held_id, queue_id, ref, action, actor, detail)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", (now, record.id, record.queue_id,
                                                          record.ref, review.state,
                                                          review.actor, review.detail))
            for name, label in review.counters:
                _bump(conn, name, label)
            if review.feedback:
                _add_feedback(conn, record, review.feedback, review.actor, now)
            if review.allow:
                _add_allow(conn, record, review, now)
        return replace(record, state=review.state, state_at=now, state_by=review.actor,
                       note=review.detail)

    def allow_entries(self, now: float | None = None) -> list[AllowEntry]:
        now = time.time() if now is None else now
        rows = self._rows(
            "SELECT id, kind, sender_hash, target, created, expires, ref, actor, note FROM allow"
            " WHERE expires IS NULL OR expires > ? ORDER BY id", (now,))
        return [AllowEntry(*tuple(row)) for row in rows]

    def remove_allow(self, entry_id: int, actor: str) -> bool:
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM allow WHERE id = ?", (entry_id,))
            if cur.rowcount:
                conn.execute("INSERT INTO events (at, held_id, queue_id, ref, action, actor,"
                             " detail) VALUES (?, NULL, '', '', 'allow_removed', ?, ?)",
                             (time.time(), actor, f"allow entry #{entry_id}"))
            return bool(cur.rowcount)

    def feedback_rows(self) -> list[dict[str, Any]]:
        out = []
        for row in self._rows("SELECT * FROM feedback ORDER BY id"):
            item = dict(zip(row.keys(), tuple(row), strict=True))
            for key in ("scores", "findings", "models", "recipient_domains"):
                item[key] = json.loads(item[key])
            out.append(item)
        return out

    def counters(self) -> dict[tuple[str, str], int]:
        rows = self._rows("SELECT name, label, value FROM counters")
        return {(str(n), str(lab)): int(v) for n, lab, v in rows}

    def held_count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM held WHERE state = 'held'")[0][0])

    def prune(self, before: float) -> int:
        """Forget reviewed records and audit events older than ``before`` (feedback stays)."""
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM held WHERE state != 'held' AND created < ?",
                               (before,))
            conn.execute("DELETE FROM events WHERE at < ?", (before,))
            return int(cur.rowcount)

    def close(self) -> None:
        with self._lock:
            conn, self._db = self._db, None
            if conn is not None:
                with suppress(sqlite3.Error):
                    conn.close()


def _bump(conn: sqlite3.Connection, name: str, label: str) -> None:
    conn.execute("INSERT INTO counters VALUES (?, ?, 1) ON CONFLICT (name, label)"
                 " DO UPDATE SET value = value + 1", (name, label))


def _add_feedback(conn: sqlite3.Connection, record: HeldRecord, label: str, actor: str,
                  now: float) -> None:
    # Features and scores only: no evidence, no location (it can be a file name).
    findings = [{k: f[k] for k in ("detector", "type", "score", "count", "confidence", "details")
                 if k in f} for f in record.findings]
    conn.execute(
        "INSERT INTO feedback (created, label, ref, held_at, verdict, score, scores, findings,"
        " models, direction, sender_domain, sender_hash, recipient_domains, recipient_count,"
        " size, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now, label, record.ref, record.created, record.verdict, record.score,
         json.dumps(record.scores), json.dumps(findings), json.dumps(record.models),
         record.direction, record.sender_domain, record.sender_hash,
         json.dumps(record.recipient_domains), len(record.recipient_hashes), record.size, actor))


def _add_allow(conn: sqlite3.Connection, record: HeldRecord, review: Review, now: float) -> None:
    sender = ANY_SENDER if review.any_sender else record.sender_hash
    targets = record.recipient_hashes if review.allow == "pair" else record.recipient_domains
    for target in sorted(set(targets)):
        conn.execute(
            "INSERT OR IGNORE INTO allow (kind, sender_hash, target, created, expires, ref, actor,"
            " note) VALUES (?, ?, ?, ?, NULL, ?, ?, ?)",
            (review.allow, sender, target, now, record.ref, review.actor, review.detail))


def _match_owner(path: Path) -> None:
    """Root (the review CLI) must not leave files the daemon's user cannot write: give the
    database, WAL and shared-memory files the owner of the state directory."""
    if os.geteuid() != 0:
        return
    owner = path.parent.stat()
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            st = candidate.stat()
            if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                os.chown(candidate, owner.st_uid, owner.st_gid)
        except FileNotFoundError:
            continue


def _hint(exc: Exception) -> str:
    text = str(exc).lower()
    if isinstance(exc, PermissionError) or "readonly" in text or "unable to open" in text:
        return " (not permitted: run as root or as the daemon's user)"
    return ""
