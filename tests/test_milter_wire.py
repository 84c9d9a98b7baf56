"""The daemon over the raw milter protocol, as an MTA other than Postfix may drive it.

A real ``mailwarden run`` (libmilter, pymilter's C layer) is driven with the bench's protocol
codec (``bench/milterproto.py``): what it asks for at negotiation, an IPv4-mapped client address
(family ``6``, as a dual-stack Sendmail reports an IPv4 client), a header field whose name is not
UTF-8 (pymilter's C layer fails to decode it before any Python callback runs), a version-2 MTA
that offers header additions only, and SIGTERM (the socket file must go with the daemon).
"""

from __future__ import annotations

import signal
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import write_config
from milter_process import MilterProcess, PreforkMilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from milterproto import (
    BODY,
    CONNECT,
    EOH,
    EOM,
    HEADER,
    MACRO,
    MAIL,
    MODIFICATIONS,
    MTA_ACTIONS,
    OPTNEG,
    QUIT,
    RCPT,
    Actions,
    Channel,
    Reply,
    cstrings,
    optneg_payload,
    parse_optneg,
)

PEM = ("-----BEGIN RSA PRIVATE KEY-----\r\n" + "\r\n".join(
    ["MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"] * 12)
    + "\r\n-----END RSA PRIVATE KEY-----\r\n").encode()
HEADERS = [(b"From", b"Alice <alice@example.org>"), (b"To", b"bob@example.net"),
           (b"Subject", b"wire"), (b"Message-ID", b"<wire@example.org>")]


class Wire:
    """One MTA-side milter connection: negotiate, then one message, step by step."""

    def __init__(self, spec: str, offer: int = MTA_ACTIONS) -> None:
        self.channel = Channel(spec, 30)
        self.channel.send(OPTNEG, optneg_payload(actions=offer))
        self.negotiated = parse_optneg(self.channel.read_reply())

    def step(self, command: bytes, payload: bytes, macros: dict[bytes, bytes] | None = None,
             ) -> Reply | None:
        if macros:
            pairs = [part for item in macros.items() for part in item]
            self.channel.send(MACRO, command + cstrings(*pairs))
        if not self.negotiated.sends(command):
            return None
        self.channel.send(command, payload)
        return self.channel.read_reply() if self.negotiated.awaits(command) else None

    def message(self, family: bytes, address: str, headers: list[tuple[bytes, bytes]],
                body: bytes, queue_id: bytes = b"WIRE1") -> tuple[Reply, list[Reply]]:
        """CONNECT .. EOM; the final reply and the modification requests before it."""
        connect = cstrings(b"client.example") + family + struct.pack(">H", 40000)
        self.step(CONNECT, connect + cstrings(address.encode()))
        self.step(MAIL, cstrings(b"<alice@example.org>"), {b"i": queue_id})
        self.step(RCPT, cstrings(b"<bob@example.net>"), {b"i": queue_id})
        for name, value in headers:
            self.step(HEADER, cstrings(name, value))
        self.step(EOH, b"")
        for start in range(0, len(body), 65535):
            self.step(BODY, body[start:start + 65535])
        self.channel.send(EOM, b"")
        edits: list[Reply] = []
        while True:
            reply = self.channel.read_reply()
            if reply.code in MODIFICATIONS or reply.code in (b"q", b"p"):
                edits.append(reply)
                continue
            self.channel.send(QUIT)
            self.channel.close()
            return reply, edits


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[MilterProcess]:
    milter = MilterProcess(write_config(tmp_path, extra="[detectors.leak]\nenabled = true\n"),
                           tmp_path / "mw.sock", "enforce")
    milter.start()
    yield milter
    milter.stop()


def held(edits: list[Reply]) -> bool:
    return any(r.code == b"q" for r in edits)


def added(edits: list[Reply]) -> list[bytes]:
    return [r.data.split(b"\0")[0] for r in edits if r.code == b"h"]


def header_value(edits: list[Reply], name: bytes) -> bytes:
    values = [r.data.split(b"\0")[1] for r in edits if r.code == b"h"
              and r.data.split(b"\0")[0] == name]
    assert len(values) == 1, edits
    return values[0]


def test_negotiation_asks_only_for_the_actions_used(daemon: MilterProcess) -> None:
    wire = Wire(daemon.spec)
    assert wire.negotiated.actions == Actions.ADDHDRS | Actions.CHGHDRS | Actions.QUARANTINE
    wire.channel.close()


