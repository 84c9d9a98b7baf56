"""Redis backend of the per-sender state store, shared by several milter instances.

Each sender profile is one string key ``<prefix>s:<hashed sender>`` with a TTL (state of senders who
stop sending expires by itself); the anomalous senders are one sorted set ``<prefix>flagged`` scored
by the flag time. A read-modify-write runs as an optimistic transaction (WATCH, compute, MULTI/EXEC,
retry on conflict), so two instances updating the same sender never lose an update; inside one
process, updates of one sender also take a striped lock, so threads do not make each other retry.
Works with Debian 12's redis-py 4.3 and current redis-py; connection problems are reported as
:class:`~mailwarden.detectors.sending.state.StoreUnavailable` and redis-py reconnects on the next
command.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from typing import Any, TypeVar

from mailwarden.detectors.sending.state import StoreUnavailable, TransactFn

T = TypeVar("T")
MAX_RETRIES = 50
LOCK_STRIPES = 64


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "mailwarden:sending:",
        ttl_seconds: int = 90 * 86400,
        timeout_seconds: float = 0.5,
        client: Any = None,
    ) -> None:
        try:
            import redis
        except ImportError as exc:
            raise StoreUnavailable("redis-py is not installed (python3-redis)") from exc
        self._redis = redis
        self._prefix = prefix
        self._ttl = int(ttl_seconds)
        self._client = client or redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
            health_check_interval=30,
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def _key(self, key: str) -> str:
        return f"{self._prefix}s:{key}"

    @property
    def _flag_key(self) -> str:
        return f"{self._prefix}flagged"

    def transact(self, key: str, fn: TransactFn[T]) -> T:
        name = self._key(key)
        lock = self._locks[zlib.crc32(key.encode()) % LOCK_STRIPES]
        try:
            with lock, self._client.pipeline(transaction=True) as pipe:
                for attempt in range(MAX_RETRIES):
                    try:
                        return self._attempt(pipe, key, name, fn)
                    except self._redis.WatchError:  # another instance won: read again
                        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        except self._errors as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        raise StoreUnavailable(f"redis: {MAX_RETRIES} conflicting updates of one sender")

    def _attempt(self, pipe: Any, key: str, name: str, fn: TransactFn[T]) -> T:
        pipe.watch(name)
        old = pipe.get(name)
        update, result = fn(bytes(old) if old is not None else None)
        pipe.multi()
        pipe.set(name, update.blob, ex=self._ttl)
        if update.flagged_at is None:
            pipe.zrem(self._flag_key, key)
        else:
            pipe.zadd(self._flag_key, {key: update.flagged_at})
            pipe.expire(self._flag_key, self._ttl)
        pipe.execute()
        return result

    def get(self, key: str) -> bytes | None:
        try:
            value = self._client.get(self._key(key))
        except self._errors as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return bytes(value) if value is not None else None

    def anomalous_count(self, since: float) -> int:
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.zremrangebyscore(self._flag_key, "-inf", f"({since - self._ttl}")
            pipe.zcount(self._flag_key, since, "+inf")
            return int(pipe.execute()[1])
        except self._errors as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def health(self) -> bool:
        try:
            return bool(self._client.ping())
        except self._errors:
            return False

    def close(self) -> None:
        try:
            self._client.close()
        except self._errors:
            return
