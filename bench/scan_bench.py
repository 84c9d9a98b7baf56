"""CPU per message of the engine in-process, by stage and detector, without the milter protocol.

Part of the bench harness: where ``miltergen.py`` measures a milter from outside, this builds one
:class:`~mailwarden.engine.Engine` from a config file (run mode ``milter``: real SQLite state,
audit and notify sinks as configured) and scores corpus messages the way the adapter would hand
them over (envelope sender from ``From:``, recipients from ``To:``/``Cc:``, SASL login = sender,
so the mail counts as outbound). It reports thread CPU time per message for the whole
``scan_within_budget`` call and for each detector's ``analyse`` (timed by a wrapper), so a change
in one detector shows up without the noise of a shared machine's wall clock. ``--profile FILE``
writes a cProfile of the last round (``--inline`` runs the scan on the calling thread, which is
the one profiled).

Usage: ``.venv/bin/python bench/scan_bench.py --config mw.toml [--limit 1000] [--rounds 2]
[--profile out.prof] PATH...``
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from miltergen import load_messages
from milterload import PreparedMessage

from mailwarden.config import load_config
from mailwarden.engine import Engine
from mailwarden.message import Envelope, Message
from mailwarden.metrics import Metrics
from mailwarden.verdict import DetectorResult


class Timed:
    """Wraps a detector and records the thread CPU time of each ``analyse`` call."""

    def __init__(self, inner: Any, sink: list[float]):
        self._inner, self._sink = inner, sink
        self.name = inner.name

    def analyse(self, message: Message) -> DetectorResult:
        start = time.thread_time()
        try:
            result: DetectorResult = self._inner.analyse(message)
            return result
        finally:
            self._sink.append((time.thread_time() - start) * 1000.0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def to_message(prepared: PreparedMessage, raw: bytes, now: float) -> Message:
    envelope = Envelope(queue_id="BENCH", mail_from=prepared.sender,
                        recipients=prepared.recipients, auth_user=prepared.sender,
                        client_addr="127.0.0.1", received_at=now)
    return Message(envelope, raw, len(raw))


def raw_bytes(prepared: PreparedMessage) -> bytes:
    """The message as the adapter's buffer assembles it (``name: value`` CRLF, folded lines
    joined by ``\\n`` as the MTA sends them, blank line, body)."""
    head = b"".join(name + b":" + value + b"\r\n"
                    for name, value in prepared.headers)
    return head + b"\r\n" + b"".join(prepared.body_chunks)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summary(values: Sequence[float]) -> str:
    return (f"mean {statistics.fmean(values):7.3f}  p50 {percentile(values, 0.5):7.3f}  "
            f"p99 {percentile(values, 0.99):7.3f}  max {max(values):8.3f} ms")


def run(engine: Engine, messages: Sequence[PreparedMessage], rounds: int,
        profile: str | None, inline: bool = False) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {d.name: [] for d in engine.detectors}
    engine.detectors = tuple(replace(d, detector=Timed(d.detector, times[d.name]))
                             for d in engine.detectors)
    prepared = [(m, raw_bytes(m)) for m in messages]
    total: list[float] = []
    profiler = cProfile.Profile() if profile else None
    for round_no in range(rounds):
        warm = round_no == rounds - 1  # the profile covers the last round (caches warm)
        for m, raw in prepared:
            message = to_message(m, raw, time.time())
            if profiler and warm:
                profiler.enable()
            start = time.thread_time()
            if inline:
                engine.scan(message)
            else:
                engine.scan_within_budget(message)
            total.append((time.thread_time() - start) * 1000.0)
            if profiler and warm:
                profiler.disable()
    if profiler and profile:
        profiler.dump_stats(profile)
    return {"total (calling thread)": total, **times}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+")
    p.add_argument("--config", required=True)
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--profile", help="write a cProfile here")
    p.add_argument("--inline", action="store_true",
                   help="call Engine.scan on this thread (no worker pool, no sinks): profiles "
                        "the detectors")
    args = p.parse_args(argv)
    config = load_config(args.config)
    engine = Engine(config, Metrics())
    messages = load_messages(args.paths, args.limit, 4096)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    results = run(engine, messages, args.rounds, args.profile, args.inline)
    cpu = time.process_time() - cpu0
    count = len(messages) * args.rounds
    print(f"{count} scans, process CPU {cpu * 1000 / count:.3f} ms/message (all threads), "
          f"wall {(time.perf_counter() - wall0) * 1000 / count:.3f} ms/message")
    for name, values in results.items():
        print(f"{name:24s} {summary(values)}")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
