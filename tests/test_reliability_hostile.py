"""Hostile messages through the default detectors: parser-breakers, nesting, headers, bombs.

Every message goes through an engine built from the shipped ``deploy/mailwarden.toml`` (the repo's
models, a temporary state dir) with ``scan_within_budget``, as the daemon does. Each must get a
verdict within the per-message budget with no detector error, and a card number planted in it must
still be found by the leak detector, or the message must be reported unscannable with the reason.
Bombs must be refused without being inflated (peak RSS growth bounded). The parser fixes of
``milter/message.py`` (chunked parse, too-deep fallback, linear header parameters and encoded
words) and ``detectors/text/extract.py`` (one bad part does not hide its siblings) are tested here.
"""

from __future__ import annotations

import base64
import email
import email.policy
import gzip
import quopri
import time
import zlib
from collections.abc import Iterator

import pytest
from mailbuild import tiny_pdf
from reliability_tools import (
    CARD,
    HEAD,
    MiB,
    base64_part,
    breaker_messages,
    default_config,
    multipart,
    nested_multipart,
    nested_zip,
    overlapping_zip_bomb,
    peak_rss_growth,
    snapshot,
    text_part,
    zip_bomb,
    zip_of,
)

from mailwarden.detectors.text.extract import extract
from mailwarden.engine import Engine
from mailwarden.message import Message, parse_bytes
from mailwarden.metrics import Metrics
from mailwarden.verdict import Decision

MARGIN = 2.0  # seconds over the budget for thread hand-over on a loaded 2-core machine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    eng = Engine(default_config(tmp_path_factory.mktemp("state")), Metrics())
    loaded = {d.name for d in eng.detectors}
    assert {"leak", "content", "sending"} <= loaded, eng.disabled
    yield eng
    eng.close()


def scored(engine: Engine, data: bytes) -> tuple[Decision, Message]:
    """Scan as the daemon does; a verdict within the budget and no detector error."""
    message = snapshot(data)
    started = time.monotonic()
    decision = engine.scan_within_budget(message)
    elapsed = time.monotonic() - started
    assert not decision.errors, decision.errors  # a detector failed or the budget ran out
    assert elapsed < engine.config.milter.timeout_seconds + MARGIN, elapsed
    assert decision.ref.startswith("MW-")
    return decision, message


def types(decision: Decision) -> set[str]:
    return {f.type for f in decision.findings}


def reasons(message: Message) -> str:
    return "; ".join(reason for _, reason in extract(message).unscannable)


def test_corpus_parser_breakers_get_verdicts(engine: Engine) -> None:
    for name, data in breaker_messages():
        with pytest.raises(IndexError):  # still a breaker of the standard policy
            modern = email.message_from_bytes(data, policy=email.policy.default)
            for key in list(modern):
                str(modern[key])
        _, message = scored(engine, data)
        assert extract(message).parts, name  # the compat32 path still reads its text


@pytest.mark.parametrize(("levels", "card_found", "why"), [
    (3, True, ""),
    (60, False, "nested too deeply"),  # parsed, but past the extraction's depth limit
    (3000, True, "too deep to parse"),  # the stdlib parser's recursion gives up
    (30000, True, "too deep to parse"),
])
def test_deep_nesting(engine: Engine, levels: int, card_found: bool, why: str) -> None:
    decision, message = scored(engine, nested_multipart(levels, CARD))
    assert ("credit_card" in types(decision)) is card_found
    if why:
        assert why in reasons(message)
        assert "unscannable_attachment" in types(decision)
    assert message.parsed is message.parsed  # parsed once, fallback included


def header_flood(kind: str) -> bytes:
    if kind == "subject-1MB":
        return b"Subject: " + b"word " * 200_000 + b"\r\n"
    if kind == "folded-1MB":
        return b"Subject: f\r\nX-Long: start\r\n" + b"\tcontinued line of text\r\n" * 40_000
    if kind == "10k-fields":
        return b"Subject: f\r\n" + b"".join(b"X-Filler-%d: value %d\r\n" % (i, i)
                                           for i in range(10_000))
    if kind == "10k-received":
        return b"Subject: f\r\n" + b"".join(
            b"Received: from h%d.example by mx.example with ESMTP id %d; "
            b"Mon, 02 Sep 2024 10:00:00 +0000\r\n" % (i, i) for i in range(10_000))
    if kind == "cc-45k-addresses":
        return b"Subject: f\r\nCc: " + b", ".join(b"u%d@d%d.example" % (i, i % 97)
                                                 for i in range(45_000)) + b"\r\n"
    if kind == "encoded-words-1MB":  # quadratic in the stdlib's decode_header
        return b"Subject: " + b" ".join(b"=?utf-8?B?w6nDqcOp?=" for _ in range(50_000)) + b"\r\n"
    if kind == "bad-encoded-words":
        return b"Subject: " + b" ".join(b"=?x-bogus?Q?=FF=FE?= =?base64?B?AAAA?="
                                        for _ in range(20_000)) + b"\r\n"
    assert kind == "8bit-1MB"
    return b"Subject: " + bytes(range(128, 256)) * 8000 + b"\r\n"


