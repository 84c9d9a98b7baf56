"""Scan-time measurements for the leak evaluation: typical (real ham) and large messages.

Each large message is built once and scanned ``repeat`` times, each time as a fresh
:class:`~mailwarden.message.Message`, so MIME parsing and extraction are always included.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from bench.leak_eval.carriers import csv_file, docx_file, pdf_file, xlsx_file, zip_file
from bench.leak_eval.values import credit_card, iban
from mailwarden.message import Message


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def large_messages() -> dict[str, bytes]:
    rng = random.Random(7)
    prose = [f"Line {n}: the shipment of {n % 97} units left the warehouse at 10:{n % 60:02d}."
             for n in range(400)]
    values = [credit_card(rng).text for _ in range(10)] + [iban(rng).text for _ in range(10)]
    text = "\n".join(prose)

    def mail(body: str, attachments: dict[str, bytes]) -> bytes:
        outer = MIMEMultipart()
        outer["Subject"] = "large"
        outer.attach(MIMEText(body, "plain", "utf-8"))
        for name, data in attachments.items():
            part = MIMEApplication(data)
            part.add_header("Content-Disposition", "attachment", filename=name)
            outer.attach(part)
        return outer.as_bytes()

    big = (text + "\n") * 33 + "\n".join(values)  # ~1 MB of text
    alternative = MIMEMultipart("alternative")
    alternative["Subject"] = "typical"
    body = "\n".join(prose[:300]) + "\n" + "\n".join(values[:2])  # ~20 KB
    alternative.attach(MIMEText(body, "plain", "utf-8"))
    alternative.attach(MIMEText("<html><body>" + "".join(f"<p>{line}</p>" for line in
                                body.splitlines()) + "</body></html>", "html", "utf-8"))
    rows = (prose * 25)[:10000] + values
    return {
        "text + HTML alternatives": alternative.as_bytes(),
        "1 MB text body": mail(big, {}),
        "1 MB body + 3 MB CSV": mail(big, {"dump.csv": csv_file(rows * 3)}),
        "DOCX, 5,000 paragraphs": mail("see attached", {"long.docx": docx_file(rows[:5000])}),
        "XLSX, 10,000 rows": mail("see attached", {"rows.xlsx": xlsx_file(rows)}),
        "PDF, 1,000 lines": mail("see attached", {"long.pdf": pdf_file(rows[:1000])}),
        "ZIP, 100 x 20 KB text": mail("see attached", {"many.zip": zip_file(
            {f"f{n}.txt": (text[:20000] + values[n % 20]).encode() for n in range(100)})}),
    }


def timed(detector: object, raw: bytes, message: Callable[[bytes], Message]) -> tuple[float, float]:
    """(wall, CPU) seconds of one scan of a fresh message; CPU time is robust to a busy host."""
    wall, cpu = time.perf_counter(), time.thread_time()
    detector.analyse(message(raw))  # type: ignore[attr-defined]
    return time.perf_counter() - wall, time.thread_time() - cpu


def row(name: str, size: str, samples: list[tuple[float, float]], p99: str = "p99") -> str:
    wall, cpu = [w for w, _ in samples], [c for _, c in samples]
    q = 0.99 if p99 == "p99" else 1.0
    return (f"| {name} | {size} | {len(samples)} | {1000 * percentile(wall, 0.5):.2f} / "
            f"{1000 * percentile(wall, q):.2f} | {1000 * percentile(cpu, 0.5):.2f} / "
            f"{1000 * percentile(cpu, q):.2f} |")


def timing_rows(detector: object, ham: list[tuple[float, float]], median_size: int,
                message: Callable[[bytes], Message], repeat: int = 10) -> list[str]:
    out = ["### Scan time per message (MIME parsing and extraction included)", "",
           "Wall clock and CPU time of the scanning thread, p50 / p99 (p50 / max for the large "
           "messages, 10 runs each; the text + HTML message runs 100 times).", "",
           "| messages | size | runs | wall ms | CPU ms |", "|---|---|---|---|---|",
           row("unmodified ham of the split (typical)", f"median {median_size / 1000:.1f} KB", ham)]
    for name, raw in large_messages().items():
        if name.startswith("text + HTML"):
            samples = [timed(detector, raw, message) for _ in range(100)]
            out.append(row(name, f"{len(raw) / 1000:.0f} KB", samples))
            continue
        samples = [timed(detector, raw, message) for _ in range(repeat)]
        out.append(row(name, f"{len(raw) / 1e6:.1f} MB", samples, p99="max"))
    return out
