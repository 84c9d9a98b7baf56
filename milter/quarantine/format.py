"""Text and JSON renderings of held messages for ``mailwarden quarantine list`` and ``show``.

Pure functions from a :class:`~mailwarden.quarantine.review.Entry` (record joined with the
MTA's queue entry) to lines of text or JSON-ready dicts. Findings are shown with their masked
evidence as the detectors wrote it; addresses come from the MTA's queue, never from the store.
"""

from __future__ import annotations

import time
from typing import Any

from mailwarden.quarantine.review import Entry

_COLUMNS = "{:<16} {:>7} {:<19} {:>6}  {:<30} {:<24} {}"


def fmt_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def fmt_time(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))


def summary(entry: Entry) -> str:
    if entry.record is None:
        return "(no mailwarden record: held by something else?)"
    counts: dict[str, int] = {}
    for f in entry.record.findings:
        counts[str(f["type"])] = counts.get(str(f["type"]), 0) + int(f.get("count", 1))
    types = ",".join(f"{t}={n}" for t, n in sorted(counts.items())) or "policy"
    return f"{types} ({','.join(entry.record.detectors)})"


def _sender(entry: Entry) -> str:
    if entry.queued is not None:
        return entry.queued.sender or "<>"
    return f"@{entry.record.sender_domain}" if entry.record else "?"


def _recipients(entry: Entry) -> str:
    if entry.queued is not None and entry.queued.recipients:
        more = len(entry.queued.recipients) - 1
        return entry.queued.recipients[0] + (f" +{more}" if more else "")
    if entry.record is not None:
        return f"{len(entry.record.recipient_hashes)} rcpt"
    return "?"


def _state(entry: Entry) -> str:
    state = entry.record.state if entry.record else "held"
    if state == "held" and entry.mta_state not in ("hold", "unknown"):
        return "missing" if entry.queued is None else entry.mta_state
    return state


def header_line() -> str:
    return _COLUMNS.format("QUEUE ID", "AGE", "STATE", "SCORE", "SENDER", "RECIPIENTS",
                           "FINDINGS (DETECTORS)")


def entry_line(entry: Entry, now: float) -> str:
    score = f"{entry.record.score:.2f}" if entry.record else "-"
    return _COLUMNS.format(entry.queue_id, fmt_age(now - entry.held_at), _state(entry), score,
                           _sender(entry)[:30], _recipients(entry)[:24], summary(entry))


def entry_json(entry: Entry, now: float) -> dict[str, Any]:
    r, q = entry.record, entry.queued
    out: dict[str, Any] = {
        "queue_id": entry.queue_id, "held_at": entry.held_at,
        "age_seconds": round(now - entry.held_at, 1), "state": _state(entry),
        "mta_queue": entry.mta_state, "sender_domain": entry.sender_domain,
    }
    if q is not None:
        out.update(sender=q.sender, recipients=list(q.recipients), size=q.size)
    if r is not None:
        out.update(ref=r.ref, verdict=r.verdict, score=r.score, detectors=list(r.detectors),
                   types=list(r.types), reasons=list(r.reasons), record_state=r.state,
                   reviewed_by=r.state_by, note=r.note)
    return out


def show_json(entry: Entry, content: bytes | None, body: bool, now: float) -> dict[str, Any]:
    out = entry_json(entry, now)
    if entry.record is not None:
        out.update(findings=list(entry.record.findings), scores=entry.record.scores,
                   models=entry.record.models, mode=entry.record.mode)
    if content is not None:
        head, _, rest = content.replace(b"\r\n", b"\n").partition(b"\n\n")
        out["headers"] = head.decode("utf-8", "replace")
        if body:
            out["body"] = rest.decode("utf-8", "replace")
    return out


def show_text(entry: Entry, content: bytes | None, body: bool, now: float) -> str:
    lines = [f"queue id:    {entry.queue_id}"]
    r, q = entry.record, entry.queued
    if r is not None:
        lines += [f"reference:   {r.ref}",
                  f"held at:     {fmt_time(r.created)} ({fmt_age(now - r.created)} ago)",
                  f"state:       {_state(entry)} (MTA queue: {entry.mta_state})"]
        if r.state != "held":
            lines.append(f"reviewed:    {r.state} by {r.state_by or '?'}"
                         + (f" at {fmt_time(r.state_at)}" if r.state_at else "")
                         + (f": {r.note}" if r.note else ""))
    else:
        lines.append("record:      none (this message was not held by mailwarden)")
    if q is not None:
        lines += [f"sender:      {q.sender or '<>'}",
                  f"recipients:  {', '.join(q.recipients)}", f"size:        {q.size} bytes"]
    elif r is not None:
        lines.append(f"sender:      @{r.sender_domain} (message no longer queued)")
    if r is not None:
        lines += _record_lines(r.verdict, r.mode, r.score, r.reasons, r.findings, r.scores,
                               r.models)
    if content is not None:
        text = content.decode("utf-8", "replace").replace("\r\n", "\n")
        head, _, rest = text.partition("\n\n")
        lines += ["--- headers ---", head.rstrip("\n")]
        if body:
            lines += ["--- body ---", rest.rstrip("\n")]
        else:
            lines.append("--- body not shown (use --body) ---")
    return "\n".join(lines) + "\n"


def _record_lines(verdict: str, mode: str, score: float, reasons: tuple[str, ...],
                  findings: tuple[dict[str, Any], ...], scores: dict[str, float],
                  models: dict[str, str]) -> list[str]:
    lines = [f"verdict:     {verdict} (mode {mode}), score {score:.2f}"]
    lines += [f"reason:      {reason}" for reason in reasons]
    lines.append(f"findings:    {len(findings)}")
    for f in findings:
        lines.append(f"  - {f.get('detector')}: {f.get('type')} x{f.get('count', 1)} "
                     f"score {float(f.get('score', 0)):.2f} {f.get('confidence', '')} "
                     f"at {f.get('location', '?')}: {f.get('evidence', '')}".rstrip(": "))
    if scores:
        lines.append("scores:      " + ", ".join(f"{k}={v:g}" for k, v in sorted(scores.items())))
    for name, version in sorted(models.items()):
        lines.append(f"model:       {name}: {version or '-'}")
    return lines
