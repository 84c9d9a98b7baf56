"""One MTA-to-milter conversation, step by step, as Postfix's milter client runs it.

Used by the bench load generator (``miltergen.py``) per worker thread. A session is one SMTP
connection: socket connect, OPTNEG, CONNECT, HELO, then for each message MAIL, RCPT..., DATA,
HEADER..., EOH, BODY chunks, EOM, and an ABORT that resets the milter's message state before the
next MAIL; QUIT at the end. Macros go before each step (also before steps the milter asked to skip,
as Postfix does), steps negotiated away (SMFIP_NO*) are not sent, and replies are read only where
the milter did not negotiate SMFIP_NR_*. A final reply other than CONTINUE ends the message (or,
at CONNECT/HELO, the connection) the way Postfix treats it.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from milterload import ClientInfo, MacroSource, PreparedMessage
from milterproto import (
    ABORT,
    BODY,
    COMMAND_NAMES,
    CONNECT,
    DATA,
    EOH,
    EOM,
    FINAL_REPLIES,
    HEADER,
    HELO,
    MACRO,
    MAIL,
    MODIFICATIONS,
    OPTNEG,
    QUIT,
    RCPT,
    Channel,
    Negotiated,
    Proto,
    ProtocolError,
    Reply,
    cstrings,
    optneg_payload,
    parse_optneg,
)


@dataclass
class Tally:
    """Per-worker counts of commands sent and replies read, by command name."""

    sent: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Tally) -> None:
        self.sent.update(other.sent)
        self.replies.update(other.replies)


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: str  # accept, continue, reject, tempfail, discard, shutdown, connfail, error
    stage: str  # the step that decided (EOM normally)
    quarantined: bool = False
    modifications: tuple[str, ...] = ()
    replycode: str | None = None  # "550 5.7.1" for SMFIR_REPLYCODE, text left out
    error: str | None = None


def _decided(reply: Reply | None) -> bool:
    return reply is not None and reply.code != b"c"


class Session:
    """A milter connection carrying one or more messages; not thread-safe (one per worker)."""

    def __init__(self, spec: str, timeout: float, client: ClientInfo, tally: Tally) -> None:
        self.spec, self.timeout, self.client, self.tally = spec, timeout, client, tally
        self.channel: Channel | None = None
        self.negotiated: Negotiated | None = None
        self.macros = MacroSource(client)
        self.conn_decision: Outcome | None = None
        self.skip_type: bytes | None = None
        self.quarantined = False
        self.modifications: list[str] = []
        self.last_step = "OPTNEG"

    # -- connection --------------------------------------------------------------------------
    def open(self) -> None:
        """Connect, negotiate, and send CONNECT and HELO."""
        self.channel = Channel(self.spec, self.timeout, self.client.tcp_nodelay)
        self._send(OPTNEG, optneg_payload())
        reply = self.channel.read_reply()
        self.tally.replies["OPTNEG"] += 1
        self.negotiated = parse_optneg(reply)
        self.macros = MacroSource(self.client, self.negotiated.macro_lists)
        port = self.channel.sock.getsockname()
        client_port = port[1] if isinstance(port, tuple) else 0
        values = self.macros.connection(client_port)
        address = cstrings(self.client.client_name.encode()) + b"4"
        address += struct.pack(">H", client_port) + cstrings(self.client.client_addr.encode())
        decision = self._step(CONNECT, address, values)
        if not _decided(decision):
            decision = self._step(HELO, cstrings(self.client.helo.encode()), values)
        if decision is not None and _decided(decision):
            self.conn_decision = self._outcome(decision)
            self.abandon()

    def close(self) -> None:
        """End the SMTP session: Postfix resets the message state once more, then quits."""
        if self.channel is not None:
            self._send(ABORT)
            self._send(QUIT)
            self.abandon()

    def abandon(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    # -- one message --------------------------------------------------------------------------
    def message(self, msg: PreparedMessage, queue_id: str) -> Outcome:
        """Run one message through the milter and return what the MTA would do with it."""
        if self.conn_decision is not None:
            return self.conn_decision
        self.quarantined, self.modifications = False, []
        values = self.macros.envelope(msg)
        decision = self._envelope(msg, values, queue_id)
        if decision is None:
            decision = self._content(msg, {**values, "i": queue_id})
        if decision is None:  # no recipient and no refusal: only with an empty recipient list
            raise ProtocolError("no decision for the message")
        self._send(ABORT)
        return self._outcome(decision)

    def _envelope(self, msg: PreparedMessage, values: dict[str, str],
                  queue_id: str) -> Reply | None:
        mail_args = cstrings(f"<{msg.sender}>".encode(), f"SIZE={msg.size}".encode())
        decision = self._step(MAIL, mail_args, values)
        if _decided(decision):
            return decision
        accepted, refused = 0, None
        for rcpt in msg.recipients:
            rcpt_values = {**values, "{rcpt_addr}": rcpt, "{rcpt_host}": rcpt.rpartition("@")[2],
                           "{rcpt_mailer}": "smtp"}
            if accepted:
                rcpt_values["i"] = queue_id
            reply = self._step(RCPT, cstrings(f"<{rcpt}>".encode()), rcpt_values)
            if not _decided(reply):
                accepted += 1
            elif reply is not None and reply.code in b"rty":
                refused = reply  # this recipient only
            else:
                return reply  # accept or discard: the rest of the message is skipped
        if accepted == 0:
            return refused
        decision = self._step(DATA, b"", {**values, "i": queue_id})
        return decision if _decided(decision) else None

    def _content(self, msg: PreparedMessage, values: dict[str, str]) -> Reply | None:
        assert self.negotiated is not None
        keep_space = bool(self.negotiated.protocol & Proto.HDR_LEADSPC)
        if self.negotiated.sends(HEADER):
            for name, raw in msg.headers:
                value = raw[1:] if not keep_space and raw.startswith(b" ") else raw
                decision = self._step(HEADER, cstrings(name, value), values)
                if _decided(decision):
                    return decision
        if self.negotiated.sends(EOH):
            decision = self._step(EOH, b"", values)
            if _decided(decision):
                return decision
        if self.negotiated.sends(BODY):
            for chunk in msg.body_chunks:
                decision = self._step(BODY, chunk, values)
                if _decided(decision):
                    return decision
        return self._step(EOM, b"", values)

    # -- steps and replies ----------------------------------------------------------------
    def _step(self, command: bytes, payload: bytes, values: dict[str, str]) -> Reply | None:
        """Macros, then the step unless negotiated away; its final reply if one is awaited."""
        assert self.negotiated is not None
        if self.skip_type is not None:
            if self.skip_type == command:
                return None
            self.skip_type = None
        macros = self.macros.payload(command, values)
        if macros is not None:
            self._send(MACRO, macros)
        if not self.negotiated.sends(command):
            return None
        self._send(command, payload)
        if not self.negotiated.awaits(command):
            return None
        return self._final_reply(command)

    def _final_reply(self, command: bytes) -> Reply:
        assert self.channel is not None
        name = COMMAND_NAMES[command]
        self.last_step = name
        while True:
            reply = self.channel.read_reply()
            self.tally.replies[name] += 1
            if reply.code == b"p":
                continue
            if reply.code == b"q":
                self.quarantined = True
            elif reply.code in MODIFICATIONS and command == EOM:
                self.modifications.append(reply.name)
            elif reply.code == b"s":  # skip further steps of this type (Postfix honours it)
                self.skip_type = command
                return Reply(b"c")
            elif reply.code in FINAL_REPLIES:
                return reply
            else:
                raise ProtocolError(f"unexpected reply {reply.name} to {name}")

    def _send(self, command: bytes, payload: bytes = b"") -> None:
        assert self.channel is not None
        self.channel.send(command, payload)
        self.tally.sent[COMMAND_NAMES[command]] += 1

    def _outcome(self, reply: Reply) -> Outcome:
        verdict, code = reply.name, None
        if reply.code == b"y":
            code = " ".join(reply.data.rstrip(b"\0").decode("latin-1").split()[:2])
            verdict = "reject" if code.startswith("5") else "tempfail"
        return Outcome(verdict, self.last_step, self.quarantined, tuple(self.modifications), code)
