"""State stores against real backends: a SQLite file, a real redis-server, and in-memory."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mailwarden.detectors.sending.state import (
    MemoryStore,
    NullStore,
    StateStore,
    StoreUnavailable,
    Update,
    sender_key,
)
from mailwarden.detectors.sending.state_redis import RedisStore
from mailwarden.detectors.sending.state_sqlite import SqliteStore

from redis_server import RedisServer, redis_server  # noqa: F401 - fixture


def increment(at: float, flagged: bool = False):  # type: ignore[no-untyped-def]
    def body(blob: bytes | None) -> tuple[Update, int]:
        value = int(blob or b"0") + 1
        return Update(str(value).encode(), at, at if flagged else None), value

    return body


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "memory":
        s: StateStore = MemoryStore()
    elif request.param == "sqlite":
        s = SqliteStore(tmp_path / "state.sqlite")
    else:
        server = RedisServer(tmp_path)
        server.start()
        request.addfinalizer(server.stop)
        s = RedisStore(server.url, prefix="t:")
    yield s
    s.close()


def test_transact_reads_old_value_and_writes_new(store: StateStore) -> None:
    assert store.get("k") is None
    assert store.transact("k", increment(1.0)) == 1
    assert store.transact("k", increment(2.0)) == 2
    assert store.get("k") == b"2"
    assert store.health()


def test_concurrent_updates_of_one_sender_are_not_lost(store: StateStore) -> None:
    def worker() -> None:
        for i in range(40):
            store.transact("hot", increment(float(i)))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("hot") == b"240"


def test_anomalous_count_tracks_the_last_flag_per_sender(store: StateStore) -> None:
    store.transact("a", increment(100.0, flagged=True))
    store.transact("b", increment(200.0, flagged=True))
    store.transact("c", increment(300.0, flagged=False))
    assert store.anomalous_count(since=50.0) == 2
    assert store.anomalous_count(since=150.0) == 1
    store.transact("b", increment(400.0, flagged=False))  # back to normal: leaves the set
    assert store.anomalous_count(since=50.0) == 1


def test_failed_transaction_body_writes_nothing(store: StateStore) -> None:
    store.transact("k", increment(1.0))

    def boom(blob: bytes | None) -> tuple[Update, int]:
        raise RuntimeError("body failed")

    with pytest.raises(RuntimeError):
        store.transact("k", boom)
    assert store.get("k") == b"1"


def test_sender_key_is_stable_and_hides_the_address() -> None:
    key = sender_key("Alice@Corp.Example")
    assert key == sender_key(" alice@corp.example ")
    assert "alice" not in key and len(key) == 24


def test_null_store_keeps_nothing() -> None:
    s = NullStore()
    assert s.transact("k", increment(1.0)) == 1
    assert s.transact("k", increment(2.0)) == 1
    assert s.get("k") is None


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.sqlite", busy_timeout_ms=1234)
    s.transact("k", increment(1.0))
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert s._conn().execute("PRAGMA busy_timeout").fetchone()[0] == 1234
    s.close()


def test_sqlite_state_survives_reopening(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.sqlite")
    s.transact("k", increment(1.0))
    s.close()
    again = SqliteStore(tmp_path / "s.sqlite")
    assert again.transact("k", increment(2.0)) == 2
    again.close()


def test_sqlite_prunes_expired_and_surplus_senders(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.sqlite", retention_seconds=1000, max_senders=50,
                    prune_every=10**9)
    for i in range(100):
        s.transact(f"old{i}", increment(float(i)))
    for i in range(80):
        s.transact(f"new{i}", increment(5000.0 + i))
    removed = s.prune()
    assert removed == 130  # 100 expired (older than 6079 - 1000), then 30 beyond the cap
    assert len(s) == 50
    assert s.get("new79") is not None and s.get("new0") is None and s.get("old99") is None
    s.close()


def test_sqlite_prunes_by_itself_every_n_transactions(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.sqlite", retention_seconds=10, prune_every=20)
    for i in range(30):
        s.transact(f"k{i}", increment(float(i * 100)))
    assert len(s) < 30
    s.close()


def test_sqlite_unusable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailable):
        SqliteStore(tmp_path / "file" / "sub" / "s.sqlite")


@pytest.mark.redis
def test_redis_keys_have_prefix_and_ttl(redis_server: RedisServer) -> None:  # noqa: F811
    s = RedisStore(redis_server.url, prefix="mw:test:", ttl_seconds=3600)
    s.transact("abc", increment(10.0, flagged=True))
    client = redis.Redis.from_url(redis_server.url)
    assert client.get("mw:test:s:abc") == b"1"
    assert 3500 < client.ttl("mw:test:s:abc") <= 3600
    assert client.zscore("mw:test:flagged", "abc") == 10.0
    client.close()
    s.close()


@pytest.mark.redis
def test_redis_down_raises_store_unavailable_and_recovers(
        redis_server: RedisServer) -> None:  # noqa: F811
    s = RedisStore(redis_server.url, prefix="t:", timeout_seconds=0.3)
    s.transact("k", increment(1.0))
    redis_server.stop()
    with pytest.raises(StoreUnavailable):
        s.transact("k", increment(2.0))
    assert not s.health()
    redis_server.start()
    assert s.transact("k", increment(3.0)) == 1  # a fresh server (no persistence): new state
    assert s.health()
    s.close()


@pytest.mark.redis
def test_two_redis_instances_share_state_without_lost_updates(
        redis_server: RedisServer) -> None:  # noqa: F811
    stores = [RedisStore(redis_server.url, prefix="shared:") for _ in range(2)]

    def worker(s: RedisStore) -> None:
        for i in range(30):
            s.transact("hot", increment(float(i)))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].get("hot") == b"180"
    for s in stores:
        s.close()
