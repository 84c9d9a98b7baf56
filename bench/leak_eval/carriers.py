"""Carriers for the leak evaluation set: put snippets into a real ham message, one way each.

A carrier takes the ham message's own text (headers and prose stay real) and the snippets, and
builds the outbound message bytes plus the location the detector must report: the plain body as
is, quoted-printable or base64, an HTML-only body, or an attachment (text, CSV, PDF, DOCX, XLSX,
a ZIP of text, a ZIP inside a ZIP holding an office document or PDF). Documents are written with
the same libraries the readers use (python-docx, openpyxl) or by hand (PDF).
"""

from __future__ import annotations

import csv
import email.charset
import html
import io
import random
import re
import zipfile
import zlib
from collections.abc import Callable
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

CARRIERS = (
    "plain", "qp", "base64", "html", "txt", "csv", "pdf", "docx", "xlsx", "zip", "nested_zip",
)


def interleave(rng: random.Random, prose: list[str], snippets: list[str]) -> list[str]:
    lines = list(prose)
    for snippet in snippets:
        lines.insert(rng.randint(0, len(lines)), snippet)
    return lines


def headers(msg: MIMEMultipart | MIMEText, subject: str) -> None:
    msg["From"] = "Employee <employee@corp.example>"
    msg["To"] = "partner@external.example"
    msg["Subject"] = subject
    msg["Message-ID"] = "<eval@corp.example>"


def text_part(body: str, encoding: str) -> MIMEText:
    cs = email.charset.Charset("utf-8")
    cs.body_encoding = {"qp": email.charset.QP, "base64": email.charset.BASE64}.get(encoding)
    part = MIMEText("", "plain")
    part.set_payload(body, cs)
    return part


def long_lines(rng: random.Random, lines: list[str]) -> list[str]:
    """Join lines pairwise so quoted-printable must soft-wrap through the values."""
    out, i = [], 0
    while i < len(lines):
        take = 2 if rng.random() < 0.5 else 1
        out.append(" ".join(lines[i : i + take]))
        i += take
    return out


def html_body(rng: random.Random, prose: list[str], snippets: list[str]) -> str:
    blocks = [f"<p>{html.escape(line)}</p>" for line in prose]
    for snippet in snippets:
        escaped = html.escape(snippet)
        if rng.random() < 0.3:  # values broken up by inline markup, as editors write them
            escaped = re.sub(r"(\d{4}) ", r"<span>\1</span>&nbsp;", escaped)
        if "\t" in snippet:  # cells pasted from a sheet become a table
            block = "<table>" + "".join(
                "<tr>" + "".join(f"<td>{cell}</td>" for cell in row.split("\t")) + "</tr>"
                for row in escaped.split("\n")) + "</table>"
        elif "\n" in snippet:
            block = f"<pre>{escaped}</pre>"
        else:
            block = rng.choice([f"<p>{escaped}</p>", f"<div><b>{escaped}</b></div>",
                                f"<table><tr><td>Detail</td><td>{escaped}</td></tr></table>"])
        blocks.insert(rng.randint(0, len(blocks)), block)
    return ("<html><head><style>p { margin: 0 }</style></head><body>"
            + "\n".join(blocks) + "<script>var x = 1;</script></body></html>")


def tiny_pdf(lines: list[str]) -> bytes:
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    shown = " ".join(f"({esc(line)}) Tj T*" for line in lines)
    content = zlib.compress(f"BT /F1 9 Tf 40 2950 Td 11 TL {shown} ET".encode("latin-1", "replace"))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 3000] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def docx_file(lines: list[str]) -> bytes:
    import docx

    document = docx.Document()
    table_rows = [line for line in lines if "\n" not in line][-2:]
    for line in lines:
        if line not in table_rows:
            document.add_paragraph(line)
    if table_rows:
        grid = document.add_table(rows=len(table_rows), cols=2)
        for r, line in enumerate(table_rows):
            grid.cell(r, 0).text = "Note"
            grid.cell(r, 1).text = line
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx_file(lines: list[str]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "note"])
    for n, line in enumerate(lines, start=1):
        sheet.append([n, line])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_file(lines: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "owner", "note"])
    for n, line in enumerate(lines, start=1):
        writer.writerow([n, "employee", line])
    return out.getvalue().encode()


def pdf_file(lines: list[str]) -> bytes:
    return tiny_pdf([part for line in lines for part in line.split("\n")])


def zip_file(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


DOCUMENTS: dict[str, tuple[str, Callable[[list[str]], bytes]]] = {
    "csv": ("export.csv", csv_file), "pdf": ("statement.pdf", pdf_file),
    "docx": ("notes.docx", docx_file), "xlsx": ("records.xlsx", xlsx_file),
    "txt": ("notes.txt", lambda lines: "\n".join(lines).encode()),
}


def build(carrier: str, rng: random.Random, subject: str, prose: list[str],
          snippets: list[str]) -> tuple[bytes, str]:
    """The message bytes and the location where the snippets must be reported."""
    if carrier in ("plain", "qp", "base64"):
        lines = interleave(rng, prose, snippets)
        body = "\n".join(long_lines(rng, lines) if carrier == "qp" else lines)
        msg: MIMEMultipart | MIMEText = text_part(body, carrier)
        headers(msg, subject)
        return msg.as_bytes(), "body"
    if carrier == "html":
        msg = MIMEText(html_body(rng, prose, snippets), "html", "utf-8")
        headers(msg, subject)
        return msg.as_bytes(), "html"
    outer = MIMEMultipart("mixed")
    headers(outer, subject)
    outer.attach(text_part("\n".join(prose), "plain"))
    name, data, location = attachment(carrier, rng, prose, snippets)
    part = MIMEApplication(data, "octet-stream")
    part.add_header("Content-Disposition", "attachment", filename=name)
    outer.attach(part)
    return outer.as_bytes(), location


def attachment(carrier: str, rng: random.Random, prose: list[str],
               snippets: list[str]) -> tuple[str, bytes, str]:
    filler = prose[: rng.randint(2, 8)]
    if carrier in DOCUMENTS:
        name, writer = DOCUMENTS[carrier]
        return name, writer(interleave(rng, filler, snippets)), f"attachment:{name}"
    inner_kind = "txt" if carrier == "zip" else rng.choice(["docx", "xlsx", "pdf", "csv"])
    inner_name, writer = DOCUMENTS[inner_kind]
    inner = writer(interleave(rng, filler, snippets))
    decoy = DOCUMENTS["txt"][1](filler)
    if carrier == "zip":
        return "bundle.zip", zip_file({f"docs/{inner_name}": inner, "readme.txt": decoy}), \
            f"attachment:bundle.zip/docs/{inner_name}"
    nested = zip_file({inner_name: inner})
    return "outer.zip", zip_file({"inner.zip": nested, "readme.txt": decoy}), \
        f"attachment:outer.zip/inner.zip/{inner_name}"
