"""Third-party document readers cut off at the extraction deadline (no scan thread lost for good).

Debian 12's pypdf 3.4.1 loops forever on a page dictionary left open before ``endobj`` (found by
the archive/document fuzzing of ``test_fuzz_mime.py``). The engine's per-message budget only stops
*waiting* for such a scan; the thread would spin on, and after ``workers`` of them every message
would be accepted unscanned. :func:`mailwarden.detectors.text.extract.reader_deadline` raises inside
the reader at the extraction deadline instead; these tests pin that down.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mailbuild import tiny_pdf
from reliability_tools import CARD, base64_part, default_config, multipart, snapshot, text_part

from mailwarden.detectors.text.extract import (
    DEFAULT_LIMITS,
    Collector,
    ExtractLimits,
    ReaderOutOfTime,
    extract,
    reader_deadline,
)
from mailwarden.engine import Engine
from mailwarden.metrics import Metrics


def hanging_pdf() -> bytes:
    """The page dictionary's closing ``>>`` missing: pypdf 3.x reads ``endobj`` as a null key
    and a null value without consuming it, over and over."""
    pdf = tiny_pdf(["quarterly text"])
    assert pdf.count(b">> >> >>\nendobj") == 1
    return pdf.replace(b">> >> >>\nendobj", b">> >>\nendobj")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    eng = Engine(default_config(tmp_path_factory.mktemp("state")), Metrics())
    yield eng
    eng.close()


def test_damaged_pdf_is_cut_off_and_the_scan_completes(engine: Engine) -> None:
    data = multipart([text_part(CARD), base64_part(hanging_pdf(), "statement.pdf")])
    message = snapshot(data)
    started = time.monotonic()
    decision = engine.scan_within_budget(message)
    elapsed = time.monotonic() - started
    # The scan's own decision (not the budget's fail-open one): its thread has returned.
    assert not decision.errors, decision.errors
    assert elapsed < DEFAULT_LIMITS.max_seconds + 1.5 < engine.config.milter.timeout_seconds
    assert "credit_card" in {f.type for f in decision.findings}
    extraction = extract(message)
    # Debian's pypdf 3.4 is cut off; current pypdf repairs the dictionary and reads the page.
    read = {p.location: p.text for p in extraction.parts}.get("attachment:statement.pdf", "")
    assert "quarterly text" in read or dict(extraction.unscannable)[
        "attachment:statement.pdf"].startswith("pdf reader ran out of time")


def test_reader_deadline_interrupts_a_python_loop_that_swallows_exceptions() -> None:
    col = Collector(ExtractLimits(max_seconds=0.2))
    started = time.monotonic()

    def step() -> int:
        return 1

    def stubborn() -> None:
        while True:
            try:
                step()
            except Exception:  # what the readers do
                continue

    with pytest.raises(ReaderOutOfTime), reader_deadline(col):
        stubborn()
    assert 0.2 <= time.monotonic() - started < 2.0
    assert sys.gettrace() is None


def test_reader_deadline_keeps_a_previous_tracer_and_lets_fast_code_finish() -> None:
    seen: list[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> None:
        seen.append(frame.f_code.co_name)

    def work() -> int:
        return sum(range(10))

    sys.settrace(tracer)
    try:
        with reader_deadline(Collector(ExtractLimits(max_seconds=5.0))):
            assert work() == 45
    finally:
        restored = sys.gettrace()
        sys.settrace(None)
    assert restored is tracer
    assert "work" in seen  # the previous tracer still saw the calls made under the deadline
