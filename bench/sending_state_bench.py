"""State size of the ``sending`` detector with 10, 1,000 and 100,000 senders, and scoring speed.

Usage: ``.venv/bin/python bench/sending_state_bench.py [--senders 10 1000 100000]
[--messages 20] [--speed] [--no-redis]``

For each sender count, every sender gets a real profile built by the detector's own feature code
from ``--messages`` synthetic messages (profiles are built for 200 distinct senders and reused
under distinct keys: a blob's size depends only on what it holds, not on whose it is), and is
written through each store backend. Reported: SQLite file size (after a WAL checkpoint), the
in-memory store's blob bytes, and Redis ``used_memory`` growth (a throwaway redis-server on a free
loopback port, if /usr/bin/redis-server exists). ``--speed`` times one-row scoring of the four
portable models against scikit-learn's ``score_samples`` and a full ``analyse`` with SQLite state.
Prints a JSON document.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailwarden.detectors.sending.features import FeatureConfig, SendEvent, learn, observe
from mailwarden.detectors.sending.profile import OrgPrior, Profile
from mailwarden.detectors.sending.state import MemoryStore, Update
from mailwarden.detectors.sending.state_sqlite import SqliteStore

REPO = Path(__file__).resolve().parent.parent


def template_blobs(messages: int, count: int = 200) -> list[bytes]:
    rng = random.Random(1)
    cfg, prior = FeatureConfig(), OrgPrior()
    blobs = []
    for i in range(count):
        p = Profile()
        contacts = [f"c{rng.randrange(10**6)}@d{rng.randrange(50)}.example" for _ in range(12)]
        at = 1_700_000_000.0
        for _ in range(messages):
            at += rng.uniform(600, 86400)
            rcpts = tuple(rng.sample(contacts, rng.randint(1, 3)))
            if rng.random() < 0.1:
                rcpts += (f"n{rng.randrange(10**6)}@new{rng.randrange(10**4)}.example",)
            ev = SendEvent(at, f"s{i}@corp.example", rcpts, rng.randint(2000, 90000), 0, False)
            learn(p, ev, observe(p, ev, prior, cfg))
        blobs.append(p.encode())
    return blobs


def worst_case_blob() -> bytes:
    p = Profile()
    cfg, prior = FeatureConfig(), OrgPrior()
    for i in range(400):
        rcpts = tuple(f"r{i}-{k}@d{i}-{k}.example" for k in range(3))
        ev = SendEvent(1_700_000_000.0 + i * 60, "s@corp.example", rcpts, 5000, 0, False)
        learn(p, ev, observe(p, ev, prior, cfg))
    return p.encode()


def fill(store: object, n: int, blobs: list[bytes]) -> float:
    start = time.perf_counter()
    for i in range(n):
        blob = blobs[i % len(blobs)]
        update = Update(blob, 1.7e9 + i)
        store.transact(f"{i:024x}", lambda _old, u=update: (u, None))  # type: ignore[attr-defined]
    return time.perf_counter() - start


def sqlite_size(n: int, blobs: list[bytes], workdir: Path) -> dict[str, float]:
    path = workdir / f"s{n}.sqlite"
    store = SqliteStore(path, prune_every=10**9)
    seconds = fill(store, n, blobs)
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"file_bytes": path.stat().st_size, "seconds": round(seconds, 2),
            "bytes_per_sender": round(path.stat().st_size / n, 1)}


def memory_size(n: int, blobs: list[bytes]) -> dict[str, float]:
    store = MemoryStore()
    fill(store, n, blobs)
    total = sum(len(blobs[i % len(blobs)]) for i in range(n))
    return {"blob_bytes": total, "bytes_per_sender": round(total / n, 1)}


def redis_size(n: int, blobs: list[bytes], workdir: Path) -> dict[str, float] | None:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        return None
    import redis

    from mailwarden.detectors.sending.state_redis import RedisStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        before = int(client.info("memory")["used_memory"])
        seconds = fill(RedisStore(f"redis://127.0.0.1:{port}/0"), n, blobs)
        used = int(client.info("memory")["used_memory"]) - before
        return {"used_memory_bytes": used, "bytes_per_sender": round(used / n, 1),
                "seconds": round(seconds, 2)}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def speed() -> dict[str, float]:
    import numpy as np

    from mailwarden.detectors.sending.anomaly_models import load_bundle
    from mailwarden.training.sending.fit import FITTERS

    bundle = load_bundle(REPO / "models" / "sending")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, len(bundle.features)))
    row = x[:1]
    out: dict[str, float] = {}
    for kind, scorer in bundle.scorers.items():
        out[f"portable_{kind}_us"] = _best(lambda s=scorer: s.score(row)) * 1e6
        est, _portable = FITTERS[kind](x, 0)
        fn = (lambda e=est: e.score_samples(row)) if hasattr(est, "score_samples") else (
            lambda e=est: e.predict(row))
        out[f"sklearn_{kind}_us"] = _best(fn) * 1e6
    out["analyse_sqlite_us"] = _analyse_time() * 1e6
    return {k: round(v, 1) for k, v in out.items()}


def _analyse_time(count: int = 2000) -> float:
    """Mean wall time of one ``analyse`` (features, IF scoring, SQLite read and write)."""
    from mailwarden.detectors.base import DetectorContext, registrations
    from mailwarden.message import Envelope, Message
    from mailwarden.options import Options

    raw = b"From: a@corp.example\nTo: b@corp.example\nSubject: x\n\n" + b"text\n" * 500
    with tempfile.TemporaryDirectory() as tmp:
        ctx = DetectorContext(REPO / "models", Path(tmp), run_mode="milter")
        det = registrations()["sending"].factory(Options({}, "detectors.sending"), ctx)
        start = time.perf_counter()
        for i in range(count):
            env = Envelope("Q", f"u{i % 100}@corp.example", (f"c{i % 7}@corp.example",),
                           received_at=1.7e9 + i * 60)
            det.analyse(Message(env, raw, len(raw)))
        elapsed = time.perf_counter() - start
        det.close()
    return elapsed / count


def _best(fn: object, repeat: int = 200) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return float(sorted(times)[len(times) // 2])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--senders", type=int, nargs="+", default=[10, 1000, 100000])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    blobs = template_blobs(args.messages)
    report: dict[str, object] = {
        "messages_per_sender": args.messages,
        "mean_blob_bytes": round(sum(map(len, blobs)) / len(blobs), 1),
        "worst_case_blob_bytes": len(worst_case_blob()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.senders:
            report[str(n)] = {"sqlite": sqlite_size(n, blobs, Path(tmp)),
                              "memory": memory_size(n, blobs),
                              "redis": None if args.no_redis else redis_size(n, blobs, Path(tmp))}
            print(f"{n} senders done", file=sys.stderr)
    if args.speed:
        report["speed"] = speed()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
