"""ScanPool: scans that hang past the budget must not starve the messages after them."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from mailwarden.scanpool import PoolExhausted, ScanPool


def test_stuck_scans_do_not_block_new_work() -> None:
    pool = ScanPool(workers=2, max_stuck_factor=4)
    release = threading.Event()
    try:
        for _ in range(2):  # both workers of the first pool hang
            with pytest.raises(concurrent.futures.TimeoutError):
                pool.run(release.wait, timeout=0.05)
        assert pool.stuck == 2
        started = time.monotonic()
        assert pool.run(lambda: 42, timeout=1.0) == 42  # served at once, not queued behind them
        assert time.monotonic() - started < 0.5
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while pool.stuck and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.stuck == 0
    pool.shutdown()


def test_too_many_stuck_scans_fail_at_once() -> None:
    pool = ScanPool(workers=1, max_stuck_factor=2)
    release = threading.Event()
    try:
        for _ in range(2):
            with pytest.raises(concurrent.futures.TimeoutError):
                pool.run(release.wait, timeout=0.05)
        started = time.monotonic()
        with pytest.raises(PoolExhausted):
            pool.run(lambda: 1, timeout=5.0)
        assert time.monotonic() - started < 0.5
    finally:
        release.set()
        pool.shutdown()
