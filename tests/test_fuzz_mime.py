"""Property-based fuzzing of MIME structure and attachments with hypothesis.

Random MIME trees (multipart kinds, attached messages, every transfer encoding, valid, invalid and
8-bit charsets, RFC 2231 file names, binary, zip, gzip and PDF bodies) carry one planted token in a
readable text part; mutated real archives and documents (zip, nested zip, DOCX, XLSX, PDF, gzip)
ride as attachments. Scored by the default detectors, every message gets a verdict within the
budget with no detector error, and the extraction keeps its promise: the planted token is in the
extracted text unless a documented limit says why not.
"""

from __future__ import annotations

import base64
import gzip
import quopri
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailbuild import docx_bytes, tiny_pdf, xlsx_bytes
from reliability_tools import HEAD, default_config, nested_zip, snapshot, zip_of

from mailwarden.detectors.text.extract import DEFAULT_LIMITS, extract
from mailwarden.engine import Engine
from mailwarden.metrics import Metrics

TOKEN = "QZXWTOKEN7731"
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LIMIT_REASONS = ("nested too deeply", "too many parts", "time limit", "truncated")

# ASCII-compatible labels (the token is ASCII), declared, missing, bogus or of the wrong kind.
TEXT_CHARSETS = [None, "utf-8", "us-ascii", "iso-8859-1", "windows-1252", "x-bogus", "idna",
                 "punycode", "base64", "utf-7", '"utf-8"', "utf-8''", "unknown-8bit"]
ANY_CHARSETS = [*TEXT_CHARSETS, "utf-16", "utf-32", "cp037"]
TOKEN_CTES = [None, "7bit", "8bit", "base64", "quoted-printable", "binary", "BASE64"]
ANY_CTES = [*TOKEN_CTES, "x-uuencode", "x-bogus", ""]
FILENAMES = [None, "a.txt", "report.pdf", "x.zip", "..\\..\\etc\\passwd", "\u00e9t\u00e9.csv",
             "n" * 300, "=?utf-8?B?w6k=?=.txt", "*0*=x''%FF"]
LEAF_TYPES = ["text/plain", "text/html", "text/csv", "application/octet-stream",
              "application/zip", "application/pdf", "image/png", "application/gzip",
              "application/ms-tnef", "multipart/mixed", "message/delivery-status"]
TEXT_BYTES = st.text(alphabet="abc XYZ 0129 .,;:-_/<>&@\t\u00e9\u20ac\u00fc\u65e5\U0001f600",
                     max_size=60).map(lambda t: t.encode("utf-8"))


@dataclass
class Leaf:
    ctype: str
    charset: str | None
    cte: str | None
    disposition: str | None
    filename: str | None
    body: bytes
    token: bool = False


@dataclass
class Node:
    subtype: str  # multipart subtype, or "rfc822" for an attached message
    children: list[Leaf | Node] = field(default_factory=list)
    preamble: bytes = b""


@st.composite
def leaves(draw: st.DrawFn) -> Leaf:
    if draw(st.integers(0, 5)) == 0:  # the planted, readable text part
        text = draw(TEXT_BYTES) + f" {TOKEN} ".encode() + draw(TEXT_BYTES)
        return Leaf("text/plain", draw(st.sampled_from(TEXT_CHARSETS)),
                    draw(st.sampled_from(TOKEN_CTES)), draw(st.sampled_from([None, "inline"])),
                    None, text, token=True)
    kind = draw(st.sampled_from(["binary", "text", "zip", "gzip", "pdf"]))
    body = {"binary": lambda: draw(st.binary(max_size=400)),
            "text": lambda: draw(TEXT_BYTES),
            "zip": lambda: zip_of({"m.txt": draw(TEXT_BYTES)}),
            "gzip": lambda: gzip.compress(draw(TEXT_BYTES)),
            "pdf": lambda: tiny_pdf([draw(st.text("abc xyz", max_size=30))])}[kind]()
    return Leaf(draw(st.sampled_from(LEAF_TYPES)), draw(st.sampled_from(ANY_CHARSETS)),
                draw(st.sampled_from(ANY_CTES)),
                draw(st.sampled_from([None, "inline", "attachment", "form-data"])),
                draw(st.sampled_from(FILENAMES)), body)


def nodes(children: st.SearchStrategy[list[Leaf | Node]]) -> st.SearchStrategy[Node]:
    return st.builds(Node, st.sampled_from(["mixed", "alternative", "related", "digest",
                                            "signed", "x-weird", "rfc822"]),
                     children, st.sampled_from([b"", b"preamble text\r\n", b"--\r\n"]))


TREES = st.recursive(leaves(), lambda kids: nodes(st.lists(kids, max_size=4)), max_leaves=14)


