"""MIME text extraction: encodings, charsets, HTML, attachment formats and hostile input."""

from __future__ import annotations

import io
import quopri
import sys
import zipfile
import zlib
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailbuild import (
    as_message,
    attach,
    docx_bytes,
    mail,
    mark_encrypted,
    tiny_pdf,
    xlsx_bytes,
    zip_bytes,
)

from mailwarden.detectors.text.extract import (
    Extraction,
    ExtractLimits,
    decode_text,
    extract,
    html_to_text,
)


def texts(extraction: Extraction) -> dict[str, str]:
    return {p.location: p.text for p in extraction.parts}


def raw_mail(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n" + body


def test_plain_and_html_alternatives() -> None:
    html = (
        "<html><head><style>p {color: red}</style><script>var secret = 1;</script></head>"
        "<body><p>Hello&nbsp;<b>there</b> &amp; welcome</p><img alt='logo text' src='x'>"
        "<table><tr><td>left</td><td>right</td></tr></table></body></html>"
    )
    e = extract(as_message(mail("plain text here", html)))
    got = texts(e)
    assert got["body"] == "plain text here"
    assert "Hello there & welcome" in got["html"]
    assert "logo text" in got["html"]
    assert "left" in got["html"] and "right" in got["html"] and "leftright" not in got["html"]
    assert "secret" not in got["html"] and "color" not in got["html"]
    assert [p.kind for p in e.parts] == ["body", "html"]
    assert e.text(("html",)) == got["html"]
    assert e.text() == got["body"] + "\n" + got["html"]
    assert e.unscannable == ()


def test_extraction_is_memoised_per_message() -> None:
    message = as_message(mail("x"))
    assert extract(message) is extract(message)


def test_quoted_printable_soft_breaks_are_joined() -> None:
    value = "Grüße, card " + "x" * 70 + "4539 5787 6362 1486 end"
    encoded = quopri.encodestring(value.encode("utf-8"))
    assert b"=\n" in encoded and b"=C3=BC" in encoded  # really soft-wrapped and escaped
    raw = raw_mail("Content-Type: text/plain; charset=utf-8\n"
                   "Content-Transfer-Encoding: quoted-printable\n", encoded)
    assert texts(extract(as_message(raw)))["body"] == value


def test_base64_body_and_declared_charsets() -> None:
    msg = MIMEText("Grüße aus Köln", "plain", "utf-8")  # base64 by default
    assert texts(extract(as_message(msg)))["body"] == "Grüße aus Köln"


@pytest.mark.parametrize(("charset", "data", "expected"), [
    ("us-ascii", "naïve café".encode(), "naïve café"),  # wrong label: really UTF-8
    (None, "déjà vu".encode("latin-1"), "déjà vu"),  # no label, not UTF-8
    ("x-unknown-8bit", "Grüße".encode(), "Grüße"),  # unknown label
    ("iso-8859-1", b"it\x92s \x93quoted\x94", "it\u2019s \u201cquoted\u201d"),  # really cp1252
    ("utf-8", b"broken \xff\xfe utf8", "broken \u00ff\u00fe utf8"),  # invalid UTF-8
    ("base64", b"abc", "abc"),  # not a text codec
])
def test_charset_fallbacks(charset: str | None, data: bytes, expected: str) -> None:
    assert decode_text(data, charset) == expected


def test_html_entities_and_invisible_characters() -> None:
    text = html_to_text("<p>4539&#8203;5787&nbsp;6362&shy;1486</p><!-- hidden --><p>x &lt; y</p>")
    assert "45395787 63621486" in text
    assert "x < y" in text
    assert "hidden" not in text


def test_csv_pdf_docx_xlsx_attachments() -> None:
    msg = mail("see attached")
    attach(msg, b"name,number\nalice,12345\n", "list.csv", "csv")
    attach(msg, tiny_pdf(["Quarterly report", "line two"]), "report.pdf", "pdf")
    attach(msg, tiny_pdf(["compressed stream"], compress=True), "c.pdf", "pdf")
    attach(msg, docx_bytes(["para one"], [["cell a", "cell b"]], header="head text"), "d.docx")
    attach(msg, xlsx_bytes([["id", "amount"], ["x1", 4539578763621486], ["x2", 12.5]]), "s.xlsx")
    got = texts(extract(as_message(msg)))
    assert "alice,12345" in got["attachment:list.csv"]
    assert "Quarterly report\nline two" in got["attachment:report.pdf"]
    assert "compressed stream" in got["attachment:c.pdf"]
    assert "para one" in got["attachment:d.docx"]
    assert "cell a\tcell b" in got["attachment:d.docx"]
    assert "head text" in got["attachment:d.docx"]
    assert "x1\t4539578763621486" in got["attachment:s.xlsx"]
    assert "x2\t12.5" in got["attachment:s.xlsx"]


def test_zip_and_nested_zip_locations() -> None:
    inner = zip_bytes({"deep/notes.txt": b"inner text", "sheet.xlsx": xlsx_bytes([["v", "w"]])})
    outer = zip_bytes({"a.txt": b"outer text", "docs/b.docx": docx_bytes(["in docx"]),
                       "nested.zip": inner, "r.pdf": tiny_pdf(["in pdf"])})
    msg = mail("x")
    attach(msg, outer, "bundle.zip", "zip")
    got = texts(extract(as_message(msg)))
    assert got["attachment:bundle.zip/a.txt"] == "outer text"
    assert "in docx" in got["attachment:bundle.zip/docs/b.docx"]
    assert "in pdf" in got["attachment:bundle.zip/r.pdf"]
    assert got["attachment:bundle.zip/nested.zip/deep/notes.txt"] == "inner text"
    assert "v\tw" in got["attachment:bundle.zip/nested.zip/sheet.xlsx"]


def test_gzip_attachment() -> None:
    import gzip

    msg = mail("x")
    attach(msg, gzip.compress(b"zipped log line"), "app.log.gz", "gzip")
    assert texts(extract(as_message(msg)))["attachment:app.log.gz/app.log"] == "zipped log line"


def test_attached_message_parts_are_attachments() -> None:
    inner = mail("forwarded body")
    outer = mail("see below")
    part = MIMEMessage(inner)
    part.add_header("Content-Disposition", "attachment", filename="fwd.eml")
    outer.attach(part)
    e = extract(as_message(outer))
    by_location = {p.location: p for p in e.parts}
    assert by_location["attachment:fwd.eml/body"].text == "forwarded body"
    assert by_location["attachment:fwd.eml/body"].kind == "attachment"


def test_format_is_sniffed_not_trusted() -> None:
    msg = mail("x")
    attach(msg, b"name,card\nbob,4539578763621486\n", "photo.png")  # CSV posing as an image
    part = MIMEBase("image", "png")
    part.set_payload(b"a,b\n1,2\n")
    msg.attach(part)
    attach(msg, tiny_pdf(["pdf in disguise"]), "blob.bin")
    attach(msg, b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "logo.png", "png")
    e = extract(as_message(msg))
    got = texts(e)
    assert "bob,4539578763621486" in got["attachment:photo.png"]
    assert "pdf in disguise" in got["attachment:blob.bin"]
    assert not any("logo.png" in loc for loc, _ in e.unscannable)  # images are not text


def test_unsupported_and_encrypted_formats_are_unscannable() -> None:
    msg = mail("x")
    attach(msg, bytes(range(256)) * 8, "tool.exe")
    attach(msg, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "old.doc", "msword")
    attach(msg, b"Rar!\x1a\x07\x00" + bytes(100), "x.rar")
    attach(msg, b"-----BEGIN PGP MESSAGE-----\n\nhQEMA...\n-----END PGP MESSAGE-----\n", "m.asc")
    reasons = dict(extract(as_message(msg)).unscannable)
    assert "unsupported format" in reasons["attachment:tool.exe"]
    assert "OLE" in reasons["attachment:old.doc"]
    assert "rar" in reasons["attachment:x.rar"]
    assert "encrypted" in reasons["attachment:m.asc"]


@pytest.mark.parametrize(("module", "name", "data_fn"), [
    ("pypdf", "r.pdf", lambda: tiny_pdf(["x"])),
    ("docx", "d.docx", lambda: docx_bytes(["x"])),
    ("openpyxl", "s.xlsx", lambda: xlsx_bytes([["x"]])),
])
def test_missing_reader_library_is_unscannable_not_an_error(
    monkeypatch: pytest.MonkeyPatch, module: str, name: str, data_fn: object
) -> None:
    msg = mail("x")
    attach(msg, data_fn(), name)  # type: ignore[operator]
    monkeypatch.setitem(sys.modules, module, None)  # makes "import module" raise ImportError
    reasons = dict(extract(as_message(msg)).unscannable)
    assert reasons[f"attachment:{name}"].endswith("reader not installed")


def test_inline_pgp_body_is_unscannable() -> None:
    body = "-----BEGIN PGP MESSAGE-----\n\nhQEMA0xyz\n-----END PGP MESSAGE-----\n"
    assert dict(extract(as_message(mail(body))).unscannable)["body"] == "encrypted (OpenPGP)"


def test_damaged_and_encrypted_documents() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(tiny_pdf(["secret page"]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password="pw", owner_password="owner")
    encrypted = io.BytesIO()
    writer.write(encrypted)
    msg = mail("x")
    attach(msg, encrypted.getvalue(), "locked.pdf")
    attach(msg, b"%PDF-1.4\n garbage garbage", "broken.pdf")
    attach(msg, b"PK\x03\x04 not really a zip", "broken.zip")
    attach(msg, mark_encrypted(zip_bytes({"a.txt": b"hidden"})), "locked.zip")
    attach(msg, tiny_pdf([]), "empty.pdf")
    e = extract(as_message(msg))
    reasons = dict(e.unscannable)
    assert reasons["attachment:locked.pdf"] == "encrypted pdf"
    assert "pdf" in reasons["attachment:broken.pdf"]
    assert reasons["attachment:broken.zip"] == "damaged zip archive"
    assert reasons["attachment:locked.zip/a.txt"] == "encrypted archive member"
    assert "no text layer" in reasons["attachment:empty.pdf"]
    assert "secret page" not in e.text() and "hidden" not in e.text()


def test_zip_bomb_refused_from_the_central_directory() -> None:
    bomb = zip_bytes({"zeros.txt": bytes(30 * 1024 * 1024)})
    assert len(bomb) < 100_000
    msg = mail("x")
    attach(msg, bomb, "bomb.zip")
    reasons = dict(extract(as_message(msg)).unscannable)
    assert "zip bomb" in reasons["attachment:bomb.zip"]


def test_zip_member_lying_about_its_size_is_capped() -> None:
    honest = zip_bytes({"big.txt": b"A" * 200_000})
    info = zipfile.ZipFile(io.BytesIO(honest)).infolist()[0]
    lying = bytearray(honest)
    central = lying.find(b"PK\x01\x02")
    lying[central + 24 : central + 28] = (100).to_bytes(4, "little")  # declared size: 100 bytes
    msg = mail("x")
    attach(msg, bytes(lying), "liar.zip")
    e = extract(as_message(msg))
    assert info.file_size == 200_000
    assert "attachment:liar.zip/big.txt" not in texts(e)  # never inflated past the declared size
    assert "unreadable archive member" in dict(e.unscannable)["attachment:liar.zip/big.txt"]


def test_pdf_flate_bomb_refused() -> None:
    bomb = zlib.compress(bytes(20 * 1024 * 1024), 9)
    msg = mail("x")
    attach(msg, tiny_pdf(["text"], extra_stream=bomb), "bomb.pdf")
    reasons = dict(extract(as_message(msg)).unscannable)
    assert "decompresses beyond" in reasons["attachment:bomb.pdf"]


def test_limits_parts_depth_size_members_time() -> None:
    msg = mail("x")
    for i in range(10):
        attach(msg, b"t", f"f{i}.txt")
    e = extract(as_message(msg), ExtractLimits(max_parts=5))
    assert ("message", "too many parts (limit 5)") in e.unscannable

    nested = b"leaf"
    for level in range(6):
        nested = zip_bytes({f"l{level}.zip" if level else "leaf.txt": nested})
    msg = mail("x")
    attach(msg, nested, "russian-doll.zip")
    e = extract(as_message(msg), ExtractLimits(max_depth=4))
    assert any("nested too deeply" in r for _, r in e.unscannable)

    msg = mail("x")
    attach(msg, b"x" * 5000, "big.txt")
    e = extract(as_message(msg), ExtractLimits(max_part_bytes=1000))
    assert "too large" in dict(e.unscannable)["attachment:big.txt"]

    msg = mail("x")
    attach(msg, zip_bytes({f"m{i}.txt": b"m" for i in range(12)}), "many.zip")
    e = extract(as_message(msg), ExtractLimits(max_archive_members=5))
    assert "too many archive members" in dict(e.unscannable)["attachment:many.zip"]
    assert sum(p.location.startswith("attachment:many.zip/") for p in e.parts) == 5

    e = extract(as_message(mail("x")), ExtractLimits(max_seconds=0.0))
    assert any("time limit" in r for _, r in e.unscannable)


def test_text_budget_truncates_and_says_so() -> None:
    """The budget bounds attachment text; the body's own text is bounded by its size."""
    msg = mail("y" * 500)
    attach(msg, b"z" * 500, "notes.txt", "plain")
    e = extract(as_message(msg), ExtractLimits(max_text_chars=100))
    assert texts(e)["body"] == "y" * 500
    assert len(texts(e)["attachment:notes.txt"]) == 100
    assert dict(e.unscannable)["attachment:notes.txt"].startswith("text truncated")


def test_truncated_message_is_reported() -> None:
    e = extract(as_message(mail("x"), truncated=True))
    assert any("truncated" in r for loc, r in e.unscannable if loc == "message")


def test_deeply_nested_multipart_does_not_recurse_forever() -> None:
    part: MIMEMultipart | MIMEText = MIMEText("core")
    for _ in range(200):
        wrapper = MIMEMultipart("mixed")
        wrapper.attach(part)
        part = wrapper
    e = extract(as_message(part.as_bytes()))
    assert any("nested too deeply" in r for _, r in e.unscannable)


def test_malformed_mime_never_raises() -> None:
    no_boundary = raw_mail("Content-Type: multipart/mixed\nSubject: x\n", b"just text\r\n")
    bad_b64 = raw_mail(
        "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n", b"!!!not base64@@@\r\n")
    for raw in (no_boundary, bad_b64, b"", b"\x00\xff" * 100):
        extract(as_message(raw))  # must not raise
    assert "just text" in extract(as_message(no_boundary)).text()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.sampled_from(["x.pdf", "x.zip", "x.docx", "x.xlsx", "x.gz"]))
def test_arbitrary_attachment_bytes_never_raise(data: bytes, name: str) -> None:
    for blob in (data, b"%PDF-1.4\n" + data, b"PK\x03\x04" + data):
        msg = mail("x")
        attach(msg, blob, name)
        extract(as_message(msg))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_message_bytes_never_raise(data: bytes) -> None:
    extract(as_message(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" + data))


def test_unnamed_attachment_gets_a_stable_name() -> None:
    msg = MIMEMultipart()
    msg.attach(MIMEText("body"))
    msg.attach(MIMEApplication(b"a,b\n1,2", "csv"))
    locations = [p.location for p in extract(as_message(msg)).parts]
    assert locations == ["body", "attachment:part3"]
