"""The pymilter adapter driven by pymilter's own TestCtx: callbacks, actions, headers, guards."""

from __future__ import annotations

import email
import re
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import Milter
import pytest
from Milter.testctx import TestCtx

from mailwarden.engine import Engine
from mailwarden.metrics import Metrics
from mailwarden.mta.adapter import MailwardenMilter
from mailwarden.options import ConfigError
from mailwarden.verdict import Action

from conftest import config_text, make_config, message_bytes

TestCtx.__test__ = False  # not a test class (pytest would try to collect it)
OK = (Milter.CONTINUE, Milter.NOREPLY)


class Ctx(TestCtx):  # type: ignore[misc]
    """TestCtx that records quarantine (pymilter's raises NotImplemented) and negotiates with
    the action set ``offer`` (every action, as Postfix 3 offers, by default)."""

    def __init__(self, offer: int = Milter.CURR_ACTS, protocol: int = 0x1FFFFF) -> None:
        super().__init__(logfile="/dev/null")
        self.quarantined: str | None = None
        self.offer, self.protocol = offer, protocol

    def quarantine(self, reason: str) -> None:
        self.quarantined = reason

    def _negotiate(self) -> Any:
        """TestCtx's, on a fresh list (its own shares one list between all instances)."""
        self._body, self._bodyreplaced, self._priv, self._stage = None, False, None, -1
        self._opts = [self.offer, self.protocol, 0, 0]
        rc = Milter.negotiate_callback(self, self._opts)
        self._protocol = self._opts[1]
        return rc

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
              offer: int = Milter.CURR_ACTS, protocol: int = 0x1FFFFF,
              **kwargs: Any) -> tuple[Ctx, Source]:
        engine = Engine(make_config(tmp_path, mode=mode, **kwargs), Metrics())
        engines.append(engine)
        source = Source(engine)
        Milter.factory = lambda: MailwardenMilter(source)
        ctx = Ctx(offer, protocol)
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


PEM = ("-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(
    ["MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"] * 12)
    + "\n-----END RSA PRIVATE KEY-----\n")
LEAK = "[detectors.leak]\nenabled = true\n"
V2_PROTOCOL = 0x7F  # SMFIP_NOCONNECT .. SMFIP_NOEOH: skipping steps, no "no reply" bits


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "::FFFF:7f00:1"])
def test_private_key_from_an_internal_client_is_held_whatever_its_spelling(
        ctx_for, ip: str) -> None:  # type: ignore[no-untyped-def]
    """A dual-stack MTA reports an IPv4 client as ::ffff:a.b.c.d (family 6): it must match
    127.0.0.0/8 like 127.0.0.1, or an unauthenticated internal client's leak goes out."""
    ctx, source = ctx_for(auth=None, ip=ip, extra=LEAK)
    assert feed(ctx, message_bytes(body="Here is the key\n" + PEM)) == Milter.ACCEPT
    assert ctx.quarantined is not None, ip
    assert "private_key" in ctx._msg["X-Mailwarden-Findings"]
    assert source.engine.metrics.registry.get_sample_value("mailwarden_messages_total", {
        "action": "quarantine", "verdict": "quarantine", "direction": "outbound",
        "mode": "enforce"}) == 1.0


def test_external_mapped_client_stays_inbound(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for(auth=None, ip="::ffff:192.0.2.10", extra=LEAK)
    assert feed(ctx, message_bytes(body="Here is the key\n" + PEM)) == Milter.ACCEPT
    assert ctx.quarantined is None  # inbound: no thresholds by default


def test_negotiation_requests_only_the_three_actions_used(ctx_for) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    assert ctx._opts[0] == Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE
    ctx, _ = ctx_for(offer=Milter.ADDHDRS | Milter.QUARANTINE | Milter.CHGFROM)
    assert ctx._opts[0] == Milter.ADDHDRS | Milter.QUARANTINE  # never more than offered


def held_records(tmp_path: Path) -> list[Any]:
    from mailwarden.quarantine.store import FILENAME, QuarantineStore

    path = tmp_path / "state" / FILENAME
    if not path.exists():
        return []
    store = QuarantineStore(path, create=False)
    try:
        return store.records()
    finally:
        store.close()


@pytest.mark.parametrize(("fallback", "reply", "code"), [
    (None, Milter.TEMPFAIL, ("451", "4.7.1")), ("reject", Milter.REJECT, ("550", "5.7.1"))])
def test_mta_that_cannot_quarantine_gets_the_fallback_and_no_hold_is_recorded(
        ctx_for, tmp_path: Path, fallback: str | None, reply: int,
        code: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    """A version-2 MTA offering header additions only (no SMFIF_QUARANTINE) and none of the
    no-reply steps of version 6; the default fallback (tempfail) and the other one."""
    ctx, source = ctx_for(offer=Milter.ADDHDRS, protocol=V2_PROTOCOL)
    assert ctx._protocol & ~V2_PROTOCOL == 0  # no P_NR_* asked for: every step is answered
    if fallback:
        cfg = source.engine.config
        source.engine.config = replace(cfg, milter=replace(
            cfg.milter, quarantine_fallback=Action(fallback)))
    assert ctx._opts[0] == Milter.ADDHDRS
    assert feed(ctx, message_bytes(marker="quarantine")) == reply
    assert ctx._reply[:2] == code and "ref MW-" in ctx._reply[2]
    assert ctx.quarantined is None
    assert held_records(tmp_path) == []  # the review list shows no hold that did not happen
    assert source.engine.metrics.registry.get_sample_value(
        "mailwarden_quarantine_fallbacks_total", {"action": (fallback or "tempfail")}) == 1.0
    assert feed(ctx, message_bytes()) == Milter.ACCEPT  # clean mail still gets its headers
    assert ctx._msg["X-Mailwarden-Verdict"].startswith("accept; mode=enforce")


def test_mta_that_can_quarantine_records_the_hold(ctx_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    assert feed(ctx, message_bytes(marker="quarantine")) == Milter.ACCEPT
    assert ctx.quarantined is not None
    assert [r.queue_id for r in held_records(tmp_path)] == ["4XyZ1abc"]


def test_a_refused_quarantine_request_is_not_a_plain_accept(ctx_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ctx_for()
    monkeypatch.setattr(ctx, "quarantine", lambda reason: (_ for _ in ()).throw(
        Milter.milter.error("cannot quarantine")))
    assert feed(ctx, message_bytes(marker="quarantine")) == Milter.TEMPFAIL
    assert ctx._reply[:2] == ("451", "4.7.1")


def test_quarantine_fallback_is_validated_with_key_and_line(tmp_path: Path) -> None:
    from mailwarden.config import load_config

    assert make_config(tmp_path).milter.quarantine_fallback is Action.TEMPFAIL  # the default
    text = config_text(tmp_path).replace("[milter]\n", '[milter]\nquarantine_fallback = "accept"\n')
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "x.toml", text=text)
    assert err.value.key == "milter.quarantine_fallback" and err.value.line is not None
    assert "tempfail, reject" in str(err.value)