@pytest.mark.parametrize("kind", [
    "subject-1MB", "folded-1MB", "10k-fields", "10k-received", "cc-45k-addresses",
    "encoded-words-1MB", "bad-encoded-words", "8bit-1MB"])
def test_huge_headers_do_not_hide_the_body(engine: Engine, kind: str) -> None:
    data = HEAD + header_flood(kind) + b"Content-Type: text/plain\r\n\r\n" + CARD
    assert len(data) > 250_000
    decision, _ = scored(engine, data)
    assert "credit_card" in types(decision)


def hostile_params(kind: str) -> bytes:
    if kind == "charset-rfc2231-mixed":  # TypeError in email.utils.decode_params
        return multipart([b"Content-Type: text/plain; charset*=utf-8''x; charset*0=y\r\n\r\nhi",
                          text_part(CARD)])
    if kind == "filename-rfc2231-mixed":
        return multipart([b"Content-Type: text/plain\r\nContent-Disposition: attachment; "
                          b"filename*=x; filename*0=y\r\n\r\nhi", text_part(CARD)])
    if kind == "boundary-rfc2231-mixed":  # raised inside the parser itself
        return (HEAD + b"Subject: p\r\nContent-Type: multipart/mixed; boundary*=zz; "
                b"boundary*0=zz\r\n\r\n--zz\r\n" + text_part(CARD) + b"\r\n--zz--\r\n")
    if kind == "quoted-semicolons-300KB":  # quadratic in the stdlib's parameter splitter
        return (HEAD + b'Subject: p\r\nContent-Type: multipart/mixed; x="' + b"a;" * 150_000
                + b'"; boundary=zz\r\n\r\n--zz\r\n' + text_part(CARD) + b"\r\n--zz--\r\n")
    assert kind == "rfc2231-continuations-1MB"
    name = b"; ".join(b"filename*%d*=utf-8''%%41%d" % (i, i) for i in range(32_000))
    return multipart([b"Content-Type: text/plain\r\nContent-Disposition: attachment; " + name
                      + b"\r\n\r\n" + CARD])


@pytest.mark.parametrize("kind", [
    "charset-rfc2231-mixed", "filename-rfc2231-mixed", "boundary-rfc2231-mixed",
    "quoted-semicolons-300KB", "rfc2231-continuations-1MB"])
def test_hostile_header_parameters(engine: Engine, kind: str) -> None:
    decision, message = scored(engine, hostile_params(kind))
    assert "credit_card" in types(decision)
    assert "unreadable" not in reasons(message)


# Labels a mail client would also read ASCII through (UTF-16/32 and EBCDIC labels turn the text
# into something else for the recipient too, so they are no way to hide it).
CHARSETS = ["utf-8", "us-ascii", "", '"utf-8"', "x-unknown", "unknown-8bit", "base64", "rot13",
            "idna", "punycode", "utf-7", "iso-8859-1", "windows-1252", "x-mac-roman",
            "utf-8''", "=?utf-8?q?x?="]


@pytest.mark.parametrize("charset", CHARSETS)
@pytest.mark.parametrize("cte", ["8bit", "quoted-printable", "base64"])
def test_8bit_and_invalid_charsets(engine: Engine, charset: str, cte: str) -> None:
    text = b"caf\xc3\xa9 \xe9t\xe9 \xff\xfe\x80 " + CARD + b"\xc3\x28 \xed\xa0\x80\r\n"
    encoders = {"8bit": lambda b: b, "quoted-printable": quopri.encodestring,
                "base64": base64.encodebytes}
    data = multipart([text_part(b"intro", charset), text_part(encoders[cte](text), charset, cte)])
    data = data.replace(b"Subject: ", b"Subject: =?x-bogus?Q?caf=E9?= \xff\xfe ", 1)
    decision, message = scored(engine, data)
    assert "credit_card" in types(decision)
    assert "unreadable" not in reasons(message)


