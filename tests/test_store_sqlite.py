"""The SQLite state store's optimistic updates: conflicts, processes, and the old file layout."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwarden.detectors.sending.state import Update
from mailwarden.detectors.sending.state_sqlite import OPTIMISTIC_TRIES, SqliteStore
from mailwarden.notify.spool import NotifySpool
from mailwarden.quarantine.store import QuarantineStore


def increment(at: float, flagged: bool = False):  # type: ignore[no-untyped-def]
    def body(blob: bytes | None) -> tuple[Update, int]:
        value = int(blob or b"0") + 1
        return Update(str(value).encode(), at, at if flagged else None), value

    return body


def test_a_write_between_read_and_write_makes_the_update_recompute(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store, other = SqliteStore(path), SqliteStore(path)
    store.transact("k", increment(1.0))
    calls = []

    def racing(blob: bytes | None) -> tuple[Update, int]:
        calls.append(blob)
        if len(calls) == 1:
            other.transact("k", increment(2.0))  # another writer gets in first
        return increment(3.0)(blob)

    assert store.transact("k", racing) == 3
    assert calls == [b"1", b"2"]
    assert store.get("k") == b"3"
    store.close()
    other.close()


def test_a_sender_under_constant_conflict_still_gets_its_update(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store, other = SqliteStore(path), SqliteStore(path)
    calls = []

    def always_raced(blob: bytes | None) -> tuple[Update, int]:
        calls.append(blob)
        if len(calls) <= OPTIMISTIC_TRIES:
            other.transact("k", increment(1.0))
        return increment(2.0)(blob)

    result = store.transact("k", always_raced)
    assert len(calls) == OPTIMISTIC_TRIES + 1  # the last try ran under the write lock
    assert result == OPTIMISTIC_TRIES + 1 and store.get("k") == str(result).encode()
    store.close()
    other.close()


def _hammer(path: str, rounds: int) -> None:
    store = SqliteStore(Path(path))

    def work() -> None:
        for i in range(rounds):
            store.transact("hot", increment(float(i)))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()


def test_processes_and_threads_never_lose_an_update_of_one_sender(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    SqliteStore(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(str(path), 40)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = SqliteStore(path)
    assert store.get("hot") == b"360"
    store.close()


def test_a_file_of_the_earlier_layout_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE sender_state (key TEXT PRIMARY KEY, blob BLOB NOT NULL, updated REAL NOT NULL);
        CREATE INDEX sender_state_updated ON sender_state(updated);
        CREATE TABLE flagged (key TEXT PRIMARY KEY, at REAL NOT NULL);
        INSERT INTO sender_state VALUES ('a', X'35', 100.0), ('b', X'37', 200.0);
        INSERT INTO flagged VALUES ('b', 200.0);
    """)
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    assert store.get("a") == b"5" and store.get("b") == b"7"
    assert store.anomalous_count(since=150.0) == 1
    assert store.transact("a", increment(300.0, flagged=True)) == 6
    assert store.anomalous_count(since=150.0) == 2
    assert store.transact("b", increment(400.0)) == 8
    assert store.anomalous_count(since=150.0) == 1
    tables = {r[0] for r in store._conn().execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "flagged" not in tables
    store.close()
    SqliteStore(path).close()  # opening an upgraded file again changes nothing


def _open_store(path: Path) -> None:
    SqliteStore(path).close()


def _open_spool(path: Path) -> None:
    NotifySpool(path, max_rows=10).close()


def _open_quarantine(path: Path) -> None:
    QuarantineStore(path).close()


def _open_at_once(opener: Callable[[Path], None], path: Path, barrier, results) -> None:  # type: ignore[no-untyped-def]
    barrier.wait()
    try:
        opener(path)
        results.put("ok")
    except Exception as exc:
        results.put(repr(exc))


@pytest.mark.parametrize("opener", [_open_store, _open_spool, _open_quarantine])
def test_workers_opening_a_fresh_file_at_once_all_succeed(
        tmp_path: Path, opener: Callable[[Path], None]) -> None:
    """Every worker of a daemon opens the same fresh file at one moment (the sending store, the
    notifier's spool, the quarantine records); switching it to WAL mode must wait for the
    others, not fail a worker."""
    ctx = multiprocessing.get_context("fork")
    for attempt in range(10):
        path = tmp_path / f"{attempt}.sqlite"
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(opener, path, barrier, results))
                 for _ in range(6)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=30) for _ in procs]
        for proc in procs:
            proc.join(30)
        assert outcomes == ["ok"] * 6, outcomes
