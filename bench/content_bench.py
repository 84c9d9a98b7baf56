"""Per-message scan time of the ``content`` detector (p50/p99), typical and large messages.

Usage: ``python bench/content_bench.py [--corpus PATH] [--messages N] [--rounds R]``.
Typical messages are real corpus messages under 50 KB; large ones are built by repeating
corpus bodies up to ~1 MB of text. Every scan gets a fresh ``Message`` (no memo), so the time
includes MIME parsing, text extraction, tokenising, stemming (behind the bounded LRU cache, warmed
by the first round, which is reported separately as "cold") and scoring with the three models.
Times are CPU time of the scanning thread (``time.thread_time``), so that other load on a shared
machine does not inflate them; wall time on an idle machine is about the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from pathlib import Path

from mailwarden.detectors.base import DetectorContext
from mailwarden.detectors.content.detector import build, load_models, text_function
from mailwarden.detectors.content.textprep import TextPrep
from mailwarden.files.sources import iter_sources
from mailwarden.message import Envelope, Message
from mailwarden.options import Options

REPO = Path(__file__).resolve().parent.parent
CORPORA = Path(os.environ.get("MAILWARDEN_CORPORA", REPO.parent / "shared" / "corpora"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(detector, raws: list[bytes]) -> list[float]:
    out = []
    for raw in raws:
        message = Message(Envelope("B", "a@example.org", ("b@example.org",)), raw, len(raw))
        start = time.thread_time()
        detector.analyse(message)
        out.append((time.thread_time() - start) * 1000.0)
    return out


def phases(detector, raws: list[bytes]) -> dict[str, list[float]]:
    """Milliseconds per phase: text extraction, tokenising+stemming, scoring the three models."""
    text = text_function()
    prep = TextPrep()
    models = load_models(REPO / "models" / "content")
    out: dict[str, list[float]] = {"text": [], "tokens": [], "score": []}
    for raw in raws:
        message = Message(Envelope("B", "a@example.org", ("b@example.org",)), raw, len(raw))
        t0 = time.thread_time()
        body = text(message)
        t1 = time.thread_time()
        tokens = prep.tokens(body)
        t2 = time.thread_time()
        counts = Counter(tokens)
        for model in models.values():
            model.probability(counts)
        t3 = time.thread_time()
        for key, value in (("text", t1 - t0), ("tokens", t2 - t1), ("score", t3 - t2)):
            out[key].append(value * 1000.0)
    return out


def large_messages(raws: list[bytes], count: int, size: int) -> list[bytes]:
    out = []
    for i in range(count):
        body = b""
        j = i
        while len(body) < size:
            raw = raws[j % len(raws)]
            body += raw.partition(b"\n\n")[2] + b"\n"
            j += 7
        out.append(b"Subject: large test\nContent-Type: text/plain\n\n" + body[:size])
    return out


def report(name: str, values: list[float]) -> None:
    print(f"{name:28s} n={len(values):5d}  p50={statistics.median(values):7.2f} ms  "
          f"p99={percentile(values, 0.99):7.2f} ms  max={max(values):7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", action="append",
                        default=None, help="messages (default: SpamAssassin ham+spam)")
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sa = CORPORA / "spamassassin"
    corpus = args.corpus or [sa / "easy_ham.tar.gz", sa / "spam.tar.gz"]
    raws = [r.data for r in iter_sources(corpus) if len(r.data) < 50_000][: args.messages]
    detector = build(Options({}, "detectors.content"), DetectorContext(REPO / "models", REPO))
    report("typical, cold stem cache", timed(detector, raws))
    warm = [t for _ in range(args.rounds) for t in timed(detector, raws)]
    report("typical (<50 KB), warm", warm)
    sizes = sorted(len(r) for r in raws)
    print(f"typical sizes: median {sizes[len(sizes) // 2]} B, max {sizes[-1]} B")
    for size in (200_000, 1_000_000):
        big = large_messages(raws, 20, size)
        report(f"large ({size // 1000} KB text)", timed(detector, big))
        for phase, values in phases(detector, big).items():
            report(f"  phase {phase}", values)
    for phase, values in phases(detector, raws).items():
        report(f"typical phase {phase}", values)


if __name__ == "__main__":
    main()
