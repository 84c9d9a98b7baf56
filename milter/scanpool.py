"""The scanner threads behind the per-message time budget, robust to detectors that hang.

Python cannot kill a thread, so a scan cut off by the budget keeps its worker until the detector
returns. In a plain pool, ``workers`` stalled scans would hold every thread and make the messages
after them wait past their budget. :class:`ScanPool` keeps ``workers`` long-lived threads (their
per-thread resources, such as SQLite connections, live as long as they do) and, for every scan it
abandons, starts a replacement worker; a worker whose abandoned scan finally returns retires if
the pool is above strength. Past ``max_stuck`` abandoned scans it refuses new work at once, so
mail is passed by the failure policy immediately instead of after another full budget.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class PoolExhausted(Exception):
    """Too many scans cut off by the budget are still running: fail this message at once."""


@dataclass(eq=False)
class _Job:
    func: Callable[[], Any]
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)
    started: bool = False
    abandoned: bool = False


class ScanPool:
    def __init__(self, workers: int, max_stuck_factor: int = 4):
        self._workers = workers
        self._max_stuck = workers * max_stuck_factor
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = 0  # started lazily, as work arrives, up to workers + stuck
        self._idle = 0
        self._queued = 0  # jobs put but not yet taken: each will use up one idle worker
        self._stuck = 0
        self._closed = False

    @property
    def stuck(self) -> int:
        """Scans cut off by the budget that have not returned yet."""
        with self._lock:
            return self._stuck

    def _spawn(self) -> None:
        self._threads += 1
        threading.Thread(target=self._work, name="scan", daemon=True).start()

    def run(self, func: Callable[[], Any], timeout: float) -> Any:
        """``func()`` on a worker: ``TimeoutError`` past ``timeout``; ``PoolExhausted``."""
        job = _Job(func)
        with self._lock:
            if self._closed or self._stuck >= self._max_stuck:
                raise PoolExhausted(f"{self._stuck} scans cut off by the budget still running")
            self._queued += 1
            if self._idle < self._queued and self._threads < self._workers + self._stuck:
                self._spawn()
        self._jobs.put(job)
        try:
            return job.future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            self._abandon(job)
            raise

    def _abandon(self, job: _Job) -> None:
        with self._lock:
            if job.future.done():
                return
            job.abandoned = True
            if job.started:  # its worker is stuck: keep the pool at strength
                self._stuck += 1
                self._spawn()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                if job is not None:
                    self._queued -= 1
            if job is None:
                return
            with self._lock:
                if job.abandoned:  # timed out while queued: nobody waits for it any more
                    continue
                job.started = True
            try:
                job.future.set_result(job.func())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                job.future.set_exception(exc)
            if self._retire_after(job):
                return

    def _retire_after(self, job: _Job) -> bool:
        with self._lock:
            if not job.abandoned:
                return False
            self._stuck -= 1
            if self._threads > self._workers + self._stuck:
                self._threads -= 1
                return True
            return False

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)
