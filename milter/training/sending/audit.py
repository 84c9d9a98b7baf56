"""Training the sending models from the installation's own audit log, and saying what changed.

``mailwarden train --sending /var/lib/mailwarden/audit.jsonl`` (the packaged
``mailwarden-train-sending`` timer runs it) reads the audit log the daemon writes
(:mod:`mailwarden.sinks.audit`: time, keyed-hashed sender, recipient count and domains, size; never
content or recipient addresses) as sending events, so the shipped model is only a starting prior
and each installation learns its own organisation. Recipients are known only by domain, so a
message to ``n`` recipients becomes ``n`` recipients spread over its domains: novelty is learned
per domain. Messages that were held, refused or deferred, or sent by a held sender, are left out:
an attacker's mail must not become normal. :func:`write_change_report` writes
``sending-train-report.txt`` next to the model: what the new model learnt against the previous
one (messages, senders, the org's new-sender peaks, the per-behaviour 99.9th percentiles).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from mailwarden.detectors.sending.baseline import BEHAVIOURS
from mailwarden.detectors.sending.features import SendEvent
from mailwarden.detectors.sending.names import HELD_SCORE

SKIPPED_ACTIONS = ("quarantine", "reject", "tempfail")
PEAK_NAMES = ("messages/h", "messages/24h", "recipients/h", "new recipients/h", "messages/10min",
              "rate over 5 messages")


def is_audit_log(path: Path) -> bool:
    return path.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.1"))


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:  # type: ignore[operator]
        yield from handle


def _event(record: dict[str, Any]) -> SendEvent | None:
    if record.get("direction") != "outbound" or record.get("action") in SKIPPED_ACTIONS:
        return None
    if (record.get("scores") or {}).get(HELD_SCORE):
        return None
    sender, domain = record.get("sender"), str(record.get("sender_domain") or "")
    count = int(record.get("recipients") or 0)
    if not sender or not count or not record.get("time"):
        return None
    domains = [str(d) for d in record.get("recipient_domains") or []] or [domain or "unknown"]
    rcpts = tuple(f"r{i}@{domains[i % len(domains)]}" for i in range(count))
    at = datetime.fromisoformat(str(record["time"])).timestamp()
    return SendEvent(at, f"{sender}@{domain}" if domain else str(sender), rcpts,
                     int(record.get("size") or 0))


def events_from_audit(path: Path) -> list[SendEvent]:
    """Outbound, delivered messages of an audit log; unreadable lines are skipped."""
    events = []
    for line in _lines(path):
        try:
            event = _event(json.loads(line))
        except (ValueError, TypeError, KeyError):
            continue
        if event is not None:
            events.append(event)
    return events


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((model_dir / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data


def _p999(manifest: dict[str, Any] | None) -> list[float]:
    points = ((manifest or {}).get("tails") or {}).get("points") or []
    return [float(row[-1]) for row in points[: len(BEHAVIOURS)]]


def change_report(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    training = new.get("training", {})
    lines = [f"sending model trained {new.get('trained_at', '?')} from {training.get('source')}",
             f"messages {training.get('messages')}, senders {training.get('senders')}"]
    if old is None:
        lines.append("previous model: none (first local training)")
    else:
        was = old.get("training", {})
        lines.append(f"previous model: {old.get('trained_at', '?')} from {was.get('source')} "
                     f"({was.get('messages')} messages)")
    old_peaks = ((old or {}).get("prior") or {}).get("new_peaks") or []
    new_peaks = new.get("prior", {}).get("new_peaks") or []
    lines.append("new senders usually peak at (previous -> now):")
    for i, name in enumerate(PEAK_NAMES[: len(new_peaks)]):
        before = f"{old_peaks[i]:.1f}" if i < len(old_peaks) else "-"
        lines.append(f"  {name}: {before} -> {new_peaks[i]:.1f}")
    lines.append("99.9th percentile of each behaviour's deviation (previous -> now):")
    was_p, now_p = _p999(old), _p999(new)
    for i, name in enumerate(BEHAVIOURS[: len(now_p)]):
        was_text = f"{was_p[i]:.2f}" if i < len(was_p) else "-"
        lines.append(f"  {name}: {was_text} -> {now_p[i]:.2f}")
    return "\n".join(lines) + "\n"


def write_change_report(model_dir: Path, old: dict[str, Any] | None) -> Path:
    new = read_manifest(model_dir) or {}
    path = model_dir / "sending-train-report.txt"
    path.write_text(change_report(old, new), "utf-8")
    return path
