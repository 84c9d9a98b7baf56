"""Per-sender state stores behind one interface, used by the ``sending`` anomaly detector.

The detector keeps a compact profile per sender (recent send times, recipients and domains seen,
decayed histograms). A store holds those profiles as opaque byte blobs keyed by a hashed sender
identity (never the address itself) and updates one key atomically: :meth:`StateStore.transact`
reads the blob as it was before the message, lets the caller compute the new blob, and writes it
back in one transaction. It also keeps the set of senders whose last score was anomalous, with
the time, for the "senders currently anomalous" gauge. Backends: :class:`MemoryStore` (``replay``:
fresh state per run), :class:`NullStore` (``score``: stateless), the embedded SQLite file
(:mod:`mailwarden.detectors.sending.state_sqlite`) and Redis for several milter instances
(:mod:`mailwarden.detectors.sending.state_redis`). A backend that cannot be reached raises
:class:`StoreUnavailable`; the caller decides how to degrade.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The backend cannot be reached or answered with an error; the message is safe to log."""


@dataclass(frozen=True, slots=True)
class Update:
    """What a transaction writes back: the new blob and, when anomalous, the time it was flagged.

    ``flagged_at`` is ``None`` when the sender's latest message was not anomalous (it then leaves
    the anomalous set); ``at`` is the message time, used for expiry and pruning.
    """

    blob: bytes
    at: float
    flagged_at: float | None = None


# A transaction body: old blob (None for an unknown sender) -> (what to write, what to return).
TransactFn = Callable[[bytes | None], tuple[Update, T]]


class StateStore(Protocol):
    """Atomic per-key read-modify-write of small blobs, plus the anomalous-sender set."""

    kind: str

    def transact(self, key: str, fn: TransactFn[T]) -> T: ...

    def get(self, key: str) -> bytes | None: ...

    def anomalous_count(self, since: float) -> int:
        """Distinct keys whose last message was flagged at or after ``since``."""
        ...

    def health(self) -> bool: ...

    def close(self) -> None: ...


def sender_key(identity: str) -> str:
    """A stable pseudonymous key for a sender identity (the address never reaches the store)."""
    digest = hashlib.blake2b(identity.strip().lower().encode("utf-8"), digest_size=12)
    return digest.hexdigest()


class MemoryStore:
    """In-process store for ``replay`` and tests: a dict guarded by one lock."""

    kind = "memory"

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._flagged: dict[str, float] = {}
        self._lock = threading.Lock()

    def transact(self, key: str, fn: TransactFn[T]) -> T:
        with self._lock:
            update, result = fn(self._data.get(key))
            self._data[key] = update.blob
            if update.flagged_at is None:
                self._flagged.pop(key, None)
            else:
                self._flagged[key] = update.flagged_at
            return result

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def anomalous_count(self, since: float) -> int:
        with self._lock:
            return sum(1 for at in self._flagged.values() if at >= since)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def health(self) -> bool:
        return True

    def close(self) -> None:
        return None


class NullStore:
    """Stateless store for ``score``: every sender is new, nothing is kept between messages."""

    kind = "none"

    def transact(self, key: str, fn: TransactFn[T]) -> T:
        _update, result = fn(None)
        return result

    def get(self, key: str) -> bytes | None:
        return None

    def anomalous_count(self, since: float) -> int:
        return 0

    def health(self) -> bool:
        return True

    def close(self) -> None:
        return None
