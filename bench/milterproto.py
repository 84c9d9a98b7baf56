"""Wire format of the Sendmail milter protocol (version 6), seen from the MTA side.

The bench load generator (``miltergen.py``) plays the MTA: it sends the commands below to any
milter socket and reads the milter's replies, the way Postfix's ``milter8`` client does. A packet
is a 4-byte big-endian length (command byte included), one command byte, then the payload
(NUL-terminated strings, big-endian 32-bit integers, raw body bytes). Writes are buffered and
flushed only when a reply is awaited, as Postfix's stream does, so commands the milter negotiated
"no reply" for travel together with the next awaited one. Written from the protocol as implemented
by libmilter/pymilter and Postfix; no code of theirs is used.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from enum import IntFlag

# Commands, MTA to milter.
ABORT, BODY, CONNECT, MACRO, EOM = b"A", b"B", b"C", b"D", b"E"
HELO, HEADER, MAIL, EOH, OPTNEG = b"H", b"L", b"M", b"N", b"O"
QUIT, RCPT, DATA, UNKNOWN = b"Q", b"R", b"T", b"U"
COMMAND_NAMES = {
    ABORT: "ABORT", BODY: "BODY", CONNECT: "CONNECT", MACRO: "MACRO", EOM: "EOM", HELO: "HELO",
    HEADER: "HEADER", MAIL: "MAIL", EOH: "EOH", OPTNEG: "OPTNEG", QUIT: "QUIT", RCPT: "RCPT",
    DATA: "DATA", UNKNOWN: "UNKNOWN",
}

# Replies, milter to MTA: final decisions for the step, then modification requests (EOM only).
REPLY_NAMES = {
    b"a": "accept", b"c": "continue", b"d": "discard", b"r": "reject", b"t": "tempfail",
    b"y": "replycode", b"s": "skip", b"4": "shutdown", b"f": "connfail", b"p": "progress",
    b"q": "quarantine", b"h": "addheader", b"i": "insheader", b"m": "chgheader",
    b"e": "chgfrom", b"+": "addrcpt", b"2": "addrcpt_par", b"-": "delrcpt", b"b": "replbody",
    b"l": "setsymlist", b"O": "optneg",
}
FINAL_REPLIES = frozenset(bytes([c]) for c in b"acdrty4f")
MODIFICATIONS = frozenset(bytes([c]) for c in b"hime+2-b")


class Proto(IntFlag):
    """SMFIP_* bits: steps the milter does not want (NO*) and steps it will not answer (NR_*)."""

    NOCONNECT = 1 << 0
    NOHELO = 1 << 1
    NOMAIL = 1 << 2
    NORCPT = 1 << 3
    NOBODY = 1 << 4
    NOHDRS = 1 << 5
    NOEOH = 1 << 6
    NR_HDR = 1 << 7
    NOUNKNOWN = 1 << 8
    NODATA = 1 << 9
    SKIP = 1 << 10
    RCPT_REJ = 1 << 11
    NR_CONN = 1 << 12
    NR_HELO = 1 << 13
    NR_MAIL = 1 << 14
    NR_RCPT = 1 << 15
    NR_DATA = 1 << 16
    NR_UNKN = 1 << 17
    NR_EOH = 1 << 18
    NR_BODY = 1 << 19
    HDR_LEADSPC = 1 << 20


class Actions(IntFlag):
    """SMFIF_* bits: the modifications a milter may request at end of message."""

    ADDHDRS = 1 << 0
    CHGBODY = 1 << 1
    ADDRCPT = 1 << 2
    DELRCPT = 1 << 3
    CHGHDRS = 1 << 4
    QUARANTINE = 1 << 5
    CHGFROM = 1 << 6
    ADDRCPT_PAR = 1 << 7
    SETSYMLIST = 1 << 8


VERSION = 6
# What a version 6 MTA (Postfix 3.x) offers: every step can be skipped or left unanswered.
MTA_PROTOCOL = Proto((1 << 21) - 1)
MTA_ACTIONS = Actions((1 << 9) - 1)
# For each step: the command, the flag that skips it, the flag that drops its reply.
STEP_FLAGS: dict[bytes, tuple[Proto, Proto]] = {
    CONNECT: (Proto.NOCONNECT, Proto.NR_CONN), HELO: (Proto.NOHELO, Proto.NR_HELO),
    MAIL: (Proto.NOMAIL, Proto.NR_MAIL), RCPT: (Proto.NORCPT, Proto.NR_RCPT),
    DATA: (Proto.NODATA, Proto.NR_DATA), HEADER: (Proto.NOHDRS, Proto.NR_HDR),
    EOH: (Proto.NOEOH, Proto.NR_EOH), BODY: (Proto.NOBODY, Proto.NR_BODY),
    EOM: (Proto(0), Proto(0)),
}
# SMFIM_* macro stage numbers, as used in the milter's SETSYMLIST negotiation.
MACRO_STAGES: dict[int, bytes] = {0: CONNECT, 1: HELO, 2: MAIL, 3: RCPT, 4: DATA, 5: EOM, 6: EOH}
MAX_BODY_CHUNK = 65535
_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """The milter sent something the protocol does not allow, or closed the connection."""


def packet(command: bytes, payload: bytes = b"") -> bytes:
    return _LENGTH.pack(len(payload) + 1) + command + payload


def cstrings(*parts: bytes) -> bytes:
    """NUL-terminated strings, back to back."""
    return b"".join(part + b"\0" for part in parts)


def optneg_payload(version: int = VERSION, actions: int = MTA_ACTIONS,
                   protocol: int = MTA_PROTOCOL) -> bytes:
    return struct.pack(">III", version, actions, protocol)


@dataclass(frozen=True, slots=True)
class Reply:
    code: bytes
    data: bytes = b""

    @property
    def name(self) -> str:
        return REPLY_NAMES.get(self.code, f"unknown-{self.code!r}")


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What the milter answered to OPTNEG: its version, actions, steps, and macro wishes."""

    version: int
    actions: Actions
    protocol: Proto
    macro_lists: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)

    def sends(self, command: bytes) -> bool:
        """Whether the MTA sends this step at all (SMFIP_NO* not negotiated)."""
        skip_flag, _ = STEP_FLAGS[command]
        return not (skip_flag and self.protocol & skip_flag)

    def awaits(self, command: bytes) -> bool:
        """Whether the MTA waits for a reply to this step (SMFIP_NR_* not negotiated)."""
        _, noreply_flag = STEP_FLAGS[command]
        return not (noreply_flag and self.protocol & noreply_flag)

    def as_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "actions": sorted(flag.name or "" for flag in Actions if self.actions & flag),
            "protocol": sorted(flag.name or "" for flag in Proto if self.protocol & flag),
            "macro_lists": {COMMAND_NAMES[c]: [m.decode("latin-1") for m in names]
                            for c, names in self.macro_lists.items()},
        }


