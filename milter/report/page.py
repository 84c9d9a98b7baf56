"""``mailwarden report``: an audit log turned into a static HTML page with figures.

It reads the JSON lines written by :mod:`mailwarden.sinks.audit` (plain or gzip-compressed
rotations, several files in any order), aggregates them (:class:`Summary`), draws the figures with
:mod:`mailwarden.report.plots` (volume, verdicts, findings and sending-anomaly scores over time) and
writes ``index.html`` with the PNGs beside it: a summary, the figures, the top anomalous senders (as
the audit log recorded them: keyed hashes by default) and the models seen. The page needs no script
and no network, so it can be mailed or archived as a directory.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mailwarden.report.rows import ANOMALY_TYPE, Row, lines, read_rows


@dataclass(slots=True)
class SenderStats:
    messages: int = 0
    anomalous: int = 0
    max_score: float = 0.0
    last: datetime | None = None
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Summary:
    rows: list[Row]
    skipped: int
    verdicts: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    directions: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    senders: dict[str, SenderStats] = field(default_factory=dict)
    errors: int = 0

    @classmethod
    def of(cls, rows: list[Row], skipped: int, anomalous_above: float) -> Summary:
        s = cls(rows, skipped)
        for r in rows:
            s.verdicts[r.verdict] += 1
            s.actions[r.action] += 1
            s.directions[r.direction] += 1
            s.errors += 1 if r.errors else 0
            for kind, count in r.findings:
                s.findings[kind] += count
            stats = s.senders.setdefault(r.sender, SenderStats())
            stats.messages += 1
            stats.last = r.at
            flagged = any(k == ANOMALY_TYPE for k, _ in r.findings) or (
                r.anomaly is not None and r.anomaly > anomalous_above)
            stats.anomalous += 1 if flagged else 0
            stats.max_score = max(stats.max_score, r.anomaly or 0.0)
            stats.reasons.update(r.reasons)
        return s

    def top_senders(self, limit: int) -> list[tuple[str, SenderStats]]:
        ranked = [(k, v) for k, v in self.senders.items() if v.anomalous or v.max_score > 0]
        ranked.sort(key=lambda kv: (-kv[1].anomalous, -kv[1].max_score, kv[0]))
        return ranked[:limit]


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    thead = f"<thead><tr>{head}</tr></thead>" if headers else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="{cls}">{thead}<tbody>{body}</tbody></table>'


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "none"


def summary_html(s: Summary) -> str:
    first, last = (s.rows[0].at, s.rows[-1].at) if s.rows else (None, None)
    period = f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC" if first and last else "-"
    rows = [["Messages", str(len(s.rows))], ["Period", period],
            ["Verdicts (policy)", _counts(s.verdicts)], ["Applied actions", _counts(s.actions)],
            ["Directions", _counts(s.directions)], ["Findings", _counts(s.findings)],
            ["Messages with detector errors", str(s.errors)],
            ["Unreadable lines skipped", str(s.skipped)]]
    return _table([], rows, "summary")


def senders_html(s: Summary, limit: int) -> str:
    top = s.top_senders(limit)
    if not top:
        return "<p>No sender had an anomaly score in this log.</p>"
    rows = [[sender, str(st.messages), str(st.anomalous), f"{st.max_score:.3f}",
             ", ".join(r for r, _ in st.reasons.most_common(3)) or "-",
             f"{st.last:%Y-%m-%d %H:%M}" if st.last else "-"] for sender, st in top]
    return _table(["Sender (as logged)", "Messages", "Anomalous", "Max score", "Top reasons",
                   "Last seen"], rows, "senders")


def models_html(paths: Iterable[Path]) -> str:
    seen: Counter[tuple[str, str, str, str]] = Counter()
    for path in paths:
        for line in lines(path):
            try:
                models = json.loads(line).get("models", {})
            except (ValueError, AttributeError):
                continue
            for name, m in models.items() if isinstance(models, dict) else ():
                seen[(name, str(m.get("model", "")), str(m.get("version", "")),
                      str(m.get("trained", "")))] += 1
    rows = [[*key, str(n)] for key, n in sorted(seen.items())]
    return _table(["Detector", "Model", "Version", "Trained", "Messages"], rows, "models")


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mailwarden report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:4px 8px;
text-align:left}}th{{background:#eee}}img{{max-width:100%;border:1px solid #ddd}}
figure{{margin:1em 0}}</style></head><body>
<h1>mailwarden report</h1>
<p>From {sources}. Senders appear as the audit log recorded them (keyed hashes unless configured
otherwise); the log holds no subject, content or recipient address.</p>
<section id="summary"><h2>Summary</h2>{summary}</section>
{figures}
<section id="senders"><h2>Top anomalous senders</h2>{senders}</section>
<section id="models"><h2>Models</h2>{models}</section>
</body></html>
"""


def render(paths: list[Path], out: Path, top: int = 20, anomalous_above: float = 0.6) -> Path:
    # matplotlib only when a report is drawn: every other command parses its flags from here.
    from mailwarden.report.plots import FIGURES, draw_all

    rows, skipped = read_rows(paths)
    summary = Summary.of(rows, skipped, anomalous_above)
    out.mkdir(parents=True, exist_ok=True)
    draw_all(rows, out)
    figures = "\n".join(
        f'<section id="{name}"><h2>{html.escape(title)}</h2><figure><img src="{name}.png" '
        f'alt="{html.escape(title)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        f"</section>" for name, title, caption in FIGURES)
    page = PAGE.format(sources=html.escape(", ".join(p.name for p in paths)),
                       summary=summary_html(summary), figures=figures,
                       senders=senders_html(summary, top), models=models_html(paths))
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="HTML summary with figures of an audit log")
    p.add_argument("paths", nargs="+", type=Path, metavar="AUDIT.jsonl",
                   help="audit log files (rotated .gz files too)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    p.add_argument("--top", type=int, default=20, help="anomalous senders listed (default 20)")
    p.add_argument("--anomalous-above", type=float, default=0.6,
                   help="sending-anomaly score counted as anomalous (default 0.6)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    try:
        index = render(list(args.paths), args.output, args.top, args.anomalous_above)
    except ImportError as exc:  # matplotlib is only needed here, not by the daemon
        print(f"mailwarden report: {exc.name or exc} is missing (Debian: apt install "
              "python3-matplotlib)", file=sys.stderr)
        return 1
    print(index, file=sys.stdout)
    return 0
