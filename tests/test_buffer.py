"""The message buffer: exact bytes, the scan limit, spooling to a file beyond spool_bytes."""

from __future__ import annotations

import pytest

from mailwarden.mta.buffer import MessageBuffer


def fill(buffer: MessageBuffer, body: bytes) -> bytes:
    buffer.add_header("Subject", b"caf\xe9 \xff")
    buffer.add_header("X-Empty", b"")
    buffer.end_headers()
    for i in range(0, len(body), 1000):
        buffer.add_body(body[i:i + 1000])
    return b"Subject: caf\xe9 \xff\r\nX-Empty: \r\n\r\n" + body


@pytest.mark.parametrize("spool", [0, 10, 4096, 10**9])
def test_bytes_are_kept_exactly_in_memory_or_spooled(spool: int) -> None:
    body = bytes(range(256)) * 40
    buffer = MessageBuffer(max_scan_bytes=10**9, spool_bytes=spool)
    expected = fill(buffer, body)
    assert buffer.getvalue() == expected
    assert buffer.getvalue() == expected  # reading does not consume
    buffer.add_body(b"tail")
    assert buffer.getvalue() == expected + b"tail"
    assert buffer.size == len(expected) + 4 and not buffer.truncated
    assert buffer.header_counts == {"subject": 1, "x-empty": 1}
    buffer.close()


@pytest.mark.parametrize("spool", [0, 100, 10**9])
def test_nothing_past_the_scan_limit_is_kept(spool: int) -> None:
    buffer = MessageBuffer(max_scan_bytes=1500, spool_bytes=spool)
    expected = fill(buffer, b"x" * 5000)
    assert buffer.getvalue() == expected[:1500]
    assert buffer.size == len(expected) and buffer.truncated
    buffer.close()


def test_headers_end_once_even_without_an_explicit_end() -> None:
    buffer = MessageBuffer(max_scan_bytes=10**6, spool_bytes=10**6)
    buffer.add_header("A", b"1")
    assert buffer.getvalue() == b"A: 1\r\n\r\n"
    buffer.add_body(b"body")
    assert buffer.getvalue() == b"A: 1\r\n\r\nbody"
