"""Benchmark a milter against the no-op pymilter ceiling: interleaved runs, medians, ratios.

The top of the bench harness. For each transport (unix, then inet socket) it starts the no-op milter
(``noop_milter.py``) and the target, warms both up, then runs the load generator
(``miltergen.run_load``) against them in turn, ``--rounds`` times (3), alternating the order every
round so that drift in the machine's load hits both alike, and prints the medians per milter and
transport and the target/noop ratios. The target is any milter command with ``{socket}`` in it,
e.g. ``--target-cmd '.venv/bin/mailwarden run --config mw.toml --socket {socket}'``; by default
the slow dummy (``dummy_milter.py --cpu-ms 2``), which is how the harness itself is validated.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from miltergen import LoadConfig, load_messages, run_load
from milterload import PreparedMessage
from milterprocs import builtin_command, running, socket_spec

METRICS = (  # (label, path in the miltergen report)
    ("msg/s", ("messages_per_second",)),
    ("p50 ms", ("latency_ms", "p50")),
    ("p95 ms", ("latency_ms", "p95")),
    ("p99 ms", ("latency_ms", "p99")),
    ("max ms", ("latency_ms", "max")),
    ("milter CPU ms/msg", ("milter_process", "cpu_ms_per_message")),
    ("milter RSS max KiB", ("milter_process", "rss_max_kib")),
    ("milter PSS KiB", ("milter_process", "pss_end_kib")),
    ("generator CPU %", ("generator", "cpu_utilisation")),
    ("errors", ("errors",)),
)


def metric(report: dict[str, object], path: Sequence[str]) -> float:
    value: object = report
    for key in path:
        value = value.get(key, 0.0) if isinstance(value, dict) else 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def medians(reports: Sequence[dict[str, object]]) -> dict[str, float]:
    return {label: statistics.median(metric(r, path) for r in reports) for label, path in METRICS}


def run_series(args: argparse.Namespace, milters: dict[str, list[str]],
               messages: Sequence[PreparedMessage], workdir: Path) -> dict[str, object]:
    """Per transport: start both milters, warm them up, interleave the measured runs, stop them.

    One transport at a time, so a target that binds a fixed port of its own (a metrics
    exporter) never runs twice at once."""
    runs: dict[str, list[dict[str, object]]] = {}
    for transport in args.transports:
        with ExitStack() as stack:
            sockets = {}
            for name, command in milters.items():
                spec = socket_spec(transport, workdir, f"{name}-{transport}")
                stack.enter_context(running(command, spec, workdir / f"{name}-{transport}.log",
                                            args.ready_timeout))
                sockets[name] = spec
                run_load(LoadConfig(socket=spec, concurrency=args.concurrency,
                                    messages=args.warmup, measure_process=False), messages)
            for round_no in range(args.rounds):
                order = list(milters) if round_no % 2 == 0 else list(reversed(milters))
                for name in order:
                    report = run_load(_config(args, sockets[name]), messages)
                    runs.setdefault(f"{name}/{transport}", []).append(report)
                    print(f"round {round_no + 1} {name}/{transport}: "
                          f"{report['messages_per_second']} msg/s", file=sys.stderr)
    return summarise(runs, list(milters), args.transports)


def _config(args: argparse.Namespace, spec: str) -> LoadConfig:
    return LoadConfig(socket=spec, concurrency=args.concurrency, messages=args.messages,
                      seconds=None if args.messages else args.seconds,
                      per_connection=args.per_connection)


def summarise(runs: dict[str, list[dict[str, object]]], names: list[str],
              transports: Sequence[str]) -> dict[str, object]:
    table = {key: medians(reports) for key, reports in runs.items()}
    ratios: dict[str, dict[str, float]] = {}
    noop = names[0]
    for target in names[1:]:
        for transport in transports:
            base, other = table[f"{noop}/{transport}"], table[f"{target}/{transport}"]
            key = transport if len(names) == 2 else f"{target}/{transport}"
            ratios[key] = {
                "throughput": round(other["msg/s"] / base["msg/s"], 3) if base["msg/s"] else 0.0,
                "p50_latency": (round(other["p50 ms"] / base["p50 ms"], 3)
                                if base["p50 ms"] else 0.0),
                "p95_latency": (round(other["p95 ms"] / base["p95 ms"], 3)
                                if base["p95 ms"] else 0.0),
            }
    return {"medians": table, "ratios_target_over_noop": ratios, "runs": runs}


def format_summary(summary: dict[str, object], settings: dict[str, object]) -> str:
    table = summary["medians"]
    ratios = summary["ratios_target_over_noop"]
    assert isinstance(table, dict) and isinstance(ratios, dict)
    labels = [label for label, _ in METRICS]
    lines = [f"medians of {settings['rounds']} interleaved runs, concurrency "
             f"{settings['concurrency']}, {settings['per_connection']} message(s)/connection, "
             f"{settings['loaded']} distinct messages",
             "| milter/transport | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for key, row in table.items():
        cells = [f"{row[label]:.0%}" if label.endswith("%") else f"{row[label]:g}"
                 for label in labels]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for transport, ratio in ratios.items():
        lines.append(f"target/noop on {transport}: throughput x{ratio['throughput']}, "
                     f"p50 latency x{ratio['p50_latency']}, p95 latency x{ratio['p95_latency']}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", help="messages (default: synthetic 4 KiB messages)")
    p.add_argument("--target-cmd", help="target milter command containing {socket}")
    p.add_argument("--target-name", default="target", help="label of the target (target)")
    p.add_argument("--also", action="append", default=[], metavar="NAME=CMD",
                   help="a further target measured in the same rounds (repeatable)")
    p.add_argument("--noop-vs-noop", action="store_true",
                   help="compare the no-op milter with a second no-op (harness self-check)")
    p.add_argument("--dummy-cpu-ms", type=float, default=2.0, help="default target's CPU (2)")
    p.add_argument("-c", "--concurrency", type=int, default=4)
    p.add_argument("-t", "--seconds", type=float, default=8.0, help="per run (8)")
    p.add_argument("-n", "--messages", type=int, help="per run, instead of --seconds")
    p.add_argument("--per-connection", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--transports", default="unix,inet", type=lambda s: s.split(","))
    p.add_argument("--limit", type=int, default=1000, help="distinct messages loaded (1000)")
    p.add_argument("--warmup", type=int, default=200, help="unmeasured messages per milter")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="wait for the target")
    p.add_argument("--json", metavar="FILE", help="also write every run and the summary here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.noop_vs_noop:
        target_name, target = "noop2", builtin_command("noop_milter")
    elif args.target_cmd:
        target_name, target = args.target_name, shlex.split(args.target_cmd)
    else:
        target_name = "dummy"
        target = builtin_command("dummy_milter", ["--cpu-ms", str(args.dummy_cpu_ms)])
    messages = load_messages(args.paths, args.limit, 4096)
    milters = {"noop": builtin_command("noop_milter"), target_name: target}
    for extra in args.also:
        name, _, command = extra.partition("=")
        milters[name] = shlex.split(command)
    settings = {"rounds": args.rounds, "concurrency": args.concurrency, "loaded": len(messages),
                "per_connection": args.per_connection, "target": target, "paths": args.paths,
                "seconds": args.seconds, "messages": args.messages}
    with tempfile.TemporaryDirectory(prefix="mw-bench-") as tmp:
        summary = run_series(args, milters, messages, Path(tmp))
    print(format_summary(summary, settings))
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
