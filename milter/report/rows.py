"""The audit log read back as rows: what ``mailwarden report`` aggregates and draws.

:mod:`mailwarden.report.page` summarises these rows into the HTML page and
:mod:`mailwarden.report.plots` draws them; a row holds only what the audit log recorded (no
subject, content or recipient address).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mailwarden.detectors.sending.names import FINDING_TYPE, SCORE

ANOMALY_KEY = SCORE
ANOMALY_TYPE = FINDING_TYPE
NOT_RECORDED = "(not recorded)"


@dataclass(frozen=True, slots=True)
class Row:
    """One audit record, reduced to what the report uses."""

    at: datetime
    direction: str
    verdict: str
    action: str
    mode: str
    sender: str
    findings: tuple[tuple[str, int], ...]
    reasons: tuple[str, ...]
    anomaly: float | None
    errors: int


def parse_row(record: dict[str, Any]) -> Row:
    findings = tuple((str(f["type"]), int(f.get("count", 1))) for f in record.get("findings", []))
    reasons = tuple(str(r) for f in record.get("findings", []) for r in f.get("reasons", []))
    anomaly = record.get("scores", {}).get(ANOMALY_KEY)
    return Row(
        at=datetime.fromisoformat(str(record["time"])),
        direction=str(record.get("direction", "outbound")),
        verdict=str(record["verdict"]), action=str(record.get("action", record["verdict"])),
        mode=str(record.get("mode", "")), sender=str(record.get("sender") or NOT_RECORDED),
        findings=findings, reasons=reasons,
        anomaly=None if anomaly is None else float(anomaly),
        errors=len(record.get("errors", [])),
    )


def lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
        yield from stream


def read_rows(paths: Iterable[Path]) -> tuple[list[Row], int]:
    """All readable records sorted by time, and the number of lines that could not be read."""
    rows, bad = [], 0
    for path in paths:
        for line in lines(path):
            if not line.strip():
                continue
            try:
                rows.append(parse_row(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError):
                bad += 1
    rows.sort(key=lambda r: r.at)
    return rows, bad
