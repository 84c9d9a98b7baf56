"""Embedded SQLite backend of the per-sender state store (one milter instance per host).

One file (default ``<state_dir>/sending.sqlite``) in WAL mode with a ``busy_timeout``; each thread
of the milter gets its own connection, and a read-modify-write of one sender runs inside
``BEGIN IMMEDIATE`` so concurrent messages of the same sender serialise. Size stays bounded: rows
not updated for ``retention_seconds`` (measured in message time, so replays age correctly) and,
beyond ``max_senders``, the least recently updated rows are pruned every ``prune_every``
transactions, and freed pages go back to the file system (incremental vacuum).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TypeVar

from mailwarden.store import StoreUnavailable, TransactFn

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sender_state ("
    " key TEXT PRIMARY KEY, blob BLOB NOT NULL, updated REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sender_state_updated ON sender_state(updated)",
    "CREATE TABLE IF NOT EXISTS flagged (key TEXT PRIMARY KEY, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS flagged_at ON flagged(at)",
)


class SqliteStore:
    kind = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        retention_seconds: float = 90 * 86400.0,
        max_senders: int = 200_000,
        busy_timeout_ms: int = 5000,
        prune_every: int = 1000,
    ) -> None:
        self.path = Path(path)
        self._retention = retention_seconds
        self._max_senders = max_senders
        self._busy_ms = busy_timeout_ms
        self._prune_every = prune_every
        self._local = threading.local()
        self._count_lock = threading.Lock()
        self._since_prune = 0
        self._newest = 0.0
        self._all: list[sqlite3.Connection] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._init_schema(self._conn())
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                str(self.path), timeout=self._busy_ms / 1000.0, isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._count_lock:
                self._all.append(conn)
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # effective on a new file only
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in _SCHEMA:
            conn.execute(statement)

    def transact(self, key: str, fn: TransactFn[T]) -> T:
        try:
            result = self._transact(self._conn(), key, fn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        self._maybe_prune()
        return result

    def _transact(self, conn: sqlite3.Connection, key: str, fn: TransactFn[T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT blob FROM sender_state WHERE key = ?", (key,)).fetchone()
            update, result = fn(bytes(row[0]) if row else None)
            conn.execute(
                "INSERT INTO sender_state(key, blob, updated) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET blob = excluded.blob, updated = excluded.updated",
                (key, update.blob, update.at),
            )
            if update.flagged_at is None:
                conn.execute("DELETE FROM flagged WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO flagged(key, at) VALUES (?, ?)",
                             (key, update.flagged_at))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        with self._count_lock:
            self._newest = max(self._newest, update.at)
        return result

    def get(self, key: str) -> bytes | None:
        try:
            row = self._conn().execute(
                "SELECT blob FROM sender_state WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        return bytes(row[0]) if row else None

    def anomalous_count(self, since: float) -> int:
        try:
            row = self._conn().execute("SELECT COUNT(*) FROM flagged WHERE at >= ?", (since,))
            return int(row.fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM sender_state").fetchone()[0])

    def _maybe_prune(self) -> None:
        with self._count_lock:
            self._since_prune += 1
            if self._since_prune < self._prune_every:
                return
            self._since_prune = 0
        try:
            self.prune()
        except sqlite3.Error:  # pruning is housekeeping: a busy database retries next round
            return

    def prune(self, now: float | None = None) -> int:
        """Drop expired and surplus senders; returns the number of rows removed."""
        conn = self._conn()
        cutoff = (self._newest if now is None else now) - self._retention
        removed = conn.execute("DELETE FROM sender_state WHERE updated < ?", (cutoff,)).rowcount
        conn.execute("DELETE FROM flagged WHERE at < ?", (cutoff,))
        surplus = len(self) - self._max_senders
        if surplus > 0:
            removed += conn.execute(
                "DELETE FROM sender_state WHERE key IN "
                "(SELECT key FROM sender_state ORDER BY updated LIMIT ?)",
                (surplus,),
            ).rowcount
        if removed:
            conn.execute("PRAGMA incremental_vacuum")
        return int(removed)

    def health(self) -> bool:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        with self._count_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                continue
        self._local = threading.local()
