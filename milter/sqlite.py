"""SQLite helpers shared by every embedded file of mailwarden.

The sending state store, the quarantine records and the notifier's spool each keep one SQLite
file in WAL mode that every worker of a pre-forked daemon opens; the setup of such a file needs
the same retry, defined once here.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def retry_locked(setup: Callable[[], T], seconds: float) -> T:
    """Run ``setup`` again while the file is locked, for up to ``seconds``. Needed when the
    workers of one daemon open a file at the same moment: switching it to WAL mode takes an
    exclusive lock and SQLite reports "database is locked" at once, without its busy handler."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return setup()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
