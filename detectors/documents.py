"""Attachment readers for the text extraction (:mod:`.extract`).

Called by the MIME walk for every part that is not a body: it sniffs the format from magic bytes,
the file name and the declared type, and turns text, CSV, HTML, PDF (pypdf), DOCX (python-docx),
XLSX (openpyxl) and ZIP (stdlib, recursively) into text parts of the shared
:class:`~mailwarden.detectors.extract.Collector`. Optional libraries are imported lazily: when one
is missing, or a file is encrypted, damaged, or over a limit, the attachment becomes an
``unscannable`` entry instead of an exception.
"""

from __future__ import annotations

from mailwarden.detectors.extract import Collector, decode_text, html_to_text

TEXT_EXTENSIONS = (
    ".txt", ".csv", ".tsv", ".log", ".json", ".xml", ".md", ".ini", ".conf", ".cfg", ".yaml",
    ".yml", ".env", ".sql", ".pem", ".key", ".asc", ".vcf", ".ics", ".eml", ".properties",
    ".py", ".sh", ".js", ".ts", ".java", ".c", ".h", ".rtf",
)


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
    lower = name.lower()
    if ctype == "text/html" or lower.endswith((".html", ".htm")):
        col.add(location, html_to_text(decode_text(data, charset)), "attachment")
    elif ctype.startswith("text/") or lower.endswith(TEXT_EXTENSIONS):
        col.add(location, decode_text(data, charset), "attachment")
    elif data:
        col.refuse(location, f"unsupported format ({ctype})")
