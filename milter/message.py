"""The message snapshot every detector reads.

The milter adapter (or the CLI's file readers) builds one :class:`Message` per mail: the envelope
(queue ID, sender, recipients, SASL login, client address, direction, time) and the raw bytes of
headers and body, at most ``max_scan_bytes`` of them. Parsing is lazy, done once with the tolerant
``compat32`` policy (real mail breaks ``email.policy.default``), and shared by all detectors
through :meth:`Message.memo`, so text extraction runs once per message whatever reads it.
"""

from __future__ import annotations

import email.header
import email.message
import email.parser
import email.policy
import email.utils
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from mailwarden.verdict import Direction

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Envelope:
    queue_id: str
    mail_from: str
    recipients: tuple[str, ...]
    direction: Direction = Direction.OUTBOUND
    auth_user: str | None = None
    client_addr: str | None = None
    received_at: float = 0.0

    @property
    def sender_identity(self) -> str:
        """The identity sending-pattern state keys on: the SASL login, else the envelope sender."""
        return (self.auth_user or self.mail_from or "").strip().lower()


@dataclass(eq=False)
class Message:
    """One message as scanned: envelope plus raw bytes (possibly a truncated prefix)."""

    envelope: Envelope
    raw: bytes
    size: int
    truncated: bool = False
    source: str = "milter"
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)
    # Re-entrant: computing one artefact may ask for another (extract() inside a detector's memo).
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @cached_property
    def parsed(self) -> email.message.Message:
        parser = email.parser.BytesParser(policy=email.policy.compat32)
        return parser.parsebytes(self.raw)

    def header(self, name: str) -> str | None:
        """A header as text (RFC 2047 decoded where possible), or None."""
        value = self.parsed.get(name)
        if value is None:
            return None
        return decode_header_text(value)

    @property
    def message_id(self) -> str | None:
        mid = self.header("Message-ID")
        return mid.strip() if mid else None

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Compute a derived artefact (extracted text, features) once per message."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = compute()
            value: T = self._memo[key]
            return value


def decode_header_text(value: object) -> str:
    """Decode a header value (str, email.header.Header or bytes) to text without raising."""
    try:
        raw = str(value)
        parts = email.header.decode_header(raw)
        out = []
        for chunk, charset in parts:
            if isinstance(chunk, bytes):
                out.append(_decode_bytes(chunk, charset))
            else:
                out.append(chunk)
        return "".join(out)
    except Exception:  # noqa: BLE001 - malformed headers are common; never fail on one
        return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _decode_bytes(chunk: bytes, charset: str | None) -> str:
    try:
        return chunk.decode(charset or "ascii")
    except (LookupError, UnicodeDecodeError):
        return chunk.decode("utf-8", "replace")


def addresses(value: str | None) -> list[str]:
    """Bare addresses from an address header value."""
    if not value:
        return []
    return [addr for _, addr in email.utils.getaddresses([value]) if "@" in addr]


def domain_of(address: str) -> str:
    addr = address.strip().strip("<>").lower()
    return addr.rpartition("@")[2] if "@" in addr else ""

