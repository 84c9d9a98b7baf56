"""The per-install secret behind the keyed hashes of the audit log and the alert-mail signature.

Decision sinks that need a secret (:mod:`mailwarden.sinks.audit` hashes sender addresses with it,
:mod:`mailwarden.notify.sink` signs its own alert mail so the engine can recognise it) read one
random key file, by default ``<state_dir>/mailwarden.key``, created on first use with mode 0600.
Each use derives its own sub-key (:func:`derive`), so a key recovered from one purpose says nothing
about the other. Keep the file private: whoever holds it can link hashed senders and forge alert
tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path

KEY_BYTES = 32
MIN_KEY_BYTES = 16


def install_secret(path: Path) -> bytes:
    """The key stored at ``path``; created (0600, parent 0750) when it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secrets.token_hex(KEY_BYTES) + "\n")
    return _read(path)


def _read(path: Path, attempts: int = 20) -> bytes:
    for _ in range(attempts):  # another process may be writing it right now
        text = path.read_text(encoding="ascii", errors="replace").strip()
        if text:
            break
        time.sleep(0.05)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise OSError(f"{path}: not a hex-encoded key") from None
    if len(key) < MIN_KEY_BYTES:
        raise OSError(f"{path}: key shorter than {MIN_KEY_BYTES} bytes")
    return key


class InstallSecret:
    """The key file, read now if it exists (so an unreadable key fails at start), else created
    on first use: ``mailwarden check`` run as root must not leave a root-owned key behind."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._key = _read(path) if path.exists() else None
        self._derived: dict[str, bytes] = {}

    def derive(self, purpose: str) -> bytes:
        with self._lock:
            if purpose not in self._derived:
                if self._key is None:
                    self._key = install_secret(self.path)
                self._derived[purpose] = derive(self._key, purpose)
            return self._derived[purpose]


def derive(key: bytes, purpose: str) -> bytes:
    """A sub-key for one purpose (``"audit-sender"``, ``"alert-mail"``)."""
    return hmac.new(key, b"mailwarden/" + purpose.encode("ascii"), hashlib.sha256).digest()


def keyed_hash(key: bytes, value: str, hex_chars: int = 24) -> str:
    """A stable pseudonym of ``value`` (case-insensitive) under ``key``."""
    digest = hmac.new(key, value.strip().lower().encode("utf-8", "surrogateescape"),
                      hashlib.sha256)
    return digest.hexdigest()[:hex_chars]
