"""Sender holds, the shared part: which senders are held, since when, why, and the audit trail.

The ``sending`` detector keeps the hold flag in each sender's profile (see
:mod:`mailwarden.detectors.sending.hold`) and, when it engages a hold, records it here once per
episode; ``mailwarden senders list|show|clear|hold`` (:mod:`mailwarden.quarantine.senders`) reads
and changes it. Backends follow the state store: :class:`SqliteHolds` adds two tables to the same
SQLite file (``sender_hold``, ``sender_hold_events``), :class:`RedisHolds` a hash and a capped list
under the same prefix (so several milters of one organisation share holds), and :class:`MemoryHolds`
serves ``replay`` and tests. Senders are keyed by the store's hashed key and shown by a masked label
(``j***@example.org``), never the full address.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mailwarden.detectors.sending.state import StoreUnavailable

EVENTS_KEPT = 10_000
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sender_hold (key TEXT PRIMARY KEY, label TEXT NOT NULL,"
    " since REAL NOT NULL, reason TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sender_hold_events (at REAL NOT NULL, key TEXT NOT NULL,"
    " label TEXT NOT NULL, event TEXT NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sender_hold_events_key ON sender_hold_events(key, at)",
)


@dataclass(frozen=True, slots=True)
class HoldRecord:
    key: str
    label: str
    since: float
    reason: str


@dataclass(frozen=True, slots=True)
class HoldEvent:
    at: float
    key: str
    label: str
    event: str  # "engaged", "cleared", "held" (by a reviewer)
    actor: str  # "detector" or the reviewer
    detail: str


def mask_identity(identity: str) -> str:
    """``j***@example.org`` for ``jane@example.org``; ``j***`` for a bare login."""
    local, at, domain = identity.strip().lower().partition("@")
    return f"{local[:1]}***{at}{domain}"


class HoldRegistry(Protocol):
    kind: str

    def put(self, record: HoldRecord, actor: str) -> bool:
        """Record a hold; False (no new event) when the sender is already listed."""
        ...

    def remove(self, key: str, at: float, actor: str, detail: str = "") -> bool: ...

    def get(self, key: str) -> HoldRecord | None: ...

    def all(self) -> list[HoldRecord]: ...

    def events(self, key: str) -> list[HoldEvent]: ...

    def note(self, event: HoldEvent) -> None:
        """An audit row with no change of state (a reviewer decided to keep holding)."""
        ...

    def close(self) -> None: ...


class MemoryHolds:
    kind = "memory"

    def __init__(self) -> None:
        self._holds: dict[str, HoldRecord] = {}
        self._events: list[HoldEvent] = []
        self._lock = threading.Lock()

    def put(self, record: HoldRecord, actor: str) -> bool:
        with self._lock:
            if record.key in self._holds:
                return False
            self._holds[record.key] = record
            event = "engaged" if actor == "detector" else "held"
            self._events.append(HoldEvent(record.since, record.key, record.label, event, actor,
                                          record.reason))
            return True

    def remove(self, key: str, at: float, actor: str, detail: str = "") -> bool:
        with self._lock:
            record = self._holds.pop(key, None)
            if record is None:
                return False
            self._events.append(HoldEvent(at, key, record.label, "cleared", actor, detail))
            return True

    def get(self, key: str) -> HoldRecord | None:
        with self._lock:
            return self._holds.get(key)

    def all(self) -> list[HoldRecord]:
        with self._lock:
            return sorted(self._holds.values(), key=lambda r: r.since)

    def events(self, key: str) -> list[HoldEvent]:
        with self._lock:
            return [e for e in self._events if e.key == key]

    def note(self, event: HoldEvent) -> None:
        with self._lock:
            self._events.append(event)

    def close(self) -> None:
        return None


class SqliteHolds:
    """Hold tables in the sending state file; one short connection per call (holds are rare)."""

    kind = "sqlite"

    def __init__(self, path: Path, busy_timeout_ms: int = 5000) -> None:
        self.path, self._busy = Path(path), busy_timeout_ms
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self._busy / 1000.0)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy)}")
        return conn

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            conn = self._connect()
            try:
                with conn:
                    return list(conn.execute(sql, args).fetchall())
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    def put(self, record: HoldRecord, actor: str) -> bool:
        try:
            conn = self._connect()
            try:
                with conn:
                    cur = conn.execute("INSERT OR IGNORE INTO sender_hold VALUES (?, ?, ?, ?)",
                                       (record.key, record.label, record.since, record.reason))
                    if cur.rowcount != 1:
                        return False
                    event = "engaged" if actor == "detector" else "held"
                    conn.execute("INSERT INTO sender_hold_events VALUES (?, ?, ?, ?, ?, ?)",
                                 (record.since, record.key, record.label, event, actor,
                                  record.reason))
                    return True
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    def remove(self, key: str, at: float, actor: str, detail: str = "") -> bool:
        record = self.get(key)
        if record is None:
            return False
        self._run("DELETE FROM sender_hold WHERE key = ?", (key,))
        self._run("INSERT INTO sender_hold_events VALUES (?, ?, ?, 'cleared', ?, ?)",
                  (at, key, record.label, actor, detail))
        return True

    def get(self, key: str) -> HoldRecord | None:
        rows = self._run("SELECT key, label, since, reason FROM sender_hold WHERE key = ?", (key,))
        return HoldRecord(*rows[0]) if rows else None

    def all(self) -> list[HoldRecord]:
        rows = self._run("SELECT key, label, since, reason FROM sender_hold ORDER BY since")
        return [HoldRecord(*row) for row in rows]

    def events(self, key: str) -> list[HoldEvent]:
        rows = self._run("SELECT at, key, label, event, actor, detail FROM sender_hold_events"
                         " WHERE key = ? ORDER BY at", (key,))
        return [HoldEvent(*row) for row in rows]

    def note(self, event: HoldEvent) -> None:
        self._run("INSERT INTO sender_hold_events VALUES (?, ?, ?, ?, ?, ?)",
                  (event.at, event.key, event.label, event.event, event.actor, event.detail))

    def close(self) -> None:
        return None


class RedisHolds:
    """A hash ``<prefix>holds`` (key -> JSON record) and a capped list ``<prefix>holdlog``."""

    kind = "redis"

    def __init__(self, url: str, prefix: str, timeout_seconds: float = 0.5,
                 client: Any = None) -> None:
        try:
            import redis
        except ImportError as exc:
            raise StoreUnavailable("redis-py is not installed (python3-redis)") from exc
        self._client = client or redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._holds, self._log = f"{prefix}holds", f"{prefix}holdlog"

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._client, name)(*args)
        except self._errors as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def _event(self, event: HoldEvent) -> None:
        self._call("lpush", self._log, json.dumps(_as_dict(event)))
        self._call("ltrim", self._log, 0, EVENTS_KEPT - 1)

    def put(self, record: HoldRecord, actor: str) -> bool:
        if not self._call("hsetnx", self._holds, record.key, json.dumps(_as_dict(record))):
            return False
        event = "engaged" if actor == "detector" else "held"
        self._event(HoldEvent(record.since, record.key, record.label, event, actor,
                              record.reason))
        return True

    def remove(self, key: str, at: float, actor: str, detail: str = "") -> bool:
        record = self.get(key)
        if record is None or not self._call("hdel", self._holds, key):
            return False
        self._event(HoldEvent(at, key, record.label, "cleared", actor, detail))
        return True

    def get(self, key: str) -> HoldRecord | None:
        raw = self._call("hget", self._holds, key)
        return None if raw is None else HoldRecord(**json.loads(raw))

    def all(self) -> list[HoldRecord]:
        raw = self._call("hgetall", self._holds) or {}
        return sorted((HoldRecord(**json.loads(v)) for v in raw.values()), key=lambda r: r.since)

    def events(self, key: str) -> list[HoldEvent]:
        rows = [HoldEvent(**json.loads(v)) for v in self._call("lrange", self._log, 0, -1)]
        return sorted((e for e in rows if e.key == key), key=lambda e: e.at)

    def note(self, event: HoldEvent) -> None:
        self._event(event)

    def close(self) -> None:
        try:
            self._client.close()
        except self._errors:
            return


def _as_dict(item: HoldRecord | HoldEvent) -> dict[str, Any]:
    return {name: getattr(item, name) for name in item.__slots__}
