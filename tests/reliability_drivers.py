"""How the reliability tests drive mail into the milter: pymilter's TestCtx and SMTP senders.

:func:`drive` feeds one message through the adapter's callbacks the way libmilter does (honouring
no-reply: a no-reply step's ``NOREPLY`` counts as continue), with the body in 64 KiB chunks and
only the header block parsed for TestCtx's own copy. :func:`send_concurrently` sends jobs to a
Postfix over loopback from several smtplib clients and records every reply, so a test can account
for each message and act on the milter mid-run.
"""

from __future__ import annotations

import email
import re
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import Milter
from Milter.testctx import TestCtx

TestCtx.__test__ = False  # pymilter's class, not a test class
OK = (Milter.CONTINUE, Milter.NOREPLY)


class Ctx(TestCtx):  # type: ignore[misc]
    """TestCtx recording quarantine, connecting with libmilter's (address, port) tuple."""

    def __init__(self) -> None:
        super().__init__(logfile="/dev/null")
        self.quarantined: str | None = None
        self.eom_seconds = 0.0

    def quarantine(self, reason: str) -> None:
        self.quarantined = reason

    def _eom(self) -> Any:
        started = time.monotonic()
        try:
            return super()._eom()
        finally:
            self.eom_seconds = time.monotonic() - started

    def connect_from(self, ip: str = "127.0.0.1") -> Any:
        self._negotiate()
        self._stage = Milter.M_CONNECT
        rc = Milter.connect_callback(self, "client.example", socket.AF_INET, (ip, 40000))
        self._stage = None
        return rc


class EngineHolder:
    """The adapter's engine source (what the runtime is in the daemon)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.sessions = 0

    def session_started(self) -> None:
        self.sessions += 1

    def session_ended(self) -> None:
        self.sessions -= 1


def header_fields(head: bytes) -> Iterator[tuple[str, bytes]]:
    for line in re.split(rb"\r?\n(?![ \t])", head):
        if line:
            name, _, value = line.partition(b":")
            yield name.decode("latin-1"), value.strip()


def drive(ctx: Ctx, data: bytes, sender: str = "alice@example.org",
          rcpts: Sequence[str] = ("bob@example.net",), chunk: int = 65535) -> Any:
    """Feed one message through the callbacks as libmilter does (no-reply steps continue).

    Only the header block is parsed for TestCtx's own copy (it applies header changes there), so
    the body is never held twice by the harness."""
    head, _, body = data.partition(b"\r\n\r\n")
    ctx._msg = email.message_from_bytes(head + b"\r\n\r\n")
    ctx._body, ctx._reply = None, None
    steps: list[Callable[[], Any]] = [lambda: ctx._envfrom(f"<{sender}>")]
    steps += [lambda r=r: ctx._envrcpt(f"<{r}>") for r in rcpts]
    steps += [lambda n=n, v=v: ctx._priv.header_bytes(n, v) for n, v in header_fields(head)]
    steps.append(ctx._eoh)
    view = memoryview(body)
    steps += [lambda i=i: ctx._priv.body(bytes(view[i:i + chunk]))
              for i in range(0, len(body), chunk)]
    for step in steps:
        rc = step()
        if rc not in OK:
            return rc
    return ctx._eom()


# --- SMTP load ---------------------------------------------------------------------------------

@dataclass
class Sent:
    token: str
    code: int | None = None  # the final reply to DATA (250 when accepted)
    error: str | None = None
    seconds: float = 0.0


def smtp_message(token: str, sender: str, marker: str | None = None, body: str = "") -> bytes:
    lines = [f"From: <{sender}>", "To: <rcpt@sink.test>", f"Subject: reliability {token}",
             "Date: Mon, 02 Sep 2024 10:00:00 +0000", f"Message-ID: <{token}@mailwarden.test>"]
    if marker:
        lines.append(f"X-Mailwarden-Test: {marker}")
    text = body or f"Status note {token}.\r\nNothing to see here.\r\n"
    return ("\r\n".join(lines) + "\r\n\r\n" + text + f"\r\ntoken {token}\r\n").encode()


def send_one(port: int, data: bytes, sender: str, token: str) -> Sent:
    sent = Sent(token)
    started = time.monotonic()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            smtp.sendmail(sender, ["rcpt@sink.test"], data)
        sent.code = 250
    except smtplib.SMTPResponseException as exc:
        sent.code, sent.error = exc.smtp_code, str(exc.smtp_error)[:200]
    except smtplib.SMTPRecipientsRefused as exc:
        sent.code, sent.error = 550, str(exc.recipients)[:200]
    except (OSError, smtplib.SMTPException) as exc:
        sent.error = f"{type(exc).__name__}: {exc}"[:200]
    sent.seconds = time.monotonic() - started
    return sent


Job = tuple[str, str, bytes]  # token, sender, message bytes


def send_concurrently(port: int, jobs: Sequence[Job], senders: int = 4,
                      on_progress: Callable[[int], None] | None = None) -> list[Sent]:
    """Send ``jobs`` over ``senders`` parallel SMTP clients; ``on_progress(n)`` after each one
    (from the sender threads) lets a test act mid-run. Results are in job order."""
    results: list[Sent | None] = [None] * len(jobs)
    lock = threading.Lock()
    state = {"next": 0, "done": 0}

    def work() -> None:
        while True:
            with lock:
                index = state["next"]
                state["next"] += 1
            if index >= len(jobs):
                return
            token, sender, data = jobs[index]
            results[index] = send_one(port, data, sender, token)
            with lock:
                state["done"] += 1
                done = state["done"]
            if on_progress is not None:
                on_progress(done)

    threads = [threading.Thread(target=work, name=f"smtp-{n}") for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert all(r is not None for r in results), "a sender thread died"
    return [r for r in results if r is not None]
