"""Reviewer accounts and the interface's own state: one SQLite file, ``<state_dir>/web.sqlite``.

Tables: ``users`` (name, role, Argon2id hash), ``links`` (single-use notification links already
used), ``filters`` (saved list filters per user) and ``flags`` (seen / assigned per held message
reference). Passwords are hashed with argon2-cffi's Argon2id (OWASP parameters or stronger);
nothing here holds mail content. Used by ``mailwarden user`` and by the web application.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHash, VerificationError

FILENAME = "web.sqlite"
ROLES = ("reviewer", "approver", "admin")
# Each role may do what the roles before it may.
RANK = {role: i for i, role in enumerate(ROLES)}
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-@")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL,"
    " hash TEXT NOT NULL, created REAL NOT NULL, changed REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS links (nonce TEXT PRIMARY KEY, used REAL NOT NULL,"
    " actor TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS filters (id INTEGER PRIMARY KEY, owner TEXT NOT NULL,"
    " name TEXT NOT NULL, query TEXT NOT NULL, UNIQUE (owner, name))",
    "CREATE TABLE IF NOT EXISTS flags (ref TEXT PRIMARY KEY, seen_by TEXT NOT NULL,"
    " assigned TEXT NOT NULL, at REAL NOT NULL)",
)

# Argon2id, 64 MiB, 3 passes, 1 lane (above the OWASP minimum of 19 MiB / 2 / 1).
HASHER = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)
_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """Verified for unknown users too, so a login takes as long whether or not the name exists."""
    if not _DUMMY:
        _DUMMY.append(HASHER.hash("no such user"))
    return _DUMMY[0]


class AccountError(Exception):
    """A user-management request that cannot be done; the message is safe to print."""


def check_name(name: str) -> str:
    name = name.strip().lower()
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise AccountError(f"not a user name: {name!r} (letters, digits, . _ - @)")
    return name


class Accounts:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        with self._lock:
            for statement in SCHEMA:
                self._db.execute(statement)
        self.path.chmod(0o600)
        _match_owner(self.path)

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def add(self, name: str, role: str, password: str) -> None:
        name = check_name(name)
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        _check_password(password)
        now = time.time()
        try:
            self._run("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                      (name, role, HASHER.hash(password), now, now))
        except sqlite3.IntegrityError:
            raise AccountError(f"user {name} exists (use `mailwarden user passwd`)") from None

    def passwd(self, name: str, password: str) -> None:
        _check_password(password)
        with self._lock:
            cur = self._db.execute("UPDATE users SET hash = ?, changed = ? WHERE name = ?",
                                   (HASHER.hash(password), time.time(), check_name(name)))
        if not cur.rowcount:
            raise AccountError(f"no user {name}")

    def remove(self, name: str) -> None:
        with self._lock:
            cur = self._db.execute("DELETE FROM users WHERE name = ?", (check_name(name),))
        if not cur.rowcount:
            raise AccountError(f"no user {name}")

    def users(self) -> list[tuple[str, str, float]]:
        return [(str(n), str(r), float(c)) for n, r, c in
                self._run("SELECT name, role, created FROM users ORDER BY name")]

    def role(self, name: str) -> str | None:
        rows = self._run("SELECT role FROM users WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def changed(self, name: str) -> float | None:
        rows = self._run("SELECT changed FROM users WHERE name = ?", (name,))
        return float(rows[0][0]) if rows else None

    def verify(self, name: str, password: str) -> str | None:
        """The user's role when ``password`` is right, else None (constant work either way)."""
        rows = self._run("SELECT hash, role FROM users WHERE name = ?", (name.strip().lower(),))
        stored = str(rows[0][0]) if rows else _dummy_hash()
        try:
            HASHER.verify(stored, password)
        except (VerificationError, InvalidHash):
            return None
        return str(rows[0][1]) if rows else None

    def use_link(self, nonce: str, actor: str) -> bool:
        """Mark a link's nonce used; False when it was used before (links are single-use)."""
        try:
            self._run("INSERT INTO links VALUES (?, ?, ?)", (nonce, time.time(), actor))
        except sqlite3.IntegrityError:
            return False
        return True

    def link_used(self, nonce: str) -> bool:
        return bool(self._run("SELECT 1 FROM links WHERE nonce = ?", (nonce,)))

    def save_filter(self, owner: str, name: str, query: dict[str, str]) -> None:
        self._run("INSERT INTO filters (owner, name, query) VALUES (?, ?, ?) ON CONFLICT"
                  " (owner, name) DO UPDATE SET query = excluded.query",
                  (owner, name.strip()[:60] or "filter", json.dumps(query, sort_keys=True)))

    def filters(self, owner: str) -> list[tuple[str, dict[str, str]]]:
        return [(str(n), json.loads(q)) for n, q in self._run(
            "SELECT name, query FROM filters WHERE owner = ? ORDER BY name", (owner,))]

    def flag(self, ref: str, seen_by: str | None = None, assigned: str | None = None) -> None:
        old = self.flags([ref]).get(ref, ("", ""))
        self._run("INSERT OR REPLACE INTO flags VALUES (?, ?, ?, ?)",
                  (ref, seen_by if seen_by is not None else old[0],
                   assigned if assigned is not None else old[1], time.time()))

    def flags(self, refs: list[str] | None = None) -> dict[str, tuple[str, str]]:
        rows = self._run("SELECT ref, seen_by, assigned FROM flags")
        wanted = set(refs) if refs is not None else None
        return {str(r): (str(s), str(a)) for r, s, a in rows if wanted is None or r in wanted}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _check_password(password: str) -> None:
    if len(password) < 10:
        raise AccountError("password too short (at least 10 characters)")


def _match_owner(path: Path) -> None:
    """Created by root (``mailwarden user add``): give it the state directory's owner, so the
    unprivileged web process can use it."""
    if os.geteuid() != 0:
        return
    owner = path.parent.stat()
    for candidate in (path, Path(f"{path}-journal")):
        try:
            if candidate.stat().st_uid != owner.st_uid:
                os.chown(candidate, owner.st_uid, owner.st_gid)
        except FileNotFoundError:
            continue