class Writer:
    """Serialises a tree with unique boundaries; records the depth of every planted token."""

    def __init__(self) -> None:
        self.count = 0
        self.token_depths: list[int] = []

    def entity(self, item: Leaf | Node, depth: int) -> bytes:
        if isinstance(item, Leaf):
            return self.leaf(item, depth)
        if item.subtype == "rfc822":
            inner = item.children[0] if item.children else Leaf("text/plain", None, None, None,
                                                                None, b"empty")
            return (b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
                    + self.entity(inner, depth + 1))
        self.count += 1
        boundary = f"=_b{self.count}_="
        parts = b"".join(b"--" + boundary.encode() + b"\r\n" + self.entity(c, depth + 1)
                         + b"\r\n" for c in item.children)
        return (f'Content-Type: multipart/{item.subtype}; boundary="{boundary}"\r\n\r\n'.encode()
                + item.preamble + parts + b"--" + boundary.encode() + b"--\r\n")

    def leaf(self, leaf: Leaf, depth: int) -> bytes:
        if leaf.token:
            self.token_depths.append(depth)
        head = f"Content-Type: {leaf.ctype}"
        head += f"; charset={leaf.charset}" if leaf.charset is not None else ""
        head += f"\r\nContent-Transfer-Encoding: {leaf.cte}" if leaf.cte is not None else ""
        if leaf.disposition:
            head += f"\r\nContent-Disposition: {leaf.disposition}"
            head += f'; filename="{leaf.filename}"' if leaf.filename else ""
        cte = (leaf.cte or "").lower()
        if cte == "base64":
            body = base64.encodebytes(leaf.body).replace(b"\n", b"\r\n")
        elif cte == "quoted-printable":
            body = quopri.encodestring(leaf.body).replace(b"\n", b"\r\n")
        else:  # raw; must not contain a boundary line of the tree
            body = leaf.body.replace(b"=_b", b"=_c").replace(b"\r", b" ").replace(b"\n", b" ")
        return head.encode() + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    eng = Engine(default_config(tmp_path_factory.mktemp("state")), Metrics())
    yield eng
    eng.close()


def test_random_mime_trees_keep_the_planted_text(engine: Engine) -> None:
    budget = engine.config.milter.timeout_seconds

    @FUZZ
    @given(TREES)
    def check(tree: Leaf | Node) -> None:
        writer = Writer()
        if not (isinstance(tree, Leaf) and tree.token):
            tree = Node("mixed", [tree, Leaf("text/plain", "utf-8", None, None, None,
                                             f"see {TOKEN}".encode(), token=True)])
        raw = HEAD + b"Subject: fuzz\r\n" + writer.entity(tree, 0)
        message = snapshot(raw)
        decision = engine.scan(message)
        assert not decision.errors, decision.errors
        assert decision.seconds < budget
        extraction = extract(message)
        why = " ".join(r for _, r in extraction.unscannable)
        assert len(extraction.parts) <= DEFAULT_LIMITS.max_parts
        assert all(p.location.isprintable() for p in extraction.parts)
        if min(writer.token_depths) <= DEFAULT_LIMITS.max_depth and not any(
                r in why for r in LIMIT_REASONS):
            assert TOKEN in extraction.text(), (why, raw[:3000])

    check()


def seed_attachments() -> dict[str, bytes]:
    text = f"account {TOKEN} balance".encode()
    return {
        "a.zip": zip_of({"notes.txt": text, "dir/more.csv": b"a,b\n1," + text}),
        "n.zip": nested_zip(3, text),
        "d.docx": docx_bytes([text.decode()], [["cell", text.decode()]]),
        "s.xlsx": xlsx_bytes([["id", text.decode()], ["x", 12.5]]),
        "p.pdf": tiny_pdf([text.decode()], compress=True),
        "g.txt.gz": gzip.compress(text),
    }


def attachment_message(name: str, data: bytes) -> bytes:
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (HEAD + b'Subject: files\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n'
            b"--zz\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--zz\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            + f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'.encode()
            + encoded + b"\r\n--zz--\r\n")


def test_unmutated_seed_attachments_are_read(engine: Engine) -> None:
    for name, data in seed_attachments().items():
        extraction = extract(snapshot(attachment_message(name, data)))
        assert TOKEN in extraction.text(), (name, extraction.unscannable)


def test_mutated_archives_and_documents_get_verdicts(engine: Engine) -> None:
    seeds = seed_attachments()
    budget = engine.config.milter.timeout_seconds

    @FUZZ
    @given(st.sampled_from(sorted(seeds)), st.data())
    def check(name: str, data: st.DataObject) -> None:
        blob = bytearray(seeds[name])
        for _ in range(data.draw(st.integers(1, 8))):
            at = data.draw(st.integers(0, len(blob) - 1))
            op = data.draw(st.sampled_from(["flip", "truncate", "duplicate", "zero"]))
            if op == "flip":
                blob[at] ^= 1 << data.draw(st.integers(0, 7))
            elif op == "truncate":
                del blob[max(at, 4):]
            elif op == "duplicate":
                blob[at:at] = blob[at:at + data.draw(st.integers(1, 200))]
            else:
                blob[at:at + 4] = bytes(4)
        message = snapshot(attachment_message(name, bytes(blob)))
        decision = engine.scan(message)
        assert not decision.errors, decision.errors
        assert decision.seconds < budget
        assert "see attached" in extract(message).text()

    check()