@pytest.mark.parametrize(("label", "body"), [
    ("utf-8", b"\xff\xfe" + CARD),  # a UTF-16 mark in front of UTF-8 text: the client shows it
    ("utf-8", b"\xfe\xff caf\xc3\xa9 " + CARD),
    ("utf-8", CARD.decode().encode("utf-16")),  # real UTF-16 (with its mark), mislabelled
    ("", CARD.decode().encode("utf-16-be").join([b"\xfe\xff", b""])),
    ("utf-16", CARD.decode().encode("utf-16")),
])
def test_byte_order_marks(engine: Engine, label: str, body: bytes) -> None:
    part = (f"Content-Type: text/plain{'; charset=' + label if label else ''}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + base64.encodebytes(body)
    decision, _ = scored(engine, multipart([text_part(b"hello"), part]))
    assert "credit_card" in types(decision)


def test_8bit_headers_and_rfc2231_filename_with_bogus_charset(engine: Engine) -> None:
    part = (b"Content-Type: text/plain\r\nContent-Disposition: attachment; "
            b"filename*=x-bogus''%FF%FE%00evil%0A.txt\r\n\r\n" + CARD)
    data = multipart([text_part(b"see attached"), part])
    data = data.replace(b"Subject: ", b"Subject: \xe9t\xe9 =?utf-8?B?////?= ", 1)
    decision, message = scored(engine, data)
    assert "credit_card" in types(decision)
    locations = [p.location for p in extract(message).parts]
    assert all(loc.isprintable() for loc in locations), locations


def test_8bit_attachment_under_a_strict_codec_does_not_fail_the_sending_detector(
        engine: Engine) -> None:
    part = (b"Content-Type: application/octet-stream; charset=idna\r\n"
            b"Content-Disposition: attachment; filename=a.bin\r\n\r\n\xff\xfe bin \xe9\r\n")
    decision, _ = scored(engine, multipart([text_part(CARD), part]))
    assert "sending_anomaly" in decision.scores  # the detector scored it (it raised before)
    assert "credit_card" in types(decision)


def test_one_unreadable_part_does_not_hide_the_others(engine: Engine,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from mailwarden.detectors.text import documents
    original = documents.read_attachment

    def flaky(col, location, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "bad.bin":
            raise ValueError("reader bug")
        return original(col, location, name, *args, **kwargs)

    monkeypatch.setattr(documents, "read_attachment", flaky)
    data = multipart([base64_part(b"x" * 100, "bad.bin"), text_part(CARD)])
    decision, message = scored(engine, data)
    assert "credit_card" in types(decision)
    assert "unreadable MIME part (ValueError)" in reasons(message)


def bomb(kind: str) -> bytes:
    if kind == "zip-ratio":  # under max_archive_bytes, so the ratio check is what refuses it
        return zip_bomb(38 * MiB)
    if kind == "zip-overlapping":
        return overlapping_zip_bomb(200)
    if kind == "zip-fan-out":  # 42.zip-like: 16 x 16 x 16 ratio bombs
        layer = zip_bomb(4 * MiB)
        for _ in range(3):
            layer = zip_of({f"l{i:02}.zip": layer for i in range(16)})
        return layer
    if kind == "zip-nested-12":
        return nested_zip(12, CARD)
    if kind == "gzip":
        return gzip.compress(bytes(100 * MiB), 9)
    assert kind == "pdf-flate"
    return tiny_pdf(["text"], extra_stream=zlib.compress(bytes(60 * MiB), 9))


@pytest.mark.parametrize(("kind", "why"), [
    ("zip-ratio", "compression ratio over the limit"),
    ("zip-overlapping", "archive too large uncompressed"),
    ("zip-fan-out", "compression ratio over the limit"),
    ("zip-nested-12", "nested too deeply"),
    ("gzip", "gzip content over the size limit"),
    ("pdf-flate", "decompresses beyond the size limit"),
])
def test_bombs_are_refused_without_inflating(engine: Engine, kind: str, why: str) -> None:
    payload = bomb(kind)
    assert len(payload) < 2 * MiB
    data = multipart([text_part(b"figures attached"), base64_part(payload, f"report.{kind}")])
    with peak_rss_growth() as growth:
        decision, message = scored(engine, data)
    assert why in reasons(message)
    assert "unscannable_attachment" in types(decision)
    # Measured at most 21 MiB (the gzip reader stops at max_part_bytes); every bomb but the
    # nesting one inflates to 38 MiB or more.
    assert growth[0] < 32 * 1024, f"peak RSS grew {growth[0]} KiB"


def test_archives_within_limits_are_still_read(engine: Engine) -> None:
    data = multipart([text_part(b"see archive"), base64_part(nested_zip(3, CARD), "a.zip")])
    decision, _ = scored(engine, data)
    assert "credit_card" in types(decision)


def test_chunked_parse_matches_the_stdlib_at_a_third_of_the_memory() -> None:
    import tracemalloc

    body = b"".join(b"line %d of a long plain text body\r\n" % i for i in range(300_000))
    data = HEAD + b"Subject: big\r\nContent-Type: text/plain\r\n\r\n" + body
    tracemalloc.start()
    try:
        parsed = parse_bytes(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    reference = email.message_from_bytes(data, policy=email.policy.compat32)
    assert parsed.as_bytes() == reference.as_bytes()
    assert peak < 4 * len(data), f"parse peak {peak} bytes for a {len(data)}-byte message"


def test_parse_fallback_keeps_headers_and_body() -> None:
    message = snapshot(nested_multipart(5000, CARD, subject="deep one"))
    assert message.header("Subject") == "deep one"
    assert message.parse_error is not None
    assert CARD.decode().strip() in str(message.parsed.get_payload())
