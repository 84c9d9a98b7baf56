"""The message snapshot every detector reads.

The milter adapter (or the CLI's file readers) builds one :class:`Message` per mail: the envelope
(queue ID, sender, recipients, SASL login, client address, direction, time) and the raw bytes of
headers and body, at most ``max_scan_bytes`` of them. Parsing is lazy, done once with the tolerant
``compat32`` policy (real mail breaks ``email.policy.default``), and shared by all detectors
through :meth:`Message.memo`, so text extraction runs once per message whatever reads it.
A message the parser cannot take apart (MIME nested so deep that the stdlib parser's recursion
fails) is parsed again as headers plus one undivided body, and :attr:`Message.parse_error` says
so, instead of failing every detector that reads the tree.
"""

from __future__ import annotations

import binascii
import email.base64mime
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import email.quoprimime
import email.utils
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from mailwarden.verdict import Direction

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Envelope:
    queue_id: str
    mail_from: str
    recipients: tuple[str, ...]
    direction: Direction = Direction.OUTBOUND
    auth_user: str | None = None
    client_addr: str | None = None
    received_at: float = 0.0

    @property
    def sender_identity(self) -> str:
        """The identity sending-pattern state keys on: the SASL login, else the envelope sender."""
        return (self.auth_user or self.mail_from or "").strip().lower()


@dataclass(eq=False)
class Message:
    """One message as scanned: envelope plus raw bytes (possibly a truncated prefix)."""

    envelope: Envelope
    raw: bytes
    size: int
    truncated: bool = False
    source: str = "milter"
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)
    # Re-entrant: computing one artefact may ask for another (extract() inside a detector's memo).
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # Set when the MIME structure could not be parsed and ``parsed`` holds headers + raw body.
    parse_error: str | None = field(default=None, repr=False)

    @cached_property
    def parsed(self) -> email.message.Message:
        try:
            return parse_bytes(self.raw)
        except Exception as exc:  # noqa: BLE001 - a parser bug must not fail every detector
            # Thousands of nested multiparts exhaust the stdlib parser's recursion (and a
            # cached_property does not cache an exception: every detector would parse again).
            reason = "too deep" if isinstance(exc, RecursionError) else "unreadable"
            self.parse_error = f"MIME structure {reason} to parse ({type(exc).__name__})"
            parser = email.parser.BytesParser(policy=POLICY)
            return parser.parsebytes(self.raw, headersonly=True)

    def header(self, name: str) -> str | None:
        """A header as text (RFC 2047 decoded where possible), or None."""
        value = self.parsed.get(name)
        if value is None:
            return None
        return decode_header_text(value)

    @property
    def message_id(self) -> str | None:
        mid = self.header("Message-ID")
        return mid.strip() if mid else None

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Compute a derived artefact (extracted text, features) once per message."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = compute()
            value: T = self._memo[key]
            return value


class MimePart(email.message.Message):
    """compat32's message class, hardened: header parameters (boundary, charset, filename) are
    parsed in linear time and without raising (the stdlib's parameter splitter rescans the header
    from its start for every ``;`` inside quotes, so a 200 KB Content-Type costs seconds in the
    parser itself, and RFC 2231 continuations mixed with an unnumbered part, ``boundary*=a;
    boundary*0=b``, raise TypeError from ``email.utils.decode_params``), and ``get_payload()``
    does not raise for 8-bit text under a charset such as ``idna``."""

    def get_payload(self, i: Any = None, decode: bool = False) -> Any:  # type: ignore[override]
        """As the stdlib's, but never raising for 8-bit text under a codec that refuses
        ``errors="replace"`` (``charset=idna``, ``punycode``): read as ASCII with replacement,
        which is what the stdlib does for a charset it does not know."""
        try:
            return super().get_payload(i, decode)  # type: ignore[call-overload]
        except UnicodeError:
            raw = getattr(self, "_payload", None)
            if decode or i is not None or not isinstance(raw, str):
                raise
            return raw.encode("ascii", "surrogateescape").decode("ascii", "replace")

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        missing = object()
        value = self.get(header, missing)
        if value is missing:
            return failobj
        params = []
        for param in split_params(str(value)):
            name, _, val = param.partition("=")
            params.append((name.strip(), val.strip()))
        try:
            return email.utils.decode_params(params)
        except (TypeError, ValueError):  # inconsistent RFC 2231 parts: take them literally
            quoted = [(name, f'"{email.utils.quote(email.utils.unquote(val))}"')
                      for name, val in params[1:]]
            return params[:1] + quoted


POLICY = email.policy.compat32.clone(message_factory=MimePart)
_SEMICOLON = re.compile(";")


