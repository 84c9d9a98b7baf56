"""The pymilter adapter driven by pymilter's own TestCtx: callbacks, actions, headers, guards."""

from __future__ import annotations

import email
import re
import socket
from pathlib import Path
from typing import Any

import Milter
import pytest
from Milter.testctx import TestCtx

from mailwarden.engine import Engine
from mailwarden.metrics import Metrics
from mailwarden.mta.adapter import MailwardenMilter

from conftest import make_config, message_bytes

TestCtx.__test__ = False  # not a test class (pytest would try to collect it)
OK = (Milter.CONTINUE, Milter.NOREPLY)


class Ctx(TestCtx):  # type: ignore[misc]
    """TestCtx that records quarantine (pymilter's raises NotImplemented)."""

    def __init__(self) -> None:
        super().__init__(logfile="/dev/null")
        self.quarantined: str | None = None

    def quarantine(self, reason: str) -> None:
        self.quarantined = reason

    def _connect(self, host: str = "localhost", helo: str = "x", ip: str = "127.0.0.1") -> Any:
        """Like TestCtx._connect, but with libmilter's (address, port) tuple and no-reply."""
        self._negotiate()
        self._stage = Milter.M_CONNECT
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        rc = Milter.connect_callback(self, host, family, (ip, 40000))
        self._stage = None
        return rc


class Source:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessions = 0

    def session_started(self) -> None:
        self.sessions += 1

    def session_ended(self) -> None:
        self.sessions -= 1


@pytest.fixture
def ctx_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    engines: list[Engine] = []

    def build(mode: str = "enforce", auth: str | None = "alice", ip: str = "192.0.2.10",
              **kwargs: Any) -> tuple[Ctx, Source]:
        engine = Engine(make_config(tmp_path, mode=mode, **kwargs), Metrics())
        engines.append(engine)
        source = Source(engine)
        Milter.factory = lambda: MailwardenMilter(source)
        ctx = Ctx()
        ctx._setsymval("i", "4XyZ1abc")
        if auth:
            ctx._setsymval("{auth_authen}", auth)
        assert ctx._connect(ip=ip) in OK
        return ctx, source

    yield build
    for e in engines:
        e.close()


def feed(ctx: Ctx, data: bytes, sender: str = "alice@example.org",
         rcpts: tuple[str, ...] = ("bob@example.net",)) -> Any:
    """Drive the callbacks as libmilter does, honouring negotiated no-reply (TestCtx does not)."""
    ctx._msg = email.message_from_bytes(data)
    ctx._body, ctx._reply = None, None
    steps = [lambda: ctx._envfrom(f"<{sender}>")]
    steps += [lambda r=r: ctx._envrcpt(f"<{r}>") for r in rcpts]
    head, _, body = data.partition(b"\r\n\r\n")
    for line in re.split(rb"\r\n(?![ \t])", head):
        name, _, value = line.partition(b":")
        steps.append(lambda n=name, v=value: ctx._priv.header_bytes(n.decode(), v.strip()))
    steps.append(ctx._eoh)
    steps += [lambda c=body[i:i + 4096]: ctx._priv.body(c) for i in range(0, len(body), 4096)]
    for step in steps:
        rc = step()
        if rc not in OK:
            return rc
    return ctx._eom()


