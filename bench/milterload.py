"""Turn stored messages into what an MTA sends a milter: envelope, header events, body chunks.

Part of the bench load generator (``miltergen.py``): each message read with
``mailwarden.files.sources.iter_sources`` is prepared once, before the timed run, into the pieces
Postfix would send: the envelope (sender from ``From:``, recipients from ``To:``/``Cc:`` unless
given), headers split and unfolded the way Postfix's MIME reader does (name, value with continuation
lines joined by a newline, a non-header line ending the header block), and the body with CRLF line
ends cut into chunks of at most 65,535 bytes. ``MacroSource`` supplies the macros Postfix sends
before each step (``j``, ``{daemon_name}``, ``{client_addr}``, ``i``, ``{auth_authen}``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from milterproto import BODY, CONNECT, DATA, EOH, EOM, HEADER, HELO, MAIL, MAX_BODY_CHUNK, RCPT

from mailwarden.message import addresses, domain_of

_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
DEFAULT_SENDER = "bench-sender@example.com"
DEFAULT_RECIPIENT = "bench-rcpt@example.net"
MAX_RECIPIENTS = 100


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    source: str
    sender: str
    recipients: tuple[str, ...]
    headers: tuple[tuple[bytes, bytes], ...]  # (name, raw value after the colon)
    body_chunks: tuple[bytes, ...]
    size: int


def split_message(data: bytes) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """Headers (name, value after the colon, folded lines joined by ``\\n``) and body lines."""
    lines = [line.rstrip(b"\r") for line in data.split(b"\n")]
    if lines and lines[-1] == b"":
        lines.pop()
    headers: list[tuple[bytes, bytes]] = []
    for index, line in enumerate(lines):
        if line == b"":
            return headers, lines[index + 1:]
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\n" + line)
            continue
        match = _HEADER_NAME.match(line)
        if match is None:
            return headers, lines[index:]
        headers.append((match.group(1), line[match.end():]))
    return headers, []


def body_chunks(lines: Sequence[bytes]) -> tuple[bytes, ...]:
    body = b"".join(line + b"\r\n" for line in lines)
    return tuple(body[i:i + MAX_BODY_CHUNK] for i in range(0, len(body), MAX_BODY_CHUNK))


def _header_addresses(headers: Sequence[tuple[bytes, bytes]], names: Sequence[bytes]) -> list[str]:
    found: list[str] = []
    wanted = {name.lower() for name in names}
    for name, value in headers:
        if name.lower() in wanted:
            text = value.decode("utf-8", "replace").replace("\n", " ")
            found.extend(addr for addr in addresses(text) if addr not in found)
    return found


def prepare(source: str, data: bytes, sender: str | None = None,
            recipients: Sequence[str] | None = None) -> PreparedMessage:
    """One message as the MTA would present it; explicit sender/recipients override headers."""
    headers, lines = split_message(data)
    if sender is None:
        from_addrs = _header_addresses(headers, [b"From"])
        sender = from_addrs[0] if from_addrs else DEFAULT_SENDER
    if not recipients:
        recipients = _header_addresses(headers, [b"To", b"Cc"])[:MAX_RECIPIENTS]
    return PreparedMessage(
        source=source, sender=sender, recipients=tuple(recipients or [DEFAULT_RECIPIENT]),
        headers=tuple(headers), body_chunks=body_chunks(lines), size=len(data),
    )


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The SMTP client and server the generated sessions pretend to be."""

    hostname: str = "bench.localdomain"
    client_name: str = "localhost"
    client_addr: str = "127.0.0.1"
    helo: str = "bench-client.localdomain"
    auth: str = "sender"  # "none", "sender" ({auth_authen} = envelope sender) or a fixed login
    tcp_nodelay: bool = False  # Postfix keeps Nagle on and writes each flush at once


# Postfix 3.7 default milter_*_macros, plus {client_addr}/{client_name} at connect time.
DEFAULT_MACROS: dict[bytes, tuple[str, ...]] = {
    CONNECT: ("j", "{daemon_name}", "{daemon_addr}", "v", "_", "{client_addr}", "{client_name}"),
    HELO: ("{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"),
    MAIL: ("i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}",
           "{mail_mailer}"),
    RCPT: ("i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"),
    DATA: ("i",), EOH: ("i",), EOM: ("i",),
}


_MACRO_LIST_OF = {HEADER: EOH, BODY: EOM}


class MacroSource:
    """Macro name/value pairs per step; undefined macros are left out, as Postfix does."""

    def __init__(self, client: ClientInfo, wanted: dict[bytes, tuple[bytes, ...]] | None = None):
        self.client = client
        self.names = dict(DEFAULT_MACROS)
        for command, names in (wanted or {}).items():
            self.names[command] = tuple(n.decode("latin-1") for n in names)

    def connection(self, client_port: int) -> dict[str, str]:
        c = self.client
        return {"j": c.hostname, "{daemon_name}": c.hostname, "{daemon_addr}": "127.0.0.1",
                "v": "Postfix 3.7 (mailwarden bench)", "_": f"{c.client_name} [{c.client_addr}]",
                "{client_addr}": c.client_addr, "{client_name}": c.client_name,
                "{client_port}": str(client_port)}

    def envelope(self, msg: PreparedMessage) -> dict[str, str]:
        """MAIL-stage values; no queue ID yet (Postfix opens the queue file at the first
        accepted recipient)."""
        values = {"{mail_addr}": msg.sender, "{mail_host}": domain_of(msg.sender),
                  "{mail_mailer}": "smtp"}
        login = msg.sender if self.client.auth == "sender" else self.client.auth
        if self.client.auth != "none" and login:
            values.update({"{auth_type}": "PLAIN", "{auth_authen}": login})
        return values

    def payload(self, command: bytes, values: dict[str, str]) -> bytes | None:
        """The MACRO payload for this step, or None when the step has no macro list.

        Postfix sends the packet even when none of the listed macros has a value (HELO without
        TLS), and sends the end-of-header list with each HEADER and the end-of-data list with
        each BODY chunk."""
        names = self.names.get(_MACRO_LIST_OF.get(command, command), ())
        if not names:
            return None
        out = [command]
        for name in names:
            value = values.get(name)
            if value:
                out += [name.encode("latin-1"), b"\0", value.encode("utf-8", "surrogateescape"),
                        b"\0"]
        return b"".join(out)


_WORDS = (b"quarterly figures meeting agenda attached please review the draft before friday "
          b"thanks regards project budget schedule update customer invoice shipment").split()


def synthetic_message(index: int, size: int) -> bytes:
    """A plain outbound-looking message of about ``size`` bytes, deterministic per ``index``."""
    head = (f"From: Sender {index % 50} <sender{index % 50}@example.com>\r\n"
            f"To: rcpt{index % 200}@example.net\r\n"
            f"Subject: bench message {index}\r\n"
            f"Message-ID: <bench.{index}@example.com>\r\n"
            "Date: Mon, 03 Jun 2024 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    lines, length, n = [], len(head), index
    while length < size:
        words = [_WORDS[(n + k * 7) % len(_WORDS)] for k in range(12)]
        line = b" ".join(words) + b"\r\n"
        lines.append(line)
        length += len(line)
        n += 1
    return head + b"".join(lines)
