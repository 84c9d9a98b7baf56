"""End-to-end benchmark through a real Postfix and its ``smtp-source``, with and without milters.

The last layer of the bench harness. For each transport (``--transports``, unix by default), one
after the other, it starts three throwaway Postfix instances on loopback (``postfix_sandbox.py``:
private config and queue, every transport ``discard:``): one without a milter, one with the no-op
milter and one with the target in ``smtpd_milters``; then it times ``smtp-source -s 16 -m N``
sending one message file to each, ``--rounds`` times interleaved, and prints medians of
messages/s and the milter's CPU per message, with the ratio to the no-milter run of the same
phase. Needs root. The target is any milter command containing ``{socket}`` (default:
``dummy_milter.py --cpu-ms 2``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from milterprocs import builtin_command, running, socket_spec
from postfix_sandbox import PostfixInstance, start
from procstat import ProcessSampler

SMTP_SOURCE = "/usr/sbin/smtp-source"


def message_file(paths: Sequence[str], workdir: Path) -> Path:
    """The message smtp-source sends: the first one under ``paths`` or a synthetic 4 KiB one."""
    from milterload import synthetic_message

    from mailwarden.files.sources import iter_sources

    data = next((raw.data for raw in iter_sources(paths)), None) if paths else None
    target = workdir / "message.eml"
    target.write_bytes((data or synthetic_message(0, 4096)).replace(b"\r\n", b"\n"))
    return target


def start_case(stack: ExitStack, name: str, command: list[str] | None, transport: str,
               workdir: Path) -> tuple[PostfixInstance, int | None]:
    """Start the case's milter (if any) and its Postfix; both stop when ``stack`` closes."""
    spec, pid = None, None
    if command is not None:
        spec = socket_spec(transport, workdir, f"{name}-{transport}")
        proc = stack.enter_context(running(command, spec, workdir / f"{name}-{transport}.log"))
        pid = proc.pid
        if spec.startswith("unix:"):
            Path(spec[5:]).chmod(0o666)  # smtpd runs as the postfix user
    instance = stack.enter_context(start(milter_socket=spec))
    return instance, pid


def run_case(instance: PostfixInstance, pid: int | None, args: argparse.Namespace,
             message: Path) -> dict[str, float]:
    before = instance.count("status=sent")
    sampler = ProcessSampler(pid).start() if pid else None
    argv = [SMTP_SOURCE, "-s", str(args.sessions), "-m", str(args.messages), "-F", str(message),
            "-f", args.sender, "-t", args.rcpt, *(["-d"] if args.reuse else []),
            f"127.0.0.1:{instance.port}"]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout, check=False)
    wall = time.perf_counter() - started
    proc = sampler.stop() if sampler else None
    instance.wait_for(lambda i: i.count("status=sent") - before >= args.messages, 30)
    return {
        "msg/s": round(args.messages / wall, 1), "seconds": round(wall, 3),
        "delivered": instance.count("status=sent") - before,
        "smtp_source_errors": len(done.stderr.splitlines()),
        "milter CPU ms/msg": round(proc.cpu_seconds / args.messages * 1000, 3) if proc else 0.0,
        "milter RSS max KiB": proc.rss_max_kib if proc else 0,
    }


def run_all(args: argparse.Namespace, milters: dict[str, list[str] | None],
            workdir: Path) -> dict[str, list[dict[str, float]]]:
    """One phase per transport: start Postfix for each milter (and for none), warm up, then
    ``--rounds`` interleaved runs; one phase at a time, so a target holding a fixed port of its
    own never runs twice at once. Results are keyed ``name/transport``."""
    message = message_file(args.paths, workdir)
    results: dict[str, list[dict[str, float]]] = {}
    for transport in args.transports:
        with ExitStack() as stack:
            started = {f"{name}/{transport}": start_case(stack, name, command, transport, workdir)
                       for name, command in milters.items()}
            warm = argparse.Namespace(**{**vars(args), "messages": 50})
            for instance, pid in started.values():
                run_case(instance, pid, warm, message)
            for round_no in range(args.rounds):
                order = list(started) if round_no % 2 == 0 else list(reversed(started))
                for key in order:
                    row = run_case(*started[key], args, message)
                    results.setdefault(key, []).append(row)
                    print(f"round {round_no + 1} {key}: {row['msg/s']} msg/s", file=sys.stderr)
    return results


def format_table(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    labels = ["msg/s", "seconds", "delivered", "smtp_source_errors", "milter CPU ms/msg",
              "milter RSS max KiB"]
    medians = {key: {label: statistics.median(r[label] for r in rows) for label in labels}
               for key, rows in results.items()}
    lines = [f"Postfix end to end: smtp-source -s {args.sessions} -m {args.messages}"
             f"{' -d' if args.reuse else ''}, medians of {args.rounds} interleaved runs "
             "(none/T: no milter, measured in the same phase as the T-socket milters)",
             "| case | " + " | ".join(labels) + " | ratio to no milter |",
             "|---|" + "---:|" * (len(labels) + 1)]
    for key, row in medians.items():
        base = medians.get(f"none/{key.rpartition('/')[2]}", {}).get("msg/s", 0.0)
        ratio = f"{row['msg/s'] / base:.3f}" if base else "-"
        lines.append(f"| {key} | " + " | ".join(f"{row[label]:g}" for label in labels)
                     + f" | {ratio} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", help="the first message found is sent (default synthetic)")
    p.add_argument("--target-cmd", help="target milter command containing {socket}")
    p.add_argument("--target-name", default="target")
    p.add_argument("--dummy-cpu-ms", type=float, default=2.0)
    p.add_argument("-s", "--sessions", type=int, default=16, help="smtp-source -s (16)")
    p.add_argument("-m", "--messages", type=int, default=2000, help="smtp-source -m (2000)")
    p.add_argument("--reuse", action="store_true", help="smtp-source -d: reuse SMTP sessions")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--transports", default="unix", type=lambda s: s.split(","))
    p.add_argument("--sender", default="bench-sender@example.com")
    p.add_argument("--rcpt", default="bench-rcpt@example.net")
    p.add_argument("--timeout", type=float, default=600.0, help="per smtp-source run")
    p.add_argument("--json", metavar="FILE", help="also write every run here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.target_cmd:
        target_name, target = args.target_name, shlex.split(args.target_cmd)
    else:
        target_name = "dummy"
        target = builtin_command("dummy_milter", ["--cpu-ms", str(args.dummy_cpu_ms)])
    milters = {"none": None, "noop": builtin_command("noop_milter"), target_name: target}
    with tempfile.TemporaryDirectory(prefix="mw-pfbench-") as tmp:
        Path(tmp).chmod(0o755)
        results = run_all(args, milters, Path(tmp))
    print(format_table(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