def parse_optneg(reply: Reply, offered: Proto = MTA_PROTOCOL) -> Negotiated:
    """Decode the milter's OPTNEG reply and check it against what was offered."""
    if reply.code != OPTNEG or len(reply.data) < 12:
        raise ProtocolError(f"bad negotiation reply {reply.name} ({len(reply.data)} bytes)")
    version, actions, protocol = struct.unpack(">III", reply.data[:12])
    if version > VERSION or version < 2:
        raise ProtocolError(f"milter protocol version {version} not supported")
    if actions & ~MTA_ACTIONS:
        raise ProtocolError(f"milter asks for actions 0x{actions:x} not offered")
    lists: dict[bytes, tuple[bytes, ...]] = {}
    rest = reply.data[12:]
    while len(rest) >= 5:
        (stage,) = struct.unpack(">I", rest[:4])
        names, _, rest = rest[4:].partition(b"\0")
        if stage in MACRO_STAGES:
            lists[MACRO_STAGES[stage]] = tuple(names.replace(b",", b" ").split())
    # Steps the MTA did not offer stay with the MTA's defaults, as in Postfix.
    return Negotiated(version, Actions(actions), Proto(protocol & offered), lists)


def parse_socket(spec: str) -> tuple[int, str | tuple[str, int]]:
    """(address family, address) for ``unix:/p``, ``local:/p``, ``inet:PORT@HOST``,
    ``inet:HOST:PORT`` (Postfix spelling) or ``inet6:PORT@HOST``."""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local") and rest:
        return socket.AF_UNIX, rest
    if kind in ("inet", "inet6") and rest:
        family = socket.AF_INET6 if kind == "inet6" else socket.AF_INET
        if "@" in rest:
            port, _, host = rest.partition("@")
        else:
            host, _, port = rest.rpartition(":")
        return family, (host.strip("[]") or "127.0.0.1", int(port))
    raise ValueError(f"unsupported milter socket {spec!r}: use unix:/path or inet:PORT@HOST")


class Channel:
    """One MTA-to-milter connection: buffered writes, flushed when a reply is read."""

    def __init__(self, spec: str, timeout: float, nodelay: bool = False) -> None:
        family, address = parse_socket(spec)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(address)
        except OSError:
            self.sock.close()
            raise
        if nodelay and family != socket.AF_UNIX:  # Postfix leaves Nagle on (one big write)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.pending: list[bytes] = []

    def send(self, command: bytes, payload: bytes = b"") -> None:
        self.pending.append(packet(command, payload))

    def flush(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            self.sock.sendall(data)

    def read_reply(self) -> Reply:
        self.flush()
        head = self.reader.read(4)
        if len(head) < 4:
            raise ProtocolError("milter closed the connection")
        (length,) = _LENGTH.unpack(head)
        if length < 1 or length > 1 << 27:
            raise ProtocolError(f"bad reply packet length {length}")
        body = self.reader.read(length)
        if len(body) < length:
            raise ProtocolError("milter closed the connection inside a reply")
        return Reply(body[:1], body[1:])

    def close(self) -> None:
        try:
            self.flush()
        except OSError:
            pass
        finally:
            self.reader.close()
            self.sock.close()
