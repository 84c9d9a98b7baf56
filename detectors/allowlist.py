"""The ``allowlist`` detector: reviewers' false-positive decisions, honoured by the policy.

When a reviewer releases a held message as a false positive with ``--allow pair|domain``
(``mailwarden quarantine release``), the quarantine store gets allow entries: this sender to
these recipients (pair) or to their domains (domain; optionally for any sender). This detector
reads them from the same SQLite file (``<state_dir>/quarantine.sqlite``), keeps an immutable
snapshot refreshed every ``cache_seconds`` (one thread refreshes, the others keep reading the
current snapshot), and emits a finding of type ``allowlisted`` (``ALLOW_TYPE``) when *every*
recipient of the message is covered, which makes the policy accept it. A message to one
allowed and one other recipient is scored as usual. No store yet means no allow list.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailwarden.detectors.base import BaseDetector, DetectorContext, register
from mailwarden.message import Message, domain_of
from mailwarden.options import Options
from mailwarden.quarantine.records import ANY_SENDER, address_hash
from mailwarden.quarantine.store import FILENAME, QuarantineStore, StoreError
from mailwarden.verdict import ALLOW_TYPE, Confidence, DetectorResult, Finding

NAME = "allowlist"
log = logging.getLogger("mailwarden.detectors.allowlist")


@dataclass(frozen=True, slots=True)
class Snapshot:
    salt: bytes = b""
    # (kind, sender hash or "*", target) -> entry id
    entries: dict[tuple[str, str, str], int] = field(default_factory=dict)
    loaded: float = 0.0
    error: str | None = None

    def covering(self, sender: str, recipient: str) -> int | None:
        """The entry that allows ``sender`` to mail ``recipient``, if any."""
        s_hash = address_hash(self.salt, sender)
        r_hash = address_hash(self.salt, recipient)
        domain = domain_of(recipient)
        for key in (("pair", s_hash, r_hash), ("pair", ANY_SENDER, r_hash),
                    ("domain", s_hash, domain), ("domain", ANY_SENDER, domain)):
            if key in self.entries:
                return self.entries[key]
        return None


def load_snapshot(path: Path, now: float) -> Snapshot:
    if not path.exists():
        return Snapshot(loaded=now)
    store = QuarantineStore(path, create=False, busy_timeout_ms=500)
    try:
        entries = {(e.kind, e.sender_hash, e.target): e.id for e in store.allow_entries(now)}
        return Snapshot(store.salt, entries, now)
    finally:
        store.close()


class AllowlistDetector(BaseDetector):
    name = NAME

    def __init__(self, path: Path, cache_seconds: float):
        self._path = path
        self._ttl = cache_seconds
        self._lock = threading.Lock()
        self._snapshot = Snapshot()

    def snapshot(self) -> Snapshot:
        now = time.time()
        current = self._snapshot
        if now - current.loaded < self._ttl:
            return current
        # While another thread refreshes, use the current snapshot; before the first load
        # there is none, so wait for it.
        if not self._lock.acquire(blocking=not current.loaded):
            return current
        try:
            if self._snapshot is not current and self._snapshot.loaded:
                return self._snapshot  # loaded by the thread we waited for
            self._snapshot = load_snapshot(self._path, now)
        except StoreError as exc:
            log.warning("allow list unavailable, keeping the previous one: %s", exc)
            self._snapshot = Snapshot(current.salt, current.entries, now, str(exc))
        finally:
            self._lock.release()
        return self._snapshot

    def analyse(self, message: Message) -> DetectorResult:
        snap = self.snapshot()
        env = message.envelope
        error = "allow list unavailable" if snap.error else None
        if not snap.entries or not env.mail_from or not env.recipients:
            return DetectorResult(NAME, error=error)
        used = [snap.covering(env.mail_from, r) for r in env.recipients]
        if any(entry is None for entry in used):
            return DetectorResult(NAME, error=error)
        ids = ",".join(f"#{i}" for i in sorted({i for i in used if i is not None}))
        finding = Finding(detector=NAME, type=ALLOW_TYPE, score=0.0, count=1,
                          location="envelope", evidence=f"reviewed allow-list entry {ids}",
                          confidence=Confidence.HIGH)
        return DetectorResult(NAME, findings=(finding,), error=error)

    def describe(self) -> dict[str, str]:
        return {"model": "none", "store": str(self._path), "cache_seconds": f"{self._ttl:g}"}


@register(NAME, summary="reviewer allow list: sender/recipient pairs and domains released as "
          "false positives")
def build(options: Options, context: DetectorContext) -> AllowlistDetector:
    cache = options.get_number("cache_seconds", 10.0, minimum=0.0)
    options.finish()
    return AllowlistDetector(Path(context.state_dir) / FILENAME, cache)
