"""The milter adapter: the only module that imports pymilter.

One :class:`MailwardenMilter` instance serves one SMTP connection. Its callbacks only translate:
envelope and macros into an :class:`~mailwarden.message.Envelope`, header fields and body chunks
into a bounded :class:`~mailwarden.mta.buffer.MessageBuffer`, and at end of message the engine's
:class:`~mailwarden.verdict.Decision` into pymilter actions (headers, quarantine, 550 5.7.1,
451 4.7.1). Every callback is guarded: an exception is logged with the queue ID, counted, and the
message is answered with the configured failure action, never a crash towards the MTA.
At negotiation the adapter asks only for the actions it uses, out of those the MTA offers; a hold
the MTA cannot do becomes ``quarantine_fallback`` before any sink records it. The client address
is normalised once, at connect (an IPv4-mapped ``::ffff:a.b.c.d`` becomes ``a.b.c.d``), so every
network match sees the IPv4 address.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
import time
from typing import Any, Protocol

import Milter

from mailwarden.engine import Engine
from mailwarden.message import Envelope, Message
from mailwarden.mta.adapter_guard import (
    bind_thread,
    client_address,
    guarded,
    install_excepthook,
    strip_brackets,
    to_bytes,
)
from mailwarden.mta.buffer import MessageBuffer
from mailwarden.mta.sockets import no_delay, open_sockets
from mailwarden.verdict import Action, Decision

log = logging.getLogger("mailwarden.milter")

HEADER_PREFIX = "x-mailwarden-"
OWN_HEADERS = ("X-Mailwarden-Verdict", "X-Mailwarden-Score", "X-Mailwarden-Findings")
# The only actions used: add the verdict headers, delete forged ones, quarantine.
FLAGS = Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE


class EngineSource(Protocol):
    """Where a connection gets the current engine (swapped on reload)."""

    @property
    def engine(self) -> Engine: ...

    def session_started(self) -> None: ...

    def session_ended(self) -> None: ...


class MailwardenMilter(Milter.Base):  # type: ignore[misc]
    def __init__(self, source: EngineSource):
        self._source = source
        self._engine: Engine | None = None
        self._client_addr: str | None = None
        self._reset()
        bind_thread(self)
        source.session_started()

    def _reset(self) -> None:
        self._buffer: MessageBuffer | None = None
        self._mail_from = ""
        self._recipients: list[str] = []
        self._queue_id = ""
        self._auth_user: str | None = None
        self._failed: str | None = None
        self._unread_headers = 0

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._source.engine
        return self._engine

    def on_callback_error(self, callback: str) -> Any:
        log.exception("qid=%s error in %s callback", self._queue_id or "-", callback)
        self.engine.metrics.callback_errors.labels(callback).inc()
        self._failed = f"{callback} callback error"
        if callback != "eom":
            return Milter.CONTINUE  # decided at end of message (noreply callbacks must continue)
        return self._failure_reply()

    def on_uncaught(self, exc: BaseException) -> None:
        """pymilter's C layer failed before calling us, in practice on a header field whose name
        is not UTF-8 (the field is dropped): logged with the queue ID and counted. With
        ``on_error = "tempfail"`` the message is deferred at its end (the C layer itself only
        continues: a tempfail there, on a step without reply, would stall the MTA), else the
        rest of it is scanned."""
        self._queue_id = self._queue_id or self.getsymval("i") or ""
        if isinstance(exc, UnicodeDecodeError):
            self._unread_headers += 1
            log.error("qid=%s header field with a non-UTF-8 name (%d bytes) could not be read "
                      "and is left out of the scan (%s)", self._queue_id or "-",
                      len(exc.object), exc.reason)
            self.engine.metrics.callback_errors.labels("header").inc()
        else:
            log.error("qid=%s pymilter failed before a callback", self._queue_id or "-",
                      exc_info=exc)
        if self.engine.config.milter.on_error is Action.TEMPFAIL:
            self._failed = "input pymilter could not read"

    def _failure_reply(self) -> Any:
        engine = self.engine
        enforce = engine.config.milter.mode == "enforce"
        if enforce and engine.config.milter.on_error is Action.TEMPFAIL:
            self.setreply("451", "4.7.1", "Temporary failure in content filter, try again later")
            return Milter.TEMPFAIL
        return Milter.ACCEPT

    def negotiate(self, opts: list[int]) -> Any:
        """Ask for :data:`FLAGS` only, and only those the MTA offers (``self._actions`` then says
        what may be used: a version-2 MTA may offer header additions alone)."""
        offered = opts[0]
        rc = super().negotiate(opts)
        opts[0] = self._actions = offered & FLAGS
        return rc

    @Milter.noreply
    @guarded("connect")
    def connect(self, hostname: str, family: int, hostaddr: Any) -> Any:
        if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
            self._client_addr = client_address(str(hostaddr[0]))
        return Milter.CONTINUE

    @Milter.noreply
    @guarded("envfrom")
    def envfrom(self, mail_from: str, *params: str) -> Any:
        self._reset()
        self._engine = self._source.engine  # pinned for this message; reloads apply to the next
        milter = self.engine.config.milter
        self._buffer = MessageBuffer(milter.max_scan_bytes, milter.spool_bytes)
        self._mail_from = strip_brackets(mail_from)
        self._auth_user = self.getsymval("{auth_authen}") or None
        self._queue_id = self.getsymval("i") or ""
        return Milter.CONTINUE

    @Milter.noreply
    @guarded("envrcpt")
    def envrcpt(self, recipient: str, *params: str) -> Any:
        self._recipients.append(strip_brackets(recipient))
        return Milter.CONTINUE

    @Milter.decode("bytes")
    @Milter.noreply
    @guarded("header")
    def header(self, name: str, value: bytes) -> Any:
        if self._buffer is not None:
            raw = value if isinstance(value, bytes) else to_bytes(value)
            self._buffer.add_header(name, raw)
        return Milter.CONTINUE

    def header_bytes(self, name: str, value: bytes) -> Any:
        """What pymilter's C layer calls for every header field (the decorated :meth:`header`
        is what negotiation and tests see): the same work, one Python frame instead of four,
        as a message brings dozens of header fields."""
        buffer = self._buffer
        if buffer is not None:
            try:
                buffer.add_header(name, value if isinstance(value, bytes) else to_bytes(value))
            except Exception:  # noqa: BLE001 - as @guarded: decided at end of message
                self.on_callback_error("header")
        return Milter.NOREPLY if self._protocol & Milter.P_NR_HDR else Milter.CONTINUE

    @Milter.noreply
    @guarded("eoh")
    def eoh(self) -> Any:
        if self._buffer is not None:
            self._buffer.end_headers()
        self._queue_id = self._queue_id or self.getsymval("i") or ""
        return Milter.CONTINUE

    @Milter.noreply
    @guarded("body")
    def body(self, chunk: bytes) -> Any:
        if self._buffer is not None:
            self._buffer.add_body(chunk)
        return Milter.CONTINUE

    @guarded("eom")
    def eom(self) -> Any:
        self._queue_id = self._queue_id or self.getsymval("i") or "NOQUEUE"
        if self._failed or self._buffer is None:
            return self._failure_reply()
        try:
            message = self._snapshot(self._buffer)
            decision = self.engine.scan_within_budget(message, self._within_mta)
            self._log(decision)
            return self._apply(decision)
        finally:
            self._close_buffer()

    def _snapshot(self, buffer: MessageBuffer) -> Message:
        envelope = Envelope(
            queue_id=self._queue_id,
            mail_from=self._mail_from,
            recipients=tuple(self._recipients),
            direction=self.engine.direction(self._auth_user, self._client_addr),
            auth_user=self._auth_user,
            client_addr=self._client_addr,
            received_at=time.time(),
        )
        return Message(envelope, buffer.getvalue(), buffer.size, buffer.truncated)

    def _within_mta(self, decision: Decision) -> Decision:
        """A hold the MTA did not offer becomes the configured fallback, before the sinks see
        the decision (so no quarantine record says a delivered message is held)."""
        if decision.action is not Action.QUARANTINE or self._actions & Milter.QUARANTINE:
            return decision
        fallback = self.engine.config.milter.quarantine_fallback
        self.engine.metrics.quarantine_fallbacks.labels(fallback.value).inc()
        log.warning("qid=%s the MTA did not offer the quarantine action: %s instead (ref %s)",
                    self._queue_id, fallback.value, decision.ref)
        return dataclasses.replace(decision, action=fallback)

    def _apply(self, decision: Decision) -> Any:
        # Quarantine goes out before the header edits: the MTA applies each edit as it arrives,
        # and if this process dies in between, Postfix falls back to milter_default_action,
        # except after a quarantine request, which becomes its fallback reply (hold). In this
        # order a message that carries our verdict headers has always been held too. A message
        # refused or deferred gets no header edits at all: it is not kept, and a kill between
        # them would have let it through carrying a "reject" verdict.
        if decision.action is Action.REJECT:
            self.setreply("550", "5.7.1", f"Message refused by local policy (ref {decision.ref})")
            return Milter.REJECT
        if decision.action is Action.TEMPFAIL:
            self.setreply("451", "4.7.1", f"Message deferred by local policy (ref {decision.ref})")
            return Milter.TEMPFAIL
        if decision.action is Action.QUARANTINE and not self._hold(decision):
            fallback = self.engine.config.milter.quarantine_fallback
            return self._apply(dataclasses.replace(decision, action=fallback))
        if self.engine.config.milter.add_headers and self._actions & Milter.ADDHDRS:
            self._write_headers(decision)
        return Milter.ACCEPT

    def _hold(self, decision: Decision) -> bool:
        """Request the quarantine; False (logged) if the MTA refuses it: never a plain accept."""
        try:
            self.quarantine(f"mailwarden {decision.ref}: {decision.finding_summary or 'policy'}")
        except Exception:  # pymilter's milter.error, DisabledAction
            log.exception("qid=%s quarantine request failed, using quarantine_fallback (ref %s)",
                          self._queue_id, decision.ref)
            return False
        return True

    def _write_headers(self, decision: Decision) -> None:
        counts = self._buffer.header_counts if self._buffer else {}
        if not self._actions & Milter.CHGHDRS:
            counts = {}  # the MTA cannot delete fields: ours are added after any forged ones
        for name in OWN_HEADERS:  # a sender must not be able to forge our verdict headers
            for index in range(counts.get(name.lower(), 0), 0, -1):
                self.chgheader(name, index, "")
        self.addheader(OWN_HEADERS[0], f"{decision.verdict.value}; mode={decision.mode}; "
                                       f"ref={decision.ref}")
        self.addheader(OWN_HEADERS[1], f"{decision.score:.2f}")
        self.addheader(OWN_HEADERS[2], decision.finding_summary or "none")

    def _log(self, decision: Decision) -> None:
        log.info(
            "qid=%s verdict=%s action=%s mode=%s score=%.2f findings=%s ref=%s ms=%.1f%s",
            self._queue_id, decision.verdict.value, decision.action.value, decision.mode,
            decision.score, decision.finding_summary or "none", decision.ref,
            decision.seconds * 1000,
            f" errors={';'.join(decision.errors)}" if decision.errors else "",
        )
        if self._unread_headers:
            log.info("qid=%s scanned without %d unreadable header field(s) (ref %s)",
                     self._queue_id, self._unread_headers, decision.ref)

    @guarded("abort")
    def abort(self) -> Any:
        self._close_buffer()
        self._reset()
        return Milter.CONTINUE

    @guarded("close")
    def close(self) -> Any:
        self._close_buffer()
        bind_thread(None)
        self._source.session_ended()
        return Milter.CONTINUE

    def _close_buffer(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None


def serve(source: EngineSource, name: str, socket_spec: str, on_error: Action) -> None:
    """Run libmilter's loop until stopped; blocks the calling thread (``Milter.runmilter``)."""
    listen(name, socket_spec, on_error)
    serve_listener(source)


