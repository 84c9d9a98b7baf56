"""What every reader of message text shares: the collected parts, the limits and the deadline.

:mod:`.extract` walks the MIME tree and :mod:`.documents` and :mod:`.archives` read attachments;
all of them add text to one :class:`Collector`, which enforces :class:`ExtractLimits` (sizes,
depth, parts, time) and records what could not be read. The collector also carries the function
that reads one attachment (``read_attachment``), so that an archive member is read the same way
as a top-level attachment without the readers importing each other in a circle.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from mailwarden.detectors.text.decoding import normalise

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text of one part, at ``body``, ``html``, ``attachment:NAME`` or ``attachment:a.zip/b``."""

    location: str
    text: str
    kind: str  # "body" | "html" | "attachment"


@dataclass(frozen=True, slots=True)
class Extraction:
    parts: tuple[TextPart, ...]
    unscannable: tuple[tuple[str, str], ...]  # (location, reason)

    def text(self, kinds: tuple[str, ...] | None = None) -> str:
        """The text of the parts of the given kinds (all when None), joined by newlines."""
        return "\n".join(p.text for p in self.parts if kinds is None or p.kind in kinds)


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    """Hard limits for one message; reaching one makes an ``unscannable`` entry."""

    max_depth: int = 8  # MIME multipart / embedded message / archive nesting
    max_parts: int = 300  # MIME entities plus archive members
    max_part_bytes: int = 10 * MiB  # decoded (or uncompressed) bytes of one part or member
    max_total_bytes: int = 40 * MiB  # decoded plus uncompressed bytes of the whole message
    max_archive_members: int = 200  # members of one archive
    max_ratio: float = 200.0  # uncompressed / compressed size of one member (zip bombs)
    ratio_floor_bytes: int = 1 * MiB  # the ratio is only checked above this uncompressed size
    max_archive_bytes: int = 40 * MiB  # declared uncompressed size of one archive's members
    # Text kept for the detectors from attachments (documents, archives, attached messages),
    # which can expand far beyond the message. The message's own body text is not counted: it
    # can be no longer than the bytes received (max_scan_bytes), so a large plain-text body is
    # scanned whole instead of being cut and reported unscannable.
    max_text_chars: int = 4_000_000
    max_seconds: float = 3.0  # wall time for one extraction (checked between parts and pages)


DEFAULT_LIMITS = ExtractLimits()


@dataclass
class Collector:
    """Accumulates parts and enforces the limits for one extraction (never shared)."""

    limits: ExtractLimits
    parts: list[TextPart] = field(default_factory=list)
    unscannable: list[tuple[str, str]] = field(default_factory=list)
    count: int = 0
    decoded: int = 0
    chars: int = 0
    stopped: bool = False
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.limits.max_seconds

    def out_of_time(self) -> bool:
        if not self.stopped and time.monotonic() > self.deadline:
            self.refuse("message", f"extraction time limit reached ({self.limits.max_seconds:g} s)")
            self.stopped = True
        return self.stopped

    def admit(self, location: str, depth: int, size: int) -> bool:
        """Count one part of ``size`` decoded bytes; False (with the reason recorded) if refused."""
        lim = self.limits
        if self.out_of_time():
            return False
        if depth > lim.max_depth:
            self.refuse(location, f"nested too deeply (limit {lim.max_depth})")
            return False
        self.count += 1
        if self.count > lim.max_parts:
            self.refuse("message", f"too many parts (limit {lim.max_parts})")
            self.stopped = True
            return False
        if size > lim.max_part_bytes:
            self.refuse(location, f"too large: {size} bytes (limit {lim.max_part_bytes})")
            return False
        if self.decoded + size > lim.max_total_bytes:
            self.refuse(location, f"message decoded size limit reached ({lim.max_total_bytes})")
            return False
        self.decoded += size
        return True

    def add(self, location: str, text: str, kind: str) -> None:
        text = normalise(text)
        if not text.strip():
            return
        if kind in ("body", "html"):  # the message's own text: bounded by its size already
            self.parts.append(TextPart(location, text, kind))
            return
        room = self.limits.max_text_chars - self.chars
        if len(text) > room:
            text = text[: max(room, 0)]
            self.refuse(location, f"text truncated (limit {self.limits.max_text_chars} chars)")
            if not text:
                return
        self.chars += len(text)
        self.parts.append(TextPart(location, text, kind))

    def refuse(self, location: str, reason: str) -> None:
        entry = (location, reason)
        if entry not in self.unscannable:
            self.unscannable.append(entry)

    def result(self) -> Extraction:
        return Extraction(tuple(self.parts), tuple(self.unscannable))


class ReaderOutOfTime(BaseException):
    """Raised inside a third-party reader that runs past the extraction deadline; a
    BaseException, so the readers' own ``except Exception`` blocks cannot swallow it."""


@contextmanager
def reader_deadline(col: Collector) -> Iterator[None]:
    """Cut off the Python code run in this block (this thread only) at the extraction deadline.

    pypdf 3.x loops forever on some damaged files; a scan thread that never returns is a worker
    lost for good (the per-message budget only stops waiting for it). The deadline is checked at
    every Python function call (``sys.settrace``, call events only, any previous tracer kept),
    which costs the reader about twice its time; mark the result with ``col.refuse``."""
    previous = sys.gettrace()
    deadline, clock = col.deadline, time.monotonic

    def check(frame: FrameType, event: Any, arg: Any) -> Any:
        if clock() > deadline:
            raise ReaderOutOfTime
        return previous(frame, event, arg) if previous is not None else None

    sys.settrace(check)
    try:
        yield
    finally:
        sys.settrace(previous)


def safe_member_name(raw: str, fallback: str, keep_dirs: bool) -> str:
    """A printable, bounded name for a location (no control characters, no path tricks)."""
    name = raw.replace("\\", "/")
    if not keep_dirs:
        name = name.rsplit("/", 1)[-1]
    name = "/".join(s for s in name.split("/") if s not in ("", ".", ".."))
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:120]
    return name or fallback
