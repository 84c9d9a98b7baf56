"""How a milter's cost grows with message size, attachment count and recipient count.

Part of the bench harness. It starts the target milter (any command with ``{socket}``, as for
``run_bench.py``) on a unix socket and drives it with ``miltergen.run_load`` at concurrency 1,
one series at a time, so each row is the cost of one kind of message alone:

- **size**: a text message of 1 KB .. 10 MB (bodies of real corpus ham concatenated, so tokens and
  leak candidates are as in real mail);
- **attachments**: a 4 KB text body plus 0 .. 32 attachments of 32 KB each, alternating a text
  file and random binary data (base64);
- **recipients**: a 4 KB message to 1 .. 500 recipients (one RCPT each, as the MTA sends them).

Reported per row: milter CPU per message (whole process tree), latency p50 and max (from the
first byte of the connection to the end-of-message reply), and the CPU per KB or per
attachment/recipient, from which linear growth can be read. Timings are reported, never asserted.

Usage: ``.venv/bin/python bench/cost_bench.py --target-cmd "CMD {socket}" [--json out.json]
[--series size,attachments,recipients] [-t SECONDS] PATH...`` (PATH: the corpus the text comes
from, default SpamAssassin easy_ham).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import shlex
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from miltergen import LoadConfig, run_load
from milterload import PreparedMessage, prepare
from milterprocs import running, socket_spec

from mailwarden.files.sources import iter_sources

SIZES_KB = (1, 4, 16, 64, 256, 1024, 4096, 10240)
ATTACHMENTS = (0, 1, 2, 4, 8, 16, 32)
RECIPIENTS = (1, 10, 50, 100, 250, 500)
SENDER = "cost-bench@example.org"


def corpus_text(paths: Sequence[str], limit: int = 400) -> str:
    """Bodies of real messages (headers dropped), joined: the filler for every message."""
    parts = []
    for i, raw in enumerate(iter_sources(paths)):
        if i >= limit:
            break
        parts.append(raw.data.partition(b"\n\n")[2].decode("latin-1"))
    return "\n".join(parts)


def text_message(text: str, size: int, tag: str) -> bytes:
    head = (f"From: Bench <{SENDER}>\nTo: someone@example.net\nSubject: cost {tag}\n"
            f"Message-ID: <{tag}@example.org>\nContent-Type: text/plain; charset=latin-1\n\n")
    body = (text * (size // max(len(text), 1) + 1))[: max(size - len(head), 0)]
    return (head + body).encode("latin-1")


def attachment_message(text: str, count: int, tag: str, rng: random.Random) -> bytes:
    boundary = "==bench-boundary=="
    lines = [f"From: Bench <{SENDER}>", "To: someone@example.net", f"Subject: cost {tag}",
             f"Message-ID: <{tag}@example.org>", "MIME-Version: 1.0",
             f'Content-Type: multipart/mixed; boundary="{boundary}"', "",
             f"--{boundary}", "Content-Type: text/plain; charset=latin-1", "", text[:4096]]
    for i in range(count):
        if i % 2 == 0:
            payload = text[i * 997 % max(len(text) - 32768, 1):][:32768].encode("latin-1")
            kind, name = "text/plain", f"notes-{i}.txt"
        else:
            payload = rng.randbytes(32768)
            kind, name = "application/octet-stream", f"blob-{i}.bin"
        encoded = base64.encodebytes(payload).decode("ascii")
        lines += [f"--{boundary}", f"Content-Type: {kind}; name={name}",
                  "Content-Transfer-Encoding: base64",
                  f"Content-Disposition: attachment; filename={name}", "", encoded]
    lines.append(f"--{boundary}--")
    return "\n".join(lines).encode("latin-1")


def cases(series: str, text: str) -> list[tuple[str, int, list[PreparedMessage]]]:
    """(label, x, messages): a few distinct messages per row (subjects and IDs differ)."""
    rng = random.Random(8)
    out = []
    if series == "size":
        for kb in SIZES_KB:
            msgs = [prepare(f"size{kb}", text_message(text, kb * 1024, f"s{kb}-{i}"), SENDER,
                            ["someone@example.net"]) for i in range(3)]
            out.append((f"{kb} KB", kb, msgs))
    elif series == "attachments":
        for n in ATTACHMENTS:
            msgs = [prepare(f"att{n}", attachment_message(text, n, f"a{n}-{i}", rng), SENDER,
                            ["someone@example.net"]) for i in range(3)]
            out.append((f"{n} attachments", n, msgs))
    else:
        for n in RECIPIENTS:
            rcpts = [f"user{j}@{'example.net' if j % 3 else f'd{j % 17}.example'}"
                     for j in range(n)]
            msgs = [prepare(f"rcpt{n}", text_message(text, 4096, f"r{n}-{i}"), SENDER, rcpts)
                    for i in range(3)]
            out.append((f"{n} recipients", n, msgs))
    return out


def measure(spec: str, messages: list[PreparedMessage], seconds: float) -> dict[str, float]:
    """Messages sent one after another for ``seconds`` (at least one round of ``messages``):
    long enough for the 10 ms resolution of /proc CPU times."""
    run_load(LoadConfig(socket=spec, concurrency=1, messages=len(messages),
                        measure_process=False, timeout=120.0), messages)  # warm caches
    report = run_load(LoadConfig(socket=spec, concurrency=1, seconds=seconds, timeout=120.0),
                      messages)
    count = int(str(report["messages"]))
    lat = report["latency_ms"]
    proc = report["milter_process"]
    assert isinstance(lat, dict) and isinstance(proc, dict)
    return {"messages": count, "errors": float(str(report["errors"])),
            "cpu_ms": float(proc.get("cpu_ms_per_message", 0.0)),
            "p50_ms": float(lat["p50"]), "max_ms": float(lat["max"]),
            "bytes": statistics.mean(m.size for m in messages)}


def run_series(args: argparse.Namespace, text: str, workdir: Path) -> dict[str, list[dict]]:
    spec = socket_spec("unix", workdir, "cost")
    command = shlex.split(args.target_cmd.replace("{socket}", spec))
    results: dict[str, list[dict]] = {}
    with running(command, spec, workdir / "target.log", args.ready_timeout):
        for series in args.series:
            rows = []
            for label, x, msgs in cases(series, text):
                row = {"series": series, "case": label, "x": x,
                       **measure(spec, msgs, args.seconds)}
                print(f"{series:12s} {label:16s} cpu {row['cpu_ms']:9.2f} ms/msg  p50 "
                      f"{row['p50_ms']:9.2f} ms  max {row['max_ms']:9.2f} ms  "
                      f"({row['messages']} msgs, {row['bytes'] / 1024:.0f} KiB)", file=sys.stderr)
                rows.append(row)
            results[series] = rows
    return results


def table(rows: list[dict], unit: str) -> str:
    lines = [f"| case | KiB | milter CPU ms/msg | p50 ms | max ms | CPU ms per {unit} |",
             "|---|---:|---:|---:|---:|---:|"]
    base = rows[0]["cpu_ms"]
    for r in rows:
        per = ((r["cpu_ms"] - base) / (r["x"] - rows[0]["x"])) if r["x"] != rows[0]["x"] else 0.0
        lines.append(f"| {r['case']} | {r['bytes'] / 1024:.0f} | {r['cpu_ms']:.2f} | "
                     f"{r['p50_ms']:.2f} | {r['max_ms']:.1f} | {per:.4f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", default=[
        "/work/shared/corpora/spamassassin/easy_ham.tar.gz"])
    p.add_argument("--target-cmd", required=True, help="milter command containing {socket}")
    p.add_argument("--series", default="size,attachments,recipients",
                   type=lambda s: s.split(","))
    p.add_argument("-t", "--seconds", type=float, default=4.0, help="per row (4)")
    p.add_argument("--ready-timeout", type=float, default=120.0)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    text = corpus_text(args.paths)
    with tempfile.TemporaryDirectory(prefix="mw-cost-") as tmp:
        results = run_series(args, text, Path(tmp))
    units = {"size": "KB above 1 KB", "attachments": "attachment", "recipients": "recipient"}
    for series, rows in results.items():
        print(f"\n### {series}\n\n{table(rows, units[series])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
