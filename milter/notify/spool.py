"""The notifier's spool between pre-fork workers: one sender, whatever worker saw the message.

In pre-fork mode every worker scores mail, but the digest rules (one mail per recipient per
``digest_seconds``, ``max_mails_per_hour`` in all, the same message never listed twice) are
rules about what the admins receive, so they must hold for the daemon, not for each worker.
Worker 0 is therefore the only one that sends: its :class:`~mailwarden.notify.sink.NotifySink` owns
the one :class:`~mailwarden.notify.queue.DigestQueue` and a :class:`SpoolRelay` thread that
moves what the other workers wrote here into that queue about once a second (a third of
``batch_seconds`` when that is shorter, so a batch includes what other workers saw). The other
workers' sinks only :meth:`NotifySpool.put` an event (one small row in
``<state_dir>/notify-spool.sqlite``, written only for held or refused messages, never for
accepted ones). Rows outlive a worker that dies or reloads, so the restarted worker 0 sends
them; at most ``max_pending`` rows wait (beyond that an event is dropped and counted, as in the
queue). Events carry no content, only what
:func:`~mailwarden.notify.alertmail.event_from` keeps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from mailwarden.notify.alertmail import AlertEvent, FindingLine
from mailwarden.sqlite import retry_locked

log = logging.getLogger("mailwarden.notify.sink")

SPOOL_FILE = "notify-spool.sqlite"
POLL_SECONDS = 1.0  # at most; a third of batch_seconds when that is shorter
MIN_POLL_SECONDS = 0.05
TAKE_LIMIT = 500

_TABLE = ("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL,"
          " kind TEXT NOT NULL, event TEXT NOT NULL)")

Spooled = tuple[str, str, AlertEvent]


class NotifySpool:
    """Events handed from the workers to the sending worker, in arrival order."""

    def __init__(self, path: Path, max_rows: int, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout_ms / 1000.0,
                                     isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        retry_locked(self._setup, busy_timeout_ms / 1000.0)  # every worker opens it at once

    def _setup(self) -> None:
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(_TABLE)

    def put(self, recipient: str, kind: str, event: AlertEvent) -> bool:
        """Spool one event; False (nothing written) when ``max_rows`` are already waiting."""
        row = (recipient, kind, encode_event(event), self._max_rows)
        with self._lock:
            if self._closed:
                return False
            cursor = self._conn.execute(
                "INSERT INTO spool(recipient, kind, event) SELECT ?, ?, ?"
                " WHERE (SELECT COUNT(*) FROM spool) < ?", row)
        return cursor.rowcount == 1

    def take(self, limit: int = TAKE_LIMIT) -> list[Spooled]:
        """Remove and return up to ``limit`` of the oldest events (an undecodable row is
        logged and discarded rather than blocking the spool)."""
        with self._lock:
            if self._closed:
                return []
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                rows = self._conn.execute(
                    "SELECT id, recipient, kind, event FROM spool ORDER BY id LIMIT ?",
                    (limit,)).fetchall()
                if rows:
                    self._conn.execute("DELETE FROM spool WHERE id <= ?", (rows[-1][0],))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        out: list[Spooled] = []
        for row_id, recipient, kind, text in rows:
            try:
                out.append((recipient, kind, decode_event(text)))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("notify spool: row %d unreadable, discarded: %s", row_id, exc)
        return out

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()


class SpoolRelay:
    """A thread of the sending worker: every ``poll_seconds``, spooled events go to ``add``."""

    def __init__(self, spool: NotifySpool, add: Callable[[str, str, AlertEvent], None],
                 poll_seconds: float = POLL_SECONDS) -> None:
        self._spool, self._add, self._poll = spool, add, poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-spool", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            self.drain()

    def drain(self) -> int:
        """Move what is spooled now; returns how many events were moved."""
        moved = 0
        try:
            while batch := self._spool.take():
                for recipient, kind, event in batch:
                    self._add(recipient, kind, event)
                moved += len(batch)
        except sqlite3.Error as exc:  # a busy or broken file: the rows stay for the next round
            log.warning("notify spool: %s", exc)
        return moved

    def close(self, timeout: float = 5.0) -> None:
        """Stop polling, then move what is left (the queue's close sends it)."""
        self._stop.set()
        self._thread.join(timeout)
        self.drain()


def encode_event(event: AlertEvent) -> str:
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(AlertEvent)}
    fields["findings"] = [[f.type, f.count, f.confidence, list(f.evidence)]
                          for f in event.findings]
    return json.dumps(fields, separators=(",", ":"))


def decode_event(text: str) -> AlertEvent:
    data = json.loads(text)
    findings = tuple(FindingLine(str(t), int(n), str(c), tuple(str(e) for e in ev))
                     for t, n, c, ev in data.pop("findings"))
    data["recipient_domains"] = tuple(data["recipient_domains"])
    return AlertEvent(findings=findings, **data)
