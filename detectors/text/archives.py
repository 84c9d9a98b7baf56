"""ZIP archives and the zip-based office formats for the text extraction.

Called by :mod:`.documents` for every attachment (or archive member) that starts with a ZIP
signature. Before anything is decompressed the central directory is checked against the limits
(member count, declared uncompressed sizes, compression ratio, encryption, compression method), so
zip bombs are refused without inflating them; members are then read with a size cap (the stdlib
also stops at the declared size). A DOCX goes to python-docx, an XLSX to openpyxl (read-only), a
PPTX or OpenDocument file is read from its XML; any other ZIP is walked recursively, each member
located as ``attachment:a.zip/dir/b.docx``.
"""

from __future__ import annotations

import datetime
import html
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable

from mailwarden.detectors.text.collect import (
    Collector,
    ReaderOutOfTime,
    reader_deadline,
    safe_member_name,
)

_SUPPORTED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_XML_BREAK = re.compile(rb"</(?:a:p|text:p|text:h|table:table-row)>")
_XML_CELL = re.compile(rb"</table:table-cell>")
_XML_TAG = re.compile(rb"<[^>]*>")


def office_kind(names: set[str]) -> str | None:
    """docx, xlsx, pptx or odf when the member names say so, else None (a plain archive)."""
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "ppt/presentation.xml" in names:
        return "pptx"
    if "content.xml" in names and "mimetype" in names:
        return "odf"
    return None


def bomb_reason(infos: list[zipfile.ZipInfo], col: Collector) -> str | None:
    """Why the central directory alone says this archive must not be inflated, or None."""
    lim = col.limits
    declared = sum(i.file_size for i in infos)
    if declared > lim.max_archive_bytes:
        return f"archive too large uncompressed ({declared} bytes, limit {lim.max_archive_bytes})"
    for info in infos:
        if info.file_size > lim.ratio_floor_bytes and (
            info.file_size > lim.max_ratio * max(info.compress_size, 1)
        ):
            return "compression ratio over the limit (zip bomb?)"
    return None


# Reads one archive member as an attachment: documents.read_attachment, passed in by its caller.
MemberReader = Callable[[Collector, str, str, str, bytes, int], None]


