"""Memory of a milter over a long run: RSS and PSS sampled while it scores mail non-stop.

Part of the bench harness. Starts the target milter (any command with ``{socket}``), then runs
``miltergen.run_load`` in back-to-back slices of ``--slice`` seconds for ``--minutes`` in all, at
``--concurrency``, over the given corpus (cycled: the same messages again and again, so any growth
is a leak, not new content), and prints one line per slice: messages so far, throughput of the
slice, RSS summed over the process tree (supervisor plus workers in pre-fork mode), PSS, and
thread count. Flat RSS after warm-up is the target; timings are reported, never asserted.

Usage: ``.venv/bin/python bench/rss_run.py --target-cmd "CMD {socket}" [--minutes 10]
[--slice 30] [--json out.json] PATH...``
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from miltergen import LoadConfig, load_messages, run_load
from milterprocs import running, socket_spec
from procstat import pss_kib, rss_kib, thread_count, tree


def sample(pid: int) -> dict[str, int]:
    pids = tree(pid)
    return {"processes": len(pids), "rss_kib": sum(rss_kib(p) for p in pids),
            "pss_kib": sum(pss_kib(p) for p in pids),
            "threads": sum(thread_count(p) for p in pids)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*")
    p.add_argument("--target-cmd", required=True)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--slice", type=float, default=30.0, help="seconds per sample (30)")
    p.add_argument("-c", "--concurrency", type=int, default=4)
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    messages = load_messages(args.paths, args.limit, 4096)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mw-rss-") as tmp:
        spec = socket_spec("unix", Path(tmp), "rss")
        command = shlex.split(args.target_cmd.replace("{socket}", spec))
        with running(command, spec, Path(tmp) / "target.log", 120.0) as proc:
            total, started = 0, time.monotonic()
            rows.append({"minute": 0.0, "messages": 0, "msg_per_s": 0.0, **sample(proc.pid)})
            while time.monotonic() - started < args.minutes * 60:
                report = run_load(LoadConfig(socket=spec, concurrency=args.concurrency,
                                             seconds=args.slice, measure_process=False),
                                  messages)
                total += int(str(report["messages"]))
                row = {"minute": round((time.monotonic() - started) / 60, 2), "messages": total,
                       "msg_per_s": report["messages_per_second"], "errors": report["errors"],
                       **sample(proc.pid)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    print("| minute | messages | msg/s | RSS KiB (sum) | PSS KiB | processes | threads |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['minute']} | {r['messages']} | {r['msg_per_s']} | {r['rss_kib']} | "
              f"{r['pss_kib']} | {r['processes']} | {r['threads']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
