"""Aggregate and print what a load-generator run measured.

The bench load generator (``miltergen.py``) collects, per worker thread, each message's latency
and outcome plus the commands sent and replies read; this module merges them into one report (a
plain dict, printed as JSON with ``--json`` and reused by ``run_bench.py``) and formats it for
people: messages/s, latency percentiles (nearest rank), verdict counts, the milter process's CPU
per message and RSS, and the generator's own CPU, to show it was not the bottleneck.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from miltersession import Outcome, Tally
from procstat import ProcessReport


@dataclass
class WorkerResult:
    latencies: list[float] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    mean = sum(ordered) / len(ordered) if ordered else 0.0
    summary = {f"p{q}": percentile(ordered, q) * 1000 for q in (50, 95, 99)}
    summary.update({"max": (ordered[-1] if ordered else 0.0) * 1000, "mean": mean * 1000})
    return {key: round(value, 3) for key, value in summary.items()}


def outcome_counts(outcomes: Sequence[Outcome]) -> dict[str, dict[str, int]]:
    verdicts: Counter[str] = Counter(o.verdict for o in outcomes)
    stages: Counter[str] = Counter(o.stage for o in outcomes if o.verdict != "error")
    mods: Counter[str] = Counter(m for o in outcomes for m in o.modifications)
    codes: Counter[str] = Counter(o.replycode for o in outcomes if o.replycode)
    errors: Counter[str] = Counter(o.error for o in outcomes if o.error)
    quarantined = sum(1 for o in outcomes if o.quarantined)
    return {"verdicts": dict(verdicts), "decided_at": dict(stages), "modifications": dict(mods),
            "replycodes": dict(codes), "error_types": dict(errors),
            "quarantined": {"messages": quarantined}}


def process_section(report: ProcessReport | None, messages: int, wall: float) -> dict[str, object]:
    if report is None:
        return {}
    return {
        "pid": report.pid, "cpu_seconds": round(report.cpu_seconds, 3),
        "cpu_ms_per_message": round(report.cpu_seconds / messages * 1000, 4) if messages else 0,
        "cpu_utilisation": round(report.cpu_seconds / wall, 3) if wall else 0,
        "rss_start_kib": report.rss_start_kib, "rss_end_kib": report.rss_end_kib,
        "rss_max_kib": report.rss_max_kib, "threads_max": report.threads_max,
        "processes": report.processes, "pss_end_kib": report.pss_end_kib,
    }


def build_report(settings: dict[str, object], results: Sequence[WorkerResult], wall: float,
                 proc: ProcessReport | None, generator_cpu: float,
                 negotiated: dict[str, object] | None) -> dict[str, object]:
    latencies = [lat for r in results for lat in r.latencies]
    outcomes = [o for r in results for o in r.outcomes]
    tally = Tally()
    for r in results:
        tally.merge(r.tally)
    done = len(outcomes)
    counts = outcome_counts(outcomes)
    errors = sum(counts["error_types"].values())
    return {
        "settings": settings, "messages": done, "errors": errors, "wall_seconds": round(wall, 3),
        # Throughput counts messages that got a verdict; failed attempts are only in "errors".
        "messages_per_second": round((done - errors) / wall, 2) if wall else 0.0,
        "latency_ms": latency_summary(latencies), **counts,
        "commands_sent": dict(tally.sent), "replies_read": dict(tally.replies),
        "negotiated": negotiated or {},
        "milter_process": process_section(proc, done, wall),
        "generator": {
            "cpu_seconds": round(generator_cpu, 3),
            "cpu_ms_per_message": round(generator_cpu / done * 1000, 4) if done else 0,
            "cpu_utilisation": round(generator_cpu / wall, 3) if wall else 0,
        },
    }


def _counts(mapping: object) -> str:
    if not isinstance(mapping, dict) or not mapping:
        return "-"
    return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items()))


def format_report(report: dict[str, object]) -> str:
    settings = report["settings"]
    assert isinstance(settings, dict)
    lat = report["latency_ms"]
    assert isinstance(lat, dict)
    lines = [
        f"milter {settings['socket']}  concurrency {settings['concurrency']}  "
        f"messages/connection {settings['per_connection']}",
        f"messages {report['messages']} in {report['wall_seconds']} s: "
        f"{report['messages_per_second']} msg/s   errors {report['errors']} "
        f"({_counts(report['error_types'])})",
        f"latency ms (first message: socket connect -> EOM reply, others MAIL -> EOM reply): "
        f"p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}  "
        f"mean {lat['mean']}",
        f"verdicts: {_counts(report['verdicts'])}   decided at: {_counts(report['decided_at'])}",
        f"quarantined: {_counts(report['quarantined'])}   modifications: "
        f"{_counts(report['modifications'])}   reply codes: {_counts(report['replycodes'])}",
        f"commands sent: {_counts(report['commands_sent'])}",
        f"replies read: {_counts(report['replies_read'])}",
    ]
    lines += _process_lines(report)
    return "\n".join(lines)


def _process_lines(report: dict[str, object]) -> list[str]:
    lines = []
    proc = report["milter_process"]
    if isinstance(proc, dict) and proc:
        lines.append(
            f"milter pid {proc['pid']}: cpu {proc['cpu_seconds']} s = "
            f"{proc['cpu_ms_per_message']} ms/message ({proc['cpu_utilisation']:.0%} of a core), "
            f"rss {proc['rss_start_kib']} -> {proc['rss_end_kib']} KiB "
            f"(max {proc['rss_max_kib']}), threads max {proc['threads_max']}"
            + (f", {proc['processes']} processes (RSS summed; PSS {proc['pss_end_kib']} KiB)"
               if proc.get("processes", 1) != 1 else ""))
    else:
        lines.append("milter process: not found (give --pid to measure its CPU and memory)")
    gen = report["generator"]
    assert isinstance(gen, dict)
    lines.append(f"generator: cpu {gen['cpu_seconds']} s = {gen['cpu_ms_per_message']} "
                 f"ms/message ({gen['cpu_utilisation']:.0%} of a core)")
    settings = report["settings"]
    if isinstance(settings, dict) and "loadavg" in settings:
        lines.append(f"load average (1 min) before/after: {settings['loadavg']}")
    return lines