def read_zip(col: Collector, location: str, data: bytes, depth: int,
             read_member: MemberReader) -> None:
    """Read a ZIP (an office document, or each member with ``read_member``)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        col.refuse(location, "damaged zip archive")
        return
    with archive:
        reason = bomb_reason(infos, col)
        if reason:
            col.refuse(location, reason)
            return
        kind = office_kind({i.filename for i in infos})
        if kind is None:
            _walk_members(col, location, archive, infos, depth, read_member)
        elif any(i.flag_bits & 0x1 for i in infos):
            col.refuse(location, f"encrypted {kind} document")
        elif col.decoded + sum(i.file_size for i in infos) > col.limits.max_total_bytes:
            col.refuse(location, "message decoded size limit reached")
        else:
            col.decoded += sum(i.file_size for i in infos)
            _OFFICE_READERS[kind](col, location, data, archive)


def _walk_members(
    col: Collector, location: str, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo],
    depth: int, read_member: MemberReader,
) -> None:
    limit = col.limits.max_archive_members
    if len(infos) > limit:
        col.refuse(location, f"too many archive members ({len(infos)}, first {limit} scanned)")
    for number, info in enumerate(infos[:limit], start=1):
        name = safe_member_name(info.filename, f"member{number}", keep_dirs=True)
        member_loc = f"{location}/{name}"
        content = _read_member(col, member_loc, archive, info, depth)
        if content:
            read_member(col, member_loc, name, "application/octet-stream", content, depth + 1)
        if col.stopped:
            return


def _read_member(
    col: Collector, location: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, depth: int
) -> bytes | None:
    if info.flag_bits & 0x1:
        col.refuse(location, "encrypted archive member")
        return None
    if info.compress_type not in _SUPPORTED_METHODS:
        col.refuse(location, f"unsupported compression method {info.compress_type}")
        return None
    if not col.admit(location, depth + 1, info.file_size):
        return None
    try:
        with archive.open(info) as handle:
            content = handle.read(col.limits.max_part_bytes + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError,
            zlib.error, ValueError) as exc:
        col.refuse(location, f"unreadable archive member ({type(exc).__name__})")
        return None
    if len(content) > col.limits.max_part_bytes:
        col.refuse(location, "archive member over the size limit")
        return None
    return content


def _read_docx(col: Collector, location: str, data: bytes, archive: zipfile.ZipFile) -> None:
    try:
        import docx
    except ImportError:
        col.refuse(location, "docx reader not installed")
        return
    try:
        with reader_deadline(col):
            document = docx.Document(io.BytesIO(data))
            lines = [p.text for p in document.paragraphs]
            _table_lines(document.tables, lines)
            for section in document.sections:
                for part in (section.header, section.footer):
                    lines.extend(p.text for p in part.paragraphs)
                    _table_lines(part.tables, lines)
    except ReaderOutOfTime:
        col.refuse(location, "docx reader ran out of time")
        col.out_of_time()
        return
    except Exception as exc:  # noqa: BLE001 - python-docx raises many types on damaged files
        col.refuse(location, f"unreadable docx ({type(exc).__name__})")
        return
    col.add(location, "\n".join(lines), "attachment")


def _table_lines(tables: Iterable[object], lines: list[str], depth: int = 0) -> None:
    for table in tables:
        for row in table.rows:  # type: ignore[attr-defined]
            cells = list(row.cells)
            lines.append("\t".join(cell.text for cell in cells))
            if depth < 3:
                for cell in cells:
                    _table_lines(cell.tables, lines, depth + 1)


def _read_xlsx(col: Collector, location: str, data: bytes, archive: zipfile.ZipFile) -> None:
    try:
        import openpyxl
    except ImportError:
        col.refuse(location, "xlsx reader not installed")
        return
    lines: list[str] = []
    try:
        with reader_deadline(col):
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            try:
                _sheet_lines(col, location, book, lines)
            finally:
                book.close()
    except ReaderOutOfTime:
        col.refuse(location, "xlsx reader ran out of time; rest not scanned")
        col.out_of_time()
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types on damaged files
        col.refuse(location, f"unreadable xlsx ({type(exc).__name__})")
    col.add(location, "\n".join(lines), "attachment")


def _sheet_lines(col: Collector, location: str, book: object, lines: list[str]) -> None:
    size = 0
    for sheet in book.worksheets:  # type: ignore[attr-defined]
        for number, row in enumerate(sheet.iter_rows(values_only=True)):
            if number % 1000 == 999 and col.out_of_time():
                return
            line = "\t".join(cell_text(v) for v in row if v is not None)
            size += len(line)
            if size > col.limits.max_part_bytes:
                col.refuse(location, "xlsx text over the size limit; rest not scanned")
                return
            lines.append(line)


def cell_text(value: object) -> str:
    """A spreadsheet cell as people would read it (16-digit numbers without exponent)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e19:
        return str(int(value))
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _read_xml_office(col: Collector, location: str, data: bytes, archive: zipfile.ZipFile) -> None:
    names = sorted(
        n for n in archive.namelist()
        if n == "content.xml" or re.fullmatch(r"ppt/(slides|notesSlides)/\w+\.xml", n)
    )
    chunks = []
    try:
        for name in names:
            xml = archive.read(name)
            xml = _XML_CELL.sub(b"\t", _XML_BREAK.sub(b"\n", xml))
            chunks.append(html.unescape(_XML_TAG.sub(b"", xml).decode("utf-8", "replace")))
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as exc:
        col.refuse(location, f"unreadable office document ({type(exc).__name__})")
    col.add(location, "\n".join(chunks), "attachment")


_OFFICE_READERS = {
    "docx": _read_docx, "xlsx": _read_xlsx, "pptx": _read_xml_office, "odf": _read_xml_office,
}
