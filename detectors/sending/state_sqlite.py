"""Embedded SQLite backend of the per-sender state store (one milter instance per host).

One file (default ``<state_dir>/sending.sqlite``) in WAL mode with a ``busy_timeout``, shared by
every thread and by every worker process of a pre-forked daemon; each thread gets its own
connection. A read-modify-write of one sender is optimistic, like a Redis WATCH: read the blob and
its version, compute the new blob with no lock held, then write it with one statement that only
succeeds if the version is unchanged (else read and compute again; after a few conflicts the
update runs inside ``BEGIN IMMEDIATE``). The database write lock is thus held for one statement,
never while Python code runs, so concurrent messages of the same sender never lose an update and
other processes are not kept waiting. Inside one process, updates of one sender also take a
striped lock, so a burst from one sender makes threads wait their turn instead of retrying. Each
row carries the time its sender was last flagged as anomalous (NULL when the latest message was
not). Size stays bounded: rows not updated for
``retention_seconds`` (measured in message time, so replays age correctly) and, beyond
``max_senders``, the least recently updated rows are pruned every ``prune_every`` transactions,
and freed pages go back to the file system (incremental vacuum). Files written by the earlier
layout (a separate ``flagged`` table, no version column) are upgraded in place on open.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from pathlib import Path
from typing import TypeVar

from mailwarden.detectors.sending.state import StoreUnavailable, TransactFn, Update
from mailwarden.sqlite import retry_locked

T = TypeVar("T")
OPTIMISTIC_TRIES = 4
LOCK_STRIPES = 64

_TABLE = ("CREATE TABLE IF NOT EXISTS sender_state ("
          " key TEXT PRIMARY KEY, blob BLOB NOT NULL, updated REAL NOT NULL,"
          " version INTEGER NOT NULL DEFAULT 0, flagged REAL)")
_ADDED_COLUMNS = (("version", "INTEGER NOT NULL DEFAULT 0"), ("flagged", "REAL"))
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS sender_state_updated ON sender_state(updated)",
    "CREATE INDEX IF NOT EXISTS sender_state_flagged ON sender_state(flagged)"
    " WHERE flagged IS NOT NULL",
)
_SELECT = "SELECT blob, version FROM sender_state WHERE key = ?"
_INSERT = ("INSERT INTO sender_state(key, blob, updated, version, flagged) VALUES (?, ?, ?, 1, ?)"
           " ON CONFLICT(key) DO NOTHING")
_UPDATE = ("UPDATE sender_state SET blob = ?, updated = ?, flagged = ?, version = version + 1"
           " WHERE key = ? AND version = ?")
_UPSERT = ("INSERT INTO sender_state(key, blob, updated, version, flagged) VALUES (?, ?, ?, 1, ?)"
           " ON CONFLICT(key) DO UPDATE SET blob = excluded.blob, updated = excluded.updated,"
           " flagged = excluded.flagged, version = sender_state.version + 1")


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
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._since_prune = 0
        self._newest = 0.0
        self._all: list[sqlite3.Connection] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            retry_locked(lambda: self._init_schema(conn), self._busy_ms / 1000.0)
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
        conn.execute("BEGIN IMMEDIATE")  # workers of one daemon open the file at the same time
        try:
            conn.execute(_TABLE)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(sender_state)")}
            for name, definition in _ADDED_COLUMNS:
                if name not in columns:
                    conn.execute(f"ALTER TABLE sender_state ADD COLUMN {name} {definition}")
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                            " AND name = 'flagged'").fetchone():
                conn.execute("UPDATE sender_state SET flagged = (SELECT at FROM flagged"
                             " WHERE flagged.key = sender_state.key)")
                conn.execute("DROP TABLE flagged")
            for statement in _INDEXES:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def transact(self, key: str, fn: TransactFn[T]) -> T:
        conn = self._conn()
        stripe = self._stripes[zlib.crc32(key.encode()) % LOCK_STRIPES]
        try:
            with stripe:
                update, result = self._optimistic(conn, key, fn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        with self._count_lock:
            self._newest = max(self._newest, update.at)
        self._maybe_prune()
        return result

    def _optimistic(self, conn: sqlite3.Connection, key: str,
                    fn: TransactFn[T]) -> tuple[Update, T]:
        for _ in range(OPTIMISTIC_TRIES):
            row = conn.execute(_SELECT, (key,)).fetchone()
            update, result = fn(bytes(row[0]) if row else None)
            if self._write(conn, key, None if row is None else int(row[1]), update):
                return update, result
        return self._locked(conn, key, fn)  # a burst from one sender in several processes

    @staticmethod
    def _write(conn: sqlite3.Connection, key: str, version: int | None, update: Update) -> bool:
        """One statement, atomic: True if the row was still at ``version`` (None: absent)."""
        if version is None:
            cursor = conn.execute(_INSERT, (key, update.blob, update.at, update.flagged_at))
        else:
            cursor = conn.execute(_UPDATE, (update.blob, update.at, update.flagged_at, key,
                                            version))
        return cursor.rowcount == 1

    @staticmethod
    def _locked(conn: sqlite3.Connection, key: str, fn: TransactFn[T]) -> tuple[Update, T]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(_SELECT, (key,)).fetchone()
            update, result = fn(bytes(row[0]) if row else None)
            conn.execute(_UPSERT, (key, update.blob, update.at, update.flagged_at))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return update, result

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
            row = self._conn().execute(
                "SELECT COUNT(*) FROM sender_state WHERE flagged >= ?", (since,))
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
