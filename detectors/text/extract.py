"""MIME text extraction shared by every detector that reads content.

It sits between the message snapshot (:class:`mailwarden.message.Message`) and the content
detectors (``leak``, the content classifier): :func:`extract` walks the MIME tree once per message
(memoised with ``message.memo("extract", ...)``), decodes transfer encodings and charsets (declared,
missing or wrong), turns HTML into text and hands attachments to :mod:`.documents` (text, CSV,
PDF, DOCX, XLSX, ZIP), all under the hard limits of :class:`ExtractLimits` because outbound mail
can be hostile too. Whatever cannot be read becomes an ``unscannable`` entry with a reason: never
an exception and never a silent pass.
"""

from __future__ import annotations

import email.message

from mailwarden.detectors.text import documents
from mailwarden.detectors.text.collect import (
    DEFAULT_LIMITS,
    Collector,
    Extraction,
    ExtractLimits,
    ReaderOutOfTime,
    TextPart,
    reader_deadline,
    safe_member_name,
)
from mailwarden.detectors.text.decoding import decode_text, html_to_text, normalise
from mailwarden.message import Message, decode_header_text

__all__ = [
    "DEFAULT_LIMITS", "Collector", "ExtractLimits", "Extraction", "ReaderOutOfTime", "TextPart",
    "decode_text", "extract", "html_to_text", "normalise", "reader_deadline", "safe_member_name",
]

def extract(message: Message, limits: ExtractLimits = DEFAULT_LIMITS) -> Extraction:
    """All readable text of ``message``, memoised per message (``message.memo("extract", ...)``)."""
    key = "extract" if limits == DEFAULT_LIMITS else f"extract:{limits!r}"
    return message.memo(key, lambda: _extract(message, limits))


def _extract(message: Message, limits: ExtractLimits) -> Extraction:
    collector = Collector(limits)
    try:
        _walk(collector, message.parsed, None, 0, [0])
    except Exception as exc:  # noqa: BLE001 - hostile MIME must never crash a detector
        collector.refuse("message", f"MIME structure unreadable ({type(exc).__name__})")
    if message.parse_error:  # the whole body was read as one undivided part
        collector.refuse("message", message.parse_error)
    if message.truncated:
        collector.refuse("message", "message truncated before scanning (max scan bytes)")
    return collector.result()


def _walk(
    col: Collector, part: email.message.Message, container: str | None, depth: int, index: list[int]
) -> None:
    """One MIME entity; ``container`` is the path of an enclosing attached message, if any."""
    index[0] += 1
    if col.stopped:
        return
    if part.is_multipart():
        # Only a multipart's payload is read here: get_payload() on a leaf decodes 8-bit text
        # with the declared charset, and codecs such as idna raise even with errors="replace".
        payload = part.get_payload()
        inner: str | None
        if part.get_content_type() == "message/rfc822":
            name = _safe_name(part, index[0], ".eml")
            inner = f"{container}/{name}" if container else name
            location = _location(container, "attachment", name)
        else:
            inner, location = container, _location(container, "body", "")
        if not col.admit(location, depth, 0):
            return
        for sub in payload:
            if isinstance(sub, email.message.Message):
                _walk(col, sub, inner, depth + 1, index)
        return
    try:
        _leaf(col, part, container, depth, index[0])
    except Exception as exc:  # noqa: BLE001 - one hostile part must not hide its siblings
        location = _location(container, "attachment", f"part{index[0]}")
        col.refuse(location, f"unreadable MIME part ({type(exc).__name__})")


def _leaf(
    col: Collector, part: email.message.Message, container: str | None, depth: int, index: int
) -> None:
    ctype = part.get_content_type()
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken transfer encodings are common
        data = None
    if not isinstance(data, bytes):
        data = b""
    disposition = part.get_content_disposition()
    filename = _filename(part)
    if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
        kind = "html" if ctype == "text/html" else "body"
        location = _location(container, kind, "")
        if col.admit(location, depth, len(data)):
            text = decode_text(data, part.get_content_charset())
            text = html_to_text(text) if kind == "html" else text
            if "-----BEGIN PGP MESSAGE-----" in text:
                col.refuse(location, "encrypted (OpenPGP)")
            col.add(location, text, "attachment" if container else kind)
        return
    name = _safe_name(part, index, "")
    location = _location(container, "attachment", name)
    if col.admit(location, depth, len(data)):
        charset = part.get_content_charset()
        documents.read_attachment(col, location, name, ctype, data, depth, charset)


def _location(container: str | None, kind: str, name: str) -> str:
    if kind == "attachment":
        return f"attachment:{container}/{name}" if container else f"attachment:{name}"
    return f"attachment:{container}/{kind}" if container else kind


def _filename(part: email.message.Message) -> str | None:
    try:
        raw = part.get_filename()
    except Exception:  # noqa: BLE001 - malformed RFC 2231 parameters
        return None
    return decode_header_text(raw) if raw else None


def _safe_name(part: email.message.Message, index: int, suffix: str) -> str:
    return safe_member_name(_filename(part) or "", f"part{index}{suffix}", keep_dirs=False)