def test_clean_message_accepted_with_headers(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    assert feed(ctx, message_bytes()) == Milter.ACCEPT
    assert ctx._msg["X-Mailwarden-Verdict"].startswith("accept; mode=enforce; ref=MW-")
    assert ctx._msg["X-Mailwarden-Score"] == "0.00"
    assert ctx._msg["X-Mailwarden-Findings"] == "none"


def test_quarantine(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    assert feed(ctx, message_bytes(marker="quarantine")) == Milter.ACCEPT
    assert ctx.quarantined is not None
    assert "test_quarantine=1" in ctx.quarantined
    assert ctx._msg["X-Mailwarden-Findings"] == "test_quarantine=1"


def test_quarantine_is_requested_before_any_header_edit(ctx_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """If the milter dies between two modification requests, Postfix keeps the edits made so
    far; only a quarantine already requested turns its fallback into a hold."""
    ctx, _ = ctx_for()
    calls: list[str] = []
    for name in ("quarantine", "addheader", "chgheader"):
        original = getattr(ctx._priv, name)
        monkeypatch.setattr(ctx._priv, name,
                            lambda *a, _n=name, _o=original: (calls.append(_n), _o(*a))[1])
    forged = message_bytes(marker="quarantine").replace(
        b"\r\n\r\n", b"\r\nX-Mailwarden-Verdict: accept\r\n\r\n", 1)
    assert feed(ctx, forged) == Milter.ACCEPT
    assert calls[0] == "quarantine" and calls[1:] == ["chgheader"] + ["addheader"] * 3, calls
    calls.clear()  # refused: not kept, so nothing to edit (a kill mid-edit cannot leak it)
    assert feed(ctx, forged.replace(b"quarantine", b"reject")) == Milter.REJECT
    assert calls == []


def test_reject_with_571_and_reference(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    assert feed(ctx, message_bytes(marker="reject")) == Milter.REJECT
    code, xcode, text = ctx._reply
    assert (code, xcode) == ("550", "5.7.1")
    assert "ref MW-" in text
    assert "test" not in text.lower()  # the reply text discloses nothing


def test_tempfail(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    assert feed(ctx, message_bytes(marker="tempfail")) == Milter.TEMPFAIL
    assert ctx._reply[:2] == ("451", "4.7.1")


def test_observe_mode_only_adds_headers(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for(mode="observe")
    assert feed(ctx, message_bytes(marker="reject")) == Milter.ACCEPT
    assert ctx._reply is None
    assert ctx._msg["X-Mailwarden-Verdict"].startswith("reject; mode=observe")


def test_forged_verdict_header_is_replaced(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    data = message_bytes().replace(b"Subject:", b"X-Mailwarden-Verdict: accept; forged\r\nSubject:")
    feed(ctx, data)
    values = ctx._msg.get_all("X-Mailwarden-Verdict")
    assert len(values) == 1
    assert "forged" not in values[0]


def test_exception_in_callback_fails_open(ctx_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ctx, source = ctx_for()

    def boom(self: Any, *a: Any) -> None:
        raise ValueError("broken buffer")

    monkeypatch.setattr("mailwarden.mta.buffer.MessageBuffer.add_body", boom)
    assert feed(ctx, message_bytes(marker="reject")) == Milter.ACCEPT
    errors = source.engine.metrics.registry.get_sample_value(
        "mailwarden_milter_callback_errors_total", {"callback": "body"})
    assert errors == 1.0


def test_exception_with_tempfail_policy(ctx_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from mailwarden.verdict import Action

    ctx, source = ctx_for()
    cfg = source.engine.config
    source.engine.config = replace(cfg, milter=replace(cfg.milter, on_error=Action.TEMPFAIL))
    monkeypatch.setattr("mailwarden.mta.buffer.MessageBuffer.add_body",
                        lambda *a: (_ for _ in ()).throw(ValueError("x")))
    assert feed(ctx, message_bytes()) == Milter.TEMPFAIL


def test_truncated_message_still_scored(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, source = ctx_for(max_scan=2048)
    body = "x" * 50_000 + "\n"
    assert feed(ctx, message_bytes(marker="quarantine", body=body)) == Milter.ACCEPT
    assert ctx.quarantined is not None  # the marker header sits in the scanned prefix
    assert source.engine.metrics.registry.get_sample_value(
        "mailwarden_messages_truncated_total") == 1.0


def test_8bit_header_is_kept_and_does_not_crash(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    data = message_bytes(subject="caf\udce9 \udcff invalid", marker="quarantine")
    assert feed(ctx, data) == Milter.ACCEPT
    assert ctx.quarantined is not None


def test_session_counting(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, source = ctx_for()
    assert source.sessions == 1
    feed(ctx, message_bytes())
    ctx._close()
    assert source.sessions == 0


def test_unauthenticated_external_client_is_inbound(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, source = ctx_for(auth=None)
    assert feed(ctx, message_bytes(marker="quarantine")) == Milter.ACCEPT
    assert ctx.quarantined is None  # inbound has no thresholds by default
    inbound = source.engine.metrics.registry.get_sample_value(
        "mailwarden_messages_total",
        {"action": "accept", "verdict": "accept", "direction": "inbound", "mode": "enforce"})
    assert inbound == 1.0


def test_internal_network_client_is_outbound(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for(auth=None, ip="127.0.0.1")
    assert feed(ctx, message_bytes(marker="quarantine")) == Milter.ACCEPT
    assert ctx.quarantined is not None


def test_connect_and_envfrom_do_not_wait_for_replies(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    assert ctx._protocol & Milter.P_NR_CONN
    assert ctx._protocol & Milter.P_NR_MAIL
    assert ctx._envfrom("<alice@example.org>") == Milter.NOREPLY


def test_exception_in_header_callback_fails_open(ctx_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ctx, source = ctx_for()
    monkeypatch.setattr("mailwarden.mta.buffer.MessageBuffer.add_header",
                        lambda *a: (_ for _ in ()).throw(ValueError("x")))
    assert feed(ctx, message_bytes(marker="reject")) == Milter.ACCEPT
    errors = source.engine.metrics.registry.get_sample_value(
        "mailwarden_milter_callback_errors_total", {"callback": "header"})
    assert errors is not None and errors >= 1.0


def test_header_fast_path_answers_noreply_only_when_negotiated(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    milter = ctx._priv
    milter._protocol = Milter.P_NR_HDR
    assert milter.header_bytes("Subject", b"x") == Milter.NOREPLY
    milter._protocol = 0
    assert milter.header_bytes("Subject", b"x") == Milter.CONTINUE
