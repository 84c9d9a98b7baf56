"""Values of the quarantine store and their SQLite layout (see :mod:`mailwarden.quarantine.store`).

A :class:`HeldRecord` says why one message was held, without content or addresses (keyed hashes
from :func:`address_hash` stand for them); an :class:`AllowEntry` is one reviewer allow-list
entry; a :class:`Review` is a reviewer's decision as the store applies it. The table definitions
live here too, next to the values they hold; docs/quarantine.md documents them for consumers
such as ``mailwarden train``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = "1"
ANY_SENDER = "*"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS held (id INTEGER PRIMARY KEY, queue_id TEXT NOT NULL,"
    " ref TEXT NOT NULL UNIQUE, created REAL NOT NULL, verdict TEXT NOT NULL, mode TEXT NOT NULL,"
    " score REAL NOT NULL, scores TEXT NOT NULL, findings TEXT NOT NULL, reasons TEXT NOT NULL,"
    " models TEXT NOT NULL, direction TEXT NOT NULL, sender_domain TEXT NOT NULL,"
    " sender_hash TEXT NOT NULL, recipient_hashes TEXT NOT NULL,"
    " recipient_domains TEXT NOT NULL, size INTEGER NOT NULL, state TEXT NOT NULL,"
    " state_at REAL, state_by TEXT NOT NULL, note TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS held_queue_id ON held(queue_id)",
    "CREATE INDEX IF NOT EXISTS held_state ON held(state, created)",
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at REAL NOT NULL,"
    " held_id INTEGER, queue_id TEXT NOT NULL, ref TEXT NOT NULL, action TEXT NOT NULL,"
    " actor TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT NOT NULL, label TEXT NOT NULL,"
    " value INTEGER NOT NULL, PRIMARY KEY (name, label))",
    "CREATE TABLE IF NOT EXISTS allow (id INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
    " sender_hash TEXT NOT NULL, target TEXT NOT NULL, created REAL NOT NULL, expires REAL,"
    " ref TEXT NOT NULL, actor TEXT NOT NULL, note TEXT NOT NULL,"
    " UNIQUE (kind, sender_hash, target))",
    "CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY, created REAL NOT NULL,"
    " label TEXT NOT NULL, ref TEXT NOT NULL, held_at REAL NOT NULL, verdict TEXT NOT NULL,"
    " score REAL NOT NULL, scores TEXT NOT NULL, findings TEXT NOT NULL, models TEXT NOT NULL,"
    " direction TEXT NOT NULL, sender_domain TEXT NOT NULL, sender_hash TEXT NOT NULL,"
    " recipient_domains TEXT NOT NULL, recipient_count INTEGER NOT NULL,"
    " size INTEGER NOT NULL, actor TEXT NOT NULL)",
)
JSON_FIELDS = ("scores", "findings", "reasons", "models", "recipient_hashes",
                "recipient_domains")


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """Why one message was held (no content, no addresses) and what became of it."""

    queue_id: str
    ref: str
    created: float
    verdict: str
    mode: str
    score: float
    scores: dict[str, float]
    findings: tuple[dict[str, Any], ...]  # Finding.as_dict(): evidence is masked
    reasons: tuple[str, ...]
    models: dict[str, str]
    direction: str
    sender_domain: str
    sender_hash: str
    recipient_hashes: tuple[str, ...]
    recipient_domains: tuple[str, ...]
    size: int
    state: str = "held"  # held | released | deleted | expired | released_externally | gone
    state_at: float | None = None
    state_by: str = ""
    note: str = ""
    id: int = 0

    @property
    def detectors(self) -> tuple[str, ...]:
        return tuple(sorted({str(f.get("detector", "")) for f in self.findings}))

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted({str(f.get("type", "")) for f in self.findings}))


@dataclass(frozen=True, slots=True)
class AllowEntry:
    id: int
    kind: str  # "pair": sender -> recipient hash; "domain": sender -> recipient domain
    sender_hash: str  # ANY_SENDER for every sender
    target: str
    created: float
    expires: float | None
    ref: str
    actor: str
    note: str


@dataclass(frozen=True, slots=True)
class Review:
    """A reviewer's decision on one record, applied in one transaction."""

    state: str  # released | deleted | expired | released_externally | gone
    actor: str
    detail: str = ""
    feedback: str | None = None  # "false_positive" | "confirmed_leak"
    allow: str | None = None  # "pair" | "domain"
    any_sender: bool = False
    counters: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (name, label)


HELD_COLUMNS = tuple(f.name for f in fields(HeldRecord) if f.name != "id")
# Column names come from the dataclass, values are bound parameters.
INSERT_HELD = (f"INSERT INTO held ({', '.join(HELD_COLUMNS)}) "  # noqa: S608
               f"VALUES ({', '.join('?' for _ in HELD_COLUMNS)})")


def address_hash(salt: bytes, address: str) -> str:
    """The keyed hash that stands for an address in the store (case-insensitive)."""
    addr = address.strip().strip("<>").lower()
    return hashlib.blake2b(addr.encode("utf-8"), key=salt, digest_size=12).hexdigest()


def to_row(record: HeldRecord) -> dict[str, Any]:
    row = asdict(record)
    for key in JSON_FIELDS:
        row[key] = json.dumps(row[key])
    return row


def from_row(row: sqlite3.Row) -> HeldRecord:
    values = dict(zip(row.keys(), tuple(row), strict=True))
    for key in JSON_FIELDS:
        values[key] = json.loads(values[key])
    for key in ("findings", "reasons", "recipient_hashes", "recipient_domains"):
        values[key] = tuple(values[key])
    known = {f.name for f in fields(HeldRecord)}
    return HeldRecord(**{k: v for k, v in values.items() if k in known})
