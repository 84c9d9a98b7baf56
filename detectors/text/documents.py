"""Attachment readers for the text extraction (:mod:`.extract`).

Called by the MIME walk for every part that is not a body: it sniffs the format from magic bytes
first (senders mislabel types), then the file name and the declared type, and turns text, CSV,
HTML, PDF (pypdf) and gzip into text parts of the shared
:class:`~mailwarden.detectors.text.extract.Collector`; ZIP archives and the zip-based office formats
(DOCX, XLSX, PPTX, ODF) go to :mod:`.archives`. Optional libraries are imported lazily: when one
is missing, or a file is encrypted, damaged, or over a limit, the attachment becomes an
``unscannable`` entry instead of an exception. Images, audio and video are not text-bearing and are
skipped (no OCR); signatures (S/MIME, OpenPGP) are skipped too.
"""

from __future__ import annotations

import io
import re
import zlib

from mailwarden.detectors.text import archives
from mailwarden.detectors.text.collect import Collector, ReaderOutOfTime, reader_deadline
from mailwarden.detectors.text.decoding import decode_text, html_to_text

TEXT_EXTENSIONS = (
    ".txt", ".csv", ".tsv", ".log", ".json", ".xml", ".md", ".ini", ".conf", ".cfg", ".yaml",
    ".yml", ".env", ".sql", ".pem", ".key", ".asc", ".vcf", ".ics", ".eml", ".properties",
    ".py", ".sh", ".js", ".ts", ".java", ".c", ".h", ".rtf",
)
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"\x1f\x8b", "gzip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"), (b"Rar!\x1a\x07", "rar"),
    (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\x89PNG", "media"), (b"\xff\xd8\xff", "media"),
    (b"GIF8", "media"), (b"II*\x00", "media"), (b"MM\x00*", "media"),
)
_SKIP_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature",
               "application/pgp-signature")
_MEDIA_PREFIXES = ("image/", "audio/", "video/", "font/")
_REASONS = {
    "ole": "legacy or password-protected Office document (OLE) not supported",
    "rar": "unsupported archive format (rar)",
    "7z": "unsupported archive format (7z)",
    "smime": "encrypted (S/MIME)",
}


def sniff(name: str, ctype: str, data: bytes) -> str:
    """The format to read ``data`` as: pdf, zip, gzip, html, text, media, skip, ole, ..., binary."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if ctype in _SKIP_TYPES:
        return "skip"
    if ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return "smime"
    if looks_like_text(data):
        is_html = ctype == "text/html" or name.lower().endswith((".html", ".htm"))
        return "html" if is_html else "text"
    media = ctype.startswith(_MEDIA_PREFIXES) or data[:4] == b"RIFF"
    return "media" if media else "binary"


def looks_like_text(data: bytes) -> bool:
    """Heuristic on the first 4 KiB: no NUL bytes and under 1% other control characters."""
    sample = data[:4096]
    if not sample or b"\x00" in sample:
        return data.startswith((b"\xff\xfe", b"\xfe\xff"))  # UTF-16 with a BOM
    control = sum(1 for b in sample if b < 9 or 13 < b < 32)
    return control / len(sample) < 0.01


def read_attachment(
    col: Collector,
    location: str,
    name: str,
    ctype: str,
    data: bytes,
    depth: int,
    charset: str | None = None,
) -> None:
    """Add the text of one attachment (already admitted by ``col``) or record why not."""
    if not data:
        return
    fmt = sniff(name, ctype, data)
    if fmt == "html":
        col.add(location, html_to_text(decode_text(data, charset)), "attachment")
    elif fmt == "text":
        _read_text(col, location, decode_text(data, charset))
    elif fmt == "pdf":
        read_pdf(col, location, data)
    elif fmt == "zip":
        archives.read_zip(col, location, data, depth, read_attachment)
    elif fmt == "gzip":
        _read_gzip(col, location, name, data, depth)
    elif fmt in _REASONS:
        col.refuse(location, _REASONS[fmt])
    elif fmt == "binary":
        col.refuse(location, f"unsupported format ({ctype})")


def _read_text(col: Collector, location: str, text: str) -> None:
    if "-----BEGIN PGP MESSAGE-----" in text:
        col.refuse(location, "encrypted (OpenPGP)")
    col.add(location, text, "attachment")


def _read_gzip(col: Collector, location: str, name: str, data: bytes, depth: int) -> None:
    limit = col.limits.max_part_bytes
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        col.refuse(location, "damaged gzip file")
        return
    if len(out) > limit or inflater.unconsumed_tail:
        col.refuse(location, f"gzip content over the size limit ({limit} bytes)")
        return
    inner = name[:-3] if name.lower().endswith(".gz") else f"{name}.out"
    inner_loc = f"{location}/{inner.rsplit('/', 1)[-1]}"
    if col.admit(inner_loc, depth + 1, len(out)):
        read_attachment(col, inner_loc, inner, "application/octet-stream", out, depth + 1)


def read_pdf(col: Collector, location: str, data: bytes) -> None:
    """Text of every page (pypdf), or an unscannable entry."""
    try:
        import pypdf
    except ImportError:
        col.refuse(location, "pdf reader not installed")
        return
    if pdf_inflates_too_much(data, col.limits.max_part_bytes, col.limits.max_archive_bytes):
        col.refuse(location, "pdf stream decompresses beyond the size limit")
        return
    pages: list[str] = []
    try:
        with reader_deadline(col):
            reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and not _decrypt(reader):
                col.refuse(location, "encrypted pdf")
                return
            _pdf_pages(col, location, reader, pages)
    except ReaderOutOfTime:
        col.refuse(location, "pdf reader ran out of time (damaged file?); rest not scanned")
        col.out_of_time()
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files
        col.refuse(location, f"unreadable pdf ({type(exc).__name__})")
    text = "\n".join(pages)
    if pages and not text.strip():
        col.refuse(location, "pdf has no text layer (scanned image?)")
    col.add(location, text, "attachment")


def _decrypt(reader: object) -> bool:
    try:
        return bool(reader.decrypt(""))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - missing crypto backend or unsupported algorithm
        return False


def _pdf_pages(col: Collector, location: str, reader: object, pages: list[str]) -> None:
    size = 0
    for page in reader.pages:  # type: ignore[attr-defined]
        if col.out_of_time():
            return
        text = page.extract_text() or ""
        size += len(text)
        if size > col.limits.max_part_bytes:
            col.refuse(location, "pdf text over the size limit; rest not scanned")
            return
        pages.append(text)


_STREAM = re.compile(rb"(?<!end)stream\r?\n")


def pdf_inflates_too_much(data: bytes, per_stream: int, total: int) -> bool:
    """True when a non-image Flate stream would inflate past ``per_stream`` (or all past ``total``).

    pypdf 3.x inflates streams without any cap, so a small PDF can hold a decompression bomb.
    """
    inflated = 0
    for match in _STREAM.finditer(data):
        start = match.end()
        head = data[max(0, match.start() - 1024) : match.start()].rsplit(b" obj", 1)[-1]
        if b"/Image" in head:
            continue
        end = data.find(b"endstream", start)
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data[start : end if end > 0 else len(data)], per_stream + 1)
        except zlib.error:
            continue
        inflated += len(out)
        if len(out) > per_stream or inflater.unconsumed_tail or inflated > total:
            return True
    return False