def listen(name: str, socket_spec: str, on_error: Action) -> int | None:
    """Everything ``Milter.runmilter`` does before ``milter.main()``: callbacks, flags, connection
    spec, register, and open the listening socket (removing a stale unix socket file); on TCP
    with Nagle's algorithm off (:func:`mailwarden.mta.sockets.no_delay`).

    libmilter keeps the socket in a static variable and ``smfi_main`` reuses it
    (``mi_listener`` -> ``mi_opensocket`` returns at once when ``listenfd`` is valid), so
    processes forked after this call each serve the same listener. Returns its descriptor
    (found as the one socket this call opened), or None if it cannot be told apart.
    """
    Milter.set_flags(FLAGS)
    # What pymilter's C layer fails on goes to its connection, which applies on_error at the end
    # of the message (so ``on_error`` is not libmilter's exception policy, always CONTINUE).
    install_excepthook()
    Milter.set_exception_policy(Milter.CONTINUE)
    lib = Milter.milter
    lib.set_connect_callback(Milter.connect_callback)
    lib.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    lib.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    lib.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    lib.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    lib.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    lib.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    lib.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    lib.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    lib.set_close_callback(Milter.close_callback)
    lib.setconn(socket_spec)
    lib.register(name, data=lambda ctx: ctx.getpriv().data(),
                 unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
                 negotiate=Milter.negotiate_callback)
    before = open_sockets()
    lib.opensocket(True)
    opened = open_sockets() - before
    listener = opened.pop() if len(opened) == 1 else None
    if listener is not None:
        no_delay(listener)
    return listener


def serve_listener(source: EngineSource) -> None:
    """libmilter's accept loop on the socket :func:`listen` opened (in this process or in the
    parent it was forked from); blocks the calling thread until :func:`stop`."""
    Milter.factory = functools.partial(MailwardenMilter, source)
    Milter.milter.main()


def stop() -> None:
    """Stop accepting connections; sessions in flight finish (pymilter's C module ``milter``)."""
    Milter.milter.stop()
