"""Test helpers for the extraction and leak tests: MIME messages and tiny documents.

Everything is built in memory with the standard library and the same optional libraries the
readers use (python-docx, openpyxl); PDFs are written by hand so no PDF writer is needed.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from mailwarden.message import Envelope, Message


def as_message(raw: bytes | MIMEMultipart | MIMEText, truncated: bool = False) -> Message:
    data = raw if isinstance(raw, bytes) else raw.as_bytes()
    return Message(Envelope("Q1", "alice@example.org", ("bob@example.net",)), data, len(data),
                   truncated=truncated)


def mail(body: str = "Hello", html: str | None = None, subject: str = "test") -> MIMEMultipart:
    """A multipart/mixed message with a text body (and an HTML alternative when given)."""
    outer = MIMEMultipart("mixed")
    outer["Subject"] = subject
    if html is None:
        outer.attach(MIMEText(body, "plain", "utf-8"))
    else:
        alt = MIMEMultipart("alternative")
        alt.attach(MIMEText(body, "plain", "utf-8"))
        alt.attach(MIMEText(html, "html", "utf-8"))
        outer.attach(alt)
    return outer


def attach(msg: MIMEMultipart, data: bytes, filename: str, subtype: str = "octet-stream") -> None:
    part = MIMEApplication(data, subtype)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    msg.attach(part)


def tiny_pdf(lines: list[str], compress: bool = False, extra_stream: bytes | None = None) -> bytes:
    """A one-page PDF showing ``lines`` in Helvetica (``extra_stream``: an unused Flate stream)."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    shown = " ".join(f"({esc(line)}) Tj T*" for line in lines)
    content = f"BT /F1 11 Tf 72 720 Td 14 TL {shown} ET".encode("latin-1")
    flate = b""
    if compress:
        content, flate = zlib.compress(content), b" /Filter /FlateDecode"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(content), flate, content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    if extra_stream is not None:
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream"
                       % (len(extra_stream), extra_stream))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def docx_bytes(paragraphs: list[str], table: list[list[str]] | None = None,
               header: str | None = None) -> bytes:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    if header:
        document.sections[0].header.paragraphs[0].text = header
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def mark_encrypted(archive: bytes) -> bytes:
    """Set the 'encrypted' flag of every member (local and central headers) of a ZIP."""
    data = bytearray(archive)
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            data[at + flag_offset] |= 0x01
            start = at + 4
    return bytes(data)


def luhn_complete(payload: str) -> str:
    """``payload`` plus its Luhn check digit (an implementation independent of the validators)."""
    total = 0
    for i, char in enumerate(reversed(payload)):
        d = int(char) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return payload + str((10 - total % 10) % 10)


def iban_complete(country: str, bban: str) -> str:
    """An IBAN with correct ISO 7064 check digits for ``country`` + ``bban``."""
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def der_body(size: int = 600, seed: int = 1) -> str:
    """Base64 of a DER SEQUENCE of ``size`` pseudo-random bytes, wrapped at 64 columns."""
    import base64
    import random

    rng = random.Random(seed)
    head = bytes([0x30, 0x82, size >> 8, size & 0xFF])
    raw = head + bytes(rng.randrange(256) for _ in range(size))
    text = base64.b64encode(raw).decode()
    return "\n".join(text[i : i + 64] for i in range(0, len(text), 64))


def random_token(alphabet: str, length: int, seed: int) -> str:
    import random

    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(length))
