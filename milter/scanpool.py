"""The scanner threads behind the per-message time budget, robust to detectors that hang.

Python cannot kill a thread, so a scan cut off by the budget keeps running until its detector
returns. A shared pool would let such stalled scans hold every worker and make the messages after
them wait past their budget. :class:`ScanPool` therefore runs each scan on a thread of its own
(libmilter already gives each connection one; the extra thread is what lets the budget cut it off),
counts the scans still running, and past ``max_running`` (live plus abandoned ones) refuses new
work at once, so mail is passed by the failure policy immediately instead of after a full budget.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class PoolExhausted(Exception):
    """Too many scans (mostly cut-off ones) are still running: fail this message at once."""


class ScanPool:
    def __init__(self, workers: int, max_stuck_factor: int = 4):
        self._max_running = workers * max_stuck_factor
        self._lock = threading.Lock()
        self._running = 0
        self._abandoned = 0
        self._closed = False

    @property
    def stuck(self) -> int:
        """Scans cut off by the budget that have not returned yet."""
        with self._lock:
            return self._abandoned

    def run(self, func: Callable[[], T], timeout: float) -> T:
        """``func()`` on its own thread: ``TimeoutError`` past ``timeout``; ``PoolExhausted``."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        state = {"abandoned": False}
        with self._lock:
            if self._closed or self._running >= self._max_running:
                raise PoolExhausted(f"{self._running} scans still running ({self._abandoned} "
                                    "cut off by the budget)")
            self._running += 1
        thread = threading.Thread(target=self._work, args=(func, future, state), name="scan",
                                  daemon=True)
        thread.start()
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            with self._lock:
                if not future.done():
                    state["abandoned"] = True
                    self._abandoned += 1
            raise

    def _work(self, func: Callable[[], T], future: concurrent.futures.Future[T],
              state: dict[str, bool]) -> None:
        try:
            future.set_result(func())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            future.set_exception(exc)
        finally:
            with self._lock:
                self._running -= 1
                if state["abandoned"]:
                    self._abandoned -= 1

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
