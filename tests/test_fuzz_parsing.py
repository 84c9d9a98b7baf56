"""Property-based fuzzing of the parsing path with hypothesis: mutated real mail, headers, params.

Real corpus messages (Phishing Pot, SpamAssassin spam, read in place) are mutated (byte flips,
truncations, duplicated and deleted spans, hostile MIME lines spliced in at line starts) and
scored by the default detectors: every one gets a verdict within the budget and no detector
fails. The parser the detectors share (:func:`mailwarden.message.parse_bytes`) must build the same
tree as the stdlib's one-shot ``BytesParser``, and the linear header helpers must agree with the
stdlib functions they replace (``email.header.decode_header``, ``email.message._parseparam``).
Random header fields, 8-bit included, go through the milter adapter (pymilter's TestCtx).
"""

from __future__ import annotations

import email.errors
import email.header
import email.message
import email.parser
import email.policy
from collections.abc import Iterator
from typing import Any

import Milter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_drivers import Ctx, EngineHolder, drive
from reliability_tools import PHISHING, SPAM, corpus_members, default_config, snapshot

from mailwarden.engine import Engine
from mailwarden.message import decode_header, parse_bytes, split_params
from mailwarden.metrics import Metrics
from mailwarden.mta.adapter import MailwardenMilter

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SPLICES = (
    b"Content-Type: multipart/mixed; boundary=\"x\"\r\n", b"--x\r\n", b"--x--\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Type: text/plain; charset=idna\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Disposition: attachment; filename*=x''%FF; filename*0=y\r\n",
    b"Subject: =?utf-8?B?////?= =?x?Q?=ZZ?=\r\n", b"\r\n", b"\r", b"\x00\xff\xfe", b"=?",
    b"begin 644 x\r\n", b"\t" * 300 + b"\r\n", b"X-Long: " + b"a;" * 2000 + b"\r\n",
)


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    return [data for _, data in corpus_members(PHISHING, every=25) + corpus_members(SPAM, every=10)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    eng = Engine(default_config(tmp_path_factory.mktemp("state")), Metrics())
    assert {"leak", "content", "sending"} <= {d.name for d in eng.detectors}, eng.disabled
    yield eng
    eng.close()


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(["flip", "truncate", "duplicate", "delete", "splice"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 4000))]
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 400))]
        else:
            line_start = data.rfind(b"\n", 0, at) + 1
            data[line_start:line_start] = draw(st.sampled_from(SPLICES))
    return bytes(data)


def tree(message: email.message.Message) -> list[tuple[Any, ...]]:
    """What the detectors read from a parsed message, part by part."""
    out: list[tuple[Any, ...]] = []
    for part in message.walk():
        payload = part._payload  # type: ignore[attr-defined]  # as parsed, nothing decoded
        out.append((part.get_content_type(), part.items(), [type(d) for d in part.defects],
                    payload if isinstance(payload, str) else len(payload), part.get_boundary()))
    return out


def test_mutated_corpus_messages_get_verdicts(engine: Engine, corpus: list[bytes]) -> None:
    budget = engine.config.milter.timeout_seconds

    @FUZZ
    @given(st.data())
    def check(data: st.DataObject) -> None:
        raw = data.draw(mutated(corpus))
        message = snapshot(raw)
        decision = engine.scan(message)
        assert not decision.errors, decision.errors
        assert decision.seconds < budget
        assert decision.ref.startswith("MW-")

    check()


def test_chunked_parser_builds_the_stdlib_tree(corpus: list[bytes]) -> None:
    stdlib = email.parser.BytesParser(policy=email.policy.compat32)

    @FUZZ
    @given(st.data())
    def check(data: st.DataObject) -> None:
        raw = data.draw(mutated(corpus))
        try:
            expected = tree(stdlib.parsebytes(raw))
        except TypeError:  # email.utils.decode_params on mixed RFC 2231 boundary parts
            return
        assert tree(parse_bytes(raw)) == expected

    check()


ENCODED = st.builds(
    lambda cs, enc, text: f"=?{cs}?{enc}?{text}?=",
    st.sampled_from(["utf-8", "UTF-8", "iso-8859-1", "x-bogus", "", "utf-16", "base64", "idna"]),
    st.sampled_from(["q", "Q", "b", "B"]),
    st.text(alphabet="abcXYZ019=+/_ -?é\u00ff", max_size=12),
)
HEADER_TEXT = st.lists(
    st.one_of(ENCODED, st.text(alphabet="ab =?\t\r\n\"'", max_size=8)), max_size=12,
).map("".join)


@FUZZ
@given(HEADER_TEXT)
def test_linear_decode_header_matches_the_stdlib(value: str) -> None:
    # (pymilter's Milter.utils replaces email.base64mime.decode with one that raises
    # ValueError on non-ASCII: both functions call it, so both raise the same.)
    try:
        expected: object = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError) as exc:
        expected = type(exc)
    try:
        got: object = decode_header(value)
    except (email.errors.HeaderParseError, ValueError) as exc:
        got = type(exc)
    assert got == expected


@FUZZ
@given(st.text(alphabet=";\"\\= a*'%\t", max_size=40))
def test_linear_parameter_split_matches_the_stdlib(value: str) -> None:
    reference = email.message._parseparam  # type: ignore[attr-defined]
    assert split_params(value) == reference(value)


HEADER_NAME = st.text(alphabet="ABCXYZabcxyz-_0123456789", min_size=1, max_size=30)
HEADER_VALUE = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\r", b" ").replace(b"\n", b" ")),
    HEADER_TEXT.map(lambda t: t.replace("\r", " ").replace("\n", " ").encode("utf-8")),
    st.sampled_from([b"a;" * 5000, b"=?utf-8?B?w6k=?= " * 2000, b"\xff" * 20000]),
)


def test_random_header_fields_through_the_adapter(tmp_path_factory: pytest.TempPathFactory) -> None:
    engine = Engine(default_config(tmp_path_factory.mktemp("adapter")), Metrics())
    holder = EngineHolder(engine)
    Milter.factory = lambda: MailwardenMilter(holder)

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=25), st.binary(max_size=2000))
    def check(fields: list[tuple[str, bytes]], body: bytes) -> None:
        ctx = Ctx()
        ctx._setsymval("i", "QFUZZ")
        assert ctx.connect_from() in (Milter.CONTINUE, Milter.NOREPLY)
        head = b"".join(n.encode() + b": " + v + b"\r\n" for n, v in fields)
        raw = b"From: <a@example.org>\r\n" + head + b"\r\n" + body
        assert drive(ctx, raw) == Milter.ACCEPT  # observe mode: always delivered
        verdict = ctx._msg["X-Mailwarden-Verdict"]
        assert verdict is not None and "mode=observe; ref=MW-" in verdict
        ctx._close()

    try:
        check()
        assert holder.sessions == 0
        assert failures(engine) == {}
    finally:
        engine.close()


def failures(engine: Engine) -> dict[str, float]:
    """Non-zero callback-error, detector-error and timeout counters of the engine's metrics."""
    out = {}
    for family in engine.metrics.registry.collect():
        if family.name in ("mailwarden_milter_callback_errors", "mailwarden_detector_errors",
                           "mailwarden_scan_timeouts"):
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value:
                    out[f"{sample.name}{sample.labels}"] = sample.value
    assert any(f.name == "mailwarden_detector_errors" for f in engine.metrics.registry.collect())
    return out
