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
    rows = (prose * 25)[:10000] + values
    return {
        "1 MB text body": mail(big, {}),
        "1 MB body + 3 MB CSV": mail(big, {"dump.csv": csv_file(rows * 3)}),
        "DOCX, 5,000 paragraphs": mail("see attached", {"long.docx": docx_file(rows[:5000])}),
        "XLSX, 10,000 rows": mail("see attached", {"rows.xlsx": xlsx_file(rows)}),
        "PDF, 1,000 lines": mail("see attached", {"long.pdf": pdf_file(rows[:1000])}),
        "ZIP, 100 x 20 KB text": mail("see attached", {"many.zip": zip_file(
            {f"f{n}.txt": (text[:20000] + values[n % 20]).encode() for n in range(100)})}),
    }


def timing_rows(detector: object, ham_times: list[float],
                message: Callable[[bytes], Message], repeat: int = 10) -> list[str]:
    out = ["### Scan time per message (extraction included)", "",
           "| messages | size | runs | p50 ms | p99 ms |", "|---|---|---|---|---|",
           f"| unmodified ham of the split (typical) | median ~4 KB | {len(ham_times)} | "
           f"{1000 * percentile(ham_times, 0.5):.2f} | {1000 * percentile(ham_times, 0.99):.2f} |"]
    for name, raw in large_messages().items():
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            detector.analyse(message(raw))  # type: ignore[attr-defined]
            times.append(time.perf_counter() - started)
        out.append(f"| {name} | {len(raw) / 1e6:.1f} MB | {repeat} | "
                   f"{1000 * percentile(times, 0.5):.0f} | {1000 * max(times):.0f} (max) |")
    return out