def split_params(value: str) -> list[str]:
    """``email.message._parseparam`` (``;``-separated, a ``;`` inside quotes kept, ``name=``
    lowered) with running quote counts instead of a rescan per candidate ``;``."""
    semis = [m.start() for m in _SEMICOLON.finditer(value)]
    out, start, index = [], 0, 0
    while True:
        while index < len(semis) and semis[index] < start:
            index += 1
        end, quotes, prev = len(value), 0, start
        for index in range(index, len(semis)):  # noqa: B020 - resumes where the last ended
            pos = semis[index]
            quotes += value.count('"', prev, pos) - value.count('\\"', prev, pos)
            prev = pos
            if pos == start or quotes % 2 == 0:
                end = pos
                break
        field = value[start:end]
        if "=" in field:
            name, _, val = field.partition("=")
            field = name.strip().lower() + "=" + val.strip()
        out.append(field.strip())
        if end >= len(value):
            return out
        start = end + 1


PARSE_CHUNK = 64 * 1024


def parse_bytes(raw: bytes) -> email.message.Message:
    """The ``compat32`` parse of ``raw`` fed in chunks: the same tree as ``BytesParser``, which
    decodes and splits the whole message at once, at about a third of its peak memory."""
    parser = email.parser.BytesFeedParser(policy=POLICY)
    view = memoryview(raw)
    for start in range(0, len(raw), PARSE_CHUNK):
        parser.feed(bytes(view[start:start + PARSE_CHUNK]))
    return parser.close()


def decode_header_text(value: object) -> str:
    """Decode a header value (str, email.header.Header or bytes) to text without raising."""
    try:
        raw = str(value)
        parts = decode_header(raw)
        out = []
        for chunk, charset in parts:
            if isinstance(chunk, bytes):
                out.append(_decode_bytes(chunk, charset))
            else:
                out.append(chunk)
        return "".join(out)
    except Exception:  # noqa: BLE001 - malformed headers are common; never fail on one
        return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# email.header.ecre: an RFC 2047 encoded word (charset, q/b, text), non-greedy as the stdlib's.
_ENCODED_WORD = re.compile(r"=\?(?P<charset>[^?]*?)\?(?P<encoding>[qQbB])\?(?P<encoded>.*?)\?=",
                           re.MULTILINE)


def decode_header(header: str) -> list[tuple[bytes | str, str | None]]:
    """``email.header.decode_header`` for a string, in linear time.

    The stdlib function pops list heads and deletes from a list in a loop, so a long header of
    encoded words (a 1 MB Subject: of ``=?utf-8?B?...?=``) costs minutes; this is the same
    algorithm (same results, same ``HeaderParseError``) with list indexes and joins."""
    if not _ENCODED_WORD.search(header):
        return [(header, None)]
    words: list[tuple[str, str | None, str | None]] = []
    for line in header.splitlines():
        parts = _ENCODED_WORD.split(line)
        for index in range(0, len(parts), 4):
            unencoded = parts[index].lstrip() if index == 0 else parts[index]
            if unencoded:
                words.append((unencoded, None, None))
            if index + 3 < len(parts):
                charset, encoding, encoded = parts[index + 1:index + 4]
                words.append((encoded, encoding.lower(), charset.lower()))
    # Whitespace between two encoded words is dropped.
    words = [w for n, w in enumerate(words)
             if not (0 < n < len(words) - 1 and words[n + 1][1] and words[n - 1][1]
                     and w[0].isspace())]
    return _collapse([_decode_word(*w) for w in words])


def _decode_word(text: str, encoding: str | None, charset: str | None) -> tuple[bytes | str,
                                                                               str | None]:
    if encoding is None:
        return text, charset
    if encoding == "q":
        return email.quoprimime.header_decode(text), charset
    padding = len(text) % 4  # Postel's law: add missing padding
    if padding:
        text += "==="[:4 - padding]
    try:
        return email.base64mime.decode(text), charset
    except binascii.Error:
        raise email.errors.HeaderParseError("Base64 decoding error") from None


def _collapse(decoded: list[tuple[bytes | str, str | None]]) -> list[tuple[bytes | str,
                                                                             str | None]]:
    """Bytes, with consecutive words of the same charset joined (unencoded ones by a space)."""
    runs: list[tuple[list[bytes], str | None]] = []
    for word, charset in decoded:
        data = bytes(word, "raw-unicode-escape") if isinstance(word, str) else word
        if runs and runs[-1][1] == charset:
            runs[-1][0].append(data)
        else:
            runs.append(([data], charset))
    return [((b" " if charset is None else b"").join(chunks), charset) for chunks, charset in runs]


def _decode_bytes(chunk: bytes, charset: str | None) -> str:
    try:
        return chunk.decode(charset or "ascii")
    except (LookupError, UnicodeDecodeError):
        return chunk.decode("utf-8", "replace")


def addresses(value: str | None) -> list[str]:
    """Bare addresses from an address header value."""
    if not value:
        return []
    return [addr for _, addr in email.utils.getaddresses([value]) if "@" in addr]


def domain_of(address: str) -> str:
    addr = address.strip().strip("<>").lower()
    return addr.rpartition("@")[2] if "@" in addr else ""