@pytest.mark.parametrize(("family", "address"), [
    (b"4", "127.0.0.1"), (b"6", "::1"), (b"6", "::ffff:127.0.0.1")])
def test_a_private_key_from_an_internal_client_is_held_however_the_address_is_spelled(
        daemon: MilterProcess, family: bytes, address: str) -> None:
    reply, edits = Wire(daemon.spec).message(family, address, HEADERS, b"key:\r\n" + PEM)
    assert reply.code == b"a" and held(edits), (address, reply, edits)
    assert b"X-Mailwarden-Verdict" in added(edits)


def test_a_header_name_that_is_not_utf8_is_logged_with_the_queue_id_and_counted(
        daemon: MilterProcess) -> None:
    headers = [*HEADERS, (b"X-Caf\xe9", b"value"), (b"X-After", b"still read")]
    reply, edits = Wire(daemon.spec).message(b"4", "192.0.2.7", headers, b"Hello.\r\n",
                                             queue_id=b"8BITQ1")
    assert reply.code == b"a" and b"X-Mailwarden-Verdict" in added(edits)  # still scanned
    log = daemon.log()
    assert "qid=8BITQ1 header field with a non-UTF-8 name (6 bytes)" in log, log[-2000:]
    assert "UnicodeDecodeError" not in log  # no bare traceback
    assert daemon.metric("mailwarden_milter_callback_errors_total", callback="header") == 1


def test_with_on_error_tempfail_an_unreadable_header_defers_the_message_at_its_end(
        tmp_path: Path) -> None:
    """Not a tempfail from pymilter's C layer at the header step, which has no reply: the MTA
    would wait for the end-of-message reply until its timeout."""
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("[milter]\n", '[milter]\non_error = "tempfail"\n'))
    milter = MilterProcess(config, tmp_path / "mw.sock", "enforce").start()
    try:
        headers = [*HEADERS, (b"X-Caf\xe9", b"value")]
        reply, edits = Wire(milter.spec).message(b"4", "127.0.0.1", headers, b"Hello.\r\n")
        assert reply.code == b"y" and reply.data.startswith(b"451 4.7.1"), reply
        assert not edits
        assert "qid=WIRE1 header field with a non-UTF-8 name" in milter.log()
    finally:
        milter.stop()


def test_a_version_2_mta_without_quarantine_gets_the_fallback(daemon: MilterProcess) -> None:
    wire = Wire(daemon.spec, offer=Actions.ADDHDRS)
    assert wire.negotiated.actions == Actions.ADDHDRS
    marked = [*HEADERS, (b"X-Mailwarden-Test", b"quarantine")]
    reply, edits = wire.message(b"4", "127.0.0.1", marked, b"Hello.\r\n")
    assert reply.code == b"y" and reply.data.startswith(b"451 4.7.1"), reply
    assert not held(edits) and not added(edits)
    assert daemon.metric("mailwarden_quarantine_fallbacks_total", action="tempfail") == 1
    assert "quarantine record written" not in daemon.log()


def test_a_large_plain_text_body_is_scanned_whole_not_reported_unscannable(
        daemon: MilterProcess) -> None:
    """5 MiB of plain text (more than the 4M characters kept from attachments), a card number
    in its last line: found, and nothing reported unscannable."""
    line = b"The quarterly numbers look fine and the meeting is on Tuesday at ten.\r\n"
    body = line * (5 * 1024 * 1024 // len(line)) + b"Card 4539 5787 6362 1486 exp 12/27.\r\n"
    reply, edits = Wire(daemon.spec).message(b"4", "127.0.0.1", HEADERS, body)
    assert reply.code == b"a"
    findings = header_value(edits, b"X-Mailwarden-Findings")
    assert b"unscannable_attachment" not in findings and b"credit_card=1" in findings, findings


@pytest.mark.parametrize("kind", [MilterProcess, PreforkMilter])
def test_sigterm_exits_cleanly_and_removes_the_socket_file(
        tmp_path: Path, kind: type[MilterProcess]) -> None:
    milter = kind(write_config(tmp_path), tmp_path / "mw.sock", "enforce")
    milter.start()
    try:
        assert milter.socket_path.exists()
        milter.signal(signal.SIGTERM)
        assert milter.proc is not None and milter.proc.wait(timeout=30) == 0
        assert not milter.socket_path.exists()
    finally:
        milter.kill()
