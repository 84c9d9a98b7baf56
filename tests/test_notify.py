"""Notifications without an MTA: alert content, signature checks, digest queue limits, the sink."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mailwarden.config import load_config
from mailwarden.engine import Engine
from mailwarden.message import Envelope, Message
from mailwarden.metrics import Metrics
from mailwarden.notify.alertmail import ALERT_HEADER, body_text, compose, event_from, scrub, verify
from mailwarden.notify.queue import DigestQueue, Limits
from mailwarden.options import ConfigError
from mailwarden.verdict import Action, Confidence, Decision, Finding

from conftest import config_text, message_bytes

KEY = b"k" * 32
FROM = "mailwarden@mx.example.org"
SUBJECT = "Board minutes - confidential"
CARD = "4556 7375 8689 9855"


def msg(data: bytes, sender: str = FROM, queue_id: str = "4QID", truncated: bool = False,
        rcpts: tuple[str, ...] = ("ops@example.org",)) -> Message:
    env = Envelope(queue_id, sender, rcpts, received_at=1725271200.0)
    return Message(env, data, len(data), truncated)


def decision(ref: str = "MW-AAAAAAAAAAAA", action: Action = Action.QUARANTINE,
             mode: str = "enforce") -> Decision:
    findings = (
        Finding("leak", "credit_card", 4.0, 1, "body", "****9855", Confidence.HIGH),
        Finding("leak", "credit_card", 4.0, 1, "attachment", "card 4111 1111 1111 1111",
                Confidence.MEDIUM),
        Finding("leak", "api_token", 6.0, 2, "body", "ghp_0123456789abcdefghijklmnopqrstuv"),
    )
    return Decision(action, action if mode == "enforce" else Action.ACCEPT, 14.0, {}, findings,
                    ("score 14.00 >= quarantine threshold 5",), ref, mode)


def alert(now: float = 1725271300.0) -> bytes:
    return compose(KEY, FROM, "admin@example.org", "[mailwarden] 1 message(s) held", "Body\n",
                   now=now)


def test_scrub_masks_what_slipped_through() -> None:
    assert scrub("card 4111 1111 1111 1111 and 4111-1111-1111-1112") == \
        "card ****1111 and ****1112"
    assert scrub("token ghp_0123456789abcdefghijklmnopqrstuv") == "token [redacted]"
    assert scrub("caf\u00e9\r\nx") == "caf?  x"
    assert scrub("****9855") == "****9855"


def test_alert_text_has_counts_and_masks_but_no_content() -> None:
    data = message_bytes(subject=SUBJECT, body=f"pay with {CARD}\n")
    event = event_from(msg(data, sender="alice@example.org"), decision())
    admin = body_text([event], "mx.example.org", admin=True)
    sender = body_text([event], "mx.example.org", admin=False)
    for text in (admin, sender):
        assert "MW-AAAAAAAAAAAA" in text and "4QID" in text and "2024-09-02 10:00:00 UTC" in text
        assert "credit_card x2 (confidence high)" in text and "api_token x2" in text
        assert SUBJECT not in text and "4111 1111" not in text and CARD not in text
        assert "ghp_0123456789" not in text
    assert "****9855, card ****1111" in admin and "alice@example.org" in admin
    assert "****9855" not in sender and "alice@example.org" not in sender


def test_digest_groups_alike_events() -> None:
    data = message_bytes()
    events = [event_from(msg(data, sender="a@example.org", queue_id=f"Q{i}"),
                         decision(ref=f"MW-{i:012d}")) for i in range(4)]
    text = body_text(events, "mx", admin=True)
    assert text.count("Reference:") == 1
    assert "and 3 more like it" in text and "Q1, Q2, Q3" in text


def test_signature_accepts_only_an_intact_recent_alert() -> None:
    raw = alert()
    assert verify(KEY, msg(raw), max_age=3600, now=1725271400.0)
    trace = b"Received: from localhost by mx (Postfix) with ESMTP id 4QID;\r\n\tMon, 2 Sep 2024\r\n"
    assert verify(KEY, msg(trace + raw), max_age=3600, now=1725271400.0)
    refolded = raw.replace(b"\r\n", b"\n")
    assert verify(KEY, msg(refolded), max_age=3600, now=1725271400.0)
    forged = [
        raw.replace(b"Body", b"B0dy"),                                   # other body
        raw.replace(b"held", b"gone"),                                   # other subject
        b"X-Leak: 4556737586899855\r\n" + raw,                           # extra header
        b"Subject: second\r\n" + raw,                                    # duplicate header
        raw + b"more text\r\n",                                          # appended body
    ]
    for data in forged:
        assert not verify(KEY, msg(data), max_age=3600, now=1725271400.0)
    assert not verify(b"x" * 32, msg(raw), max_age=3600, now=1725271400.0)  # other install
    assert not verify(KEY, msg(raw), max_age=3600, now=1725271300.0 + 7200)  # too old
    assert not verify(KEY, msg(raw, truncated=True), max_age=3600, now=1725271400.0)
    token = ALERT_HEADER.encode()
    no_token = b"\r\n".join(ln for ln in raw.split(b"\r\n") if not ln.startswith(token))
    assert not verify(KEY, msg(no_token), max_age=3600, now=1725271400.0)


class Recorder:
    def __init__(self, fail: int = 0, block: threading.Event | None = None):
        self.calls: list[tuple[str, str, list[str], int, float]] = []
        self.fail = fail
        self.block = block
        self.started = time.monotonic()

    def __call__(self, recipient: str, kind: str, events: list, left_out: int) -> None:  # type: ignore[type-arg]
        if self.block is not None:
            self.block.wait(10)
        if self.fail > 0:
            self.fail -= 1
            raise OSError("relay down")
        self.calls.append((recipient, kind, [e.ref for e in events], left_out,
                           time.monotonic() - self.started))


def event(i: int):  # type: ignore[no-untyped-def]
    return event_from(msg(message_bytes(), queue_id=f"Q{i}"), decision(ref=f"MW-{i:012d}"))


def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_burst_becomes_one_digest_per_window() -> None:
    rec = Recorder()
    queue = DigestQueue(Limits(batch_seconds=0.3, digest_seconds=1.0), rec, Metrics())
    try:
        results = [queue.add("admin@x", "admin", event(i)) for i in range(20)]
        assert queue.add("admin@x", "admin", event(3)) == "duplicate"
        assert set(results) == {"queued"}
        wait_for(lambda: len(rec.calls) == 1)
        assert rec.calls[0][2] == [f"MW-{i:012d}" for i in range(20)]
        assert rec.calls[0][4] >= 0.3
        for i in range(20, 25):
            queue.add("admin@x", "admin", event(i))
        wait_for(lambda: len(rec.calls) == 2)
        assert rec.calls[1][2] == [f"MW-{i:012d}" for i in range(20, 25)]
        assert rec.calls[1][4] - rec.calls[0][4] >= 0.95  # not before the digest window (1 s)
    finally:
        queue.close()


def test_limits_per_mail_hourly_and_pending() -> None:
    rec = Recorder()
    metrics = Metrics()
    limits = Limits(batch_seconds=0.1, digest_seconds=0.0, max_mails_per_hour=2,
                    max_events_per_mail=3, max_pending=10)
    queue = DigestQueue(limits, rec, metrics)
    try:
        for i in range(5):
            queue.add("a@x", "admin", event(i))
        wait_for(lambda: len(rec.calls) == 1)
        assert rec.calls[0][2:4] == ([f"MW-{i:012d}" for i in range(3)], 2)
        queue.add("b@x", "admin", event(10))
        queue.add("c@x", "sender", event(11))
        wait_for(lambda: len(rec.calls) == 2)
        time.sleep(0.4)
        assert len(rec.calls) == 2  # hourly budget of 2 mails spent: c@x waits
        more = [queue.add(f"d{i}@x", "admin", event(20 + i)) for i in range(12)]
        assert more.count("dropped") == 3  # 1 (c@x) + 9 held reach max_pending = 10
    finally:
        queue.close(timeout=2)
    assert metrics.registry.get_sample_value("mailwarden_notifications_total",
                                             {"recipient": "admin", "result": "sent"}) == 2.0


def test_failed_send_is_retried_then_given_up() -> None:
    rec = Recorder(fail=1)
    metrics = Metrics()
    queue = DigestQueue(Limits(batch_seconds=0.0, retry_seconds=0.2, max_attempts=2), rec,
                        metrics)
    try:
        queue.add("a@x", "admin", event(1))
        wait_for(lambda: len(rec.calls) == 1)
        assert rec.calls[0][4] >= 0.2
        rec.fail = 5
        queue.add("b@x", "admin", event(2))
        wait_for(lambda: metrics.registry.get_sample_value(
            "mailwarden_notify_events_total", {"result": "dropped"}) == 1.0)
    finally:
        queue.close()
    assert metrics.registry.get_sample_value(
        "mailwarden_notifications_total", {"recipient": "admin", "result": "failed"}) == 3.0


def test_adding_never_waits_for_a_stuck_relay_and_close_flushes() -> None:
    gate = threading.Event()
    rec = Recorder(block=gate)
    queue = DigestQueue(Limits(batch_seconds=0.0, digest_seconds=3600.0), rec, Metrics())
    queue.add("a@x", "admin", event(1))
    time.sleep(0.2)  # the worker is now stuck in send()
    started = time.monotonic()
    for i in range(2, 200):
        queue.add("a@x", "admin", event(i))
    assert time.monotonic() - started < 0.5
    gate.set()
    queue.close(timeout=5)  # the second box waits an hour, but closing sends it now
    assert [len(c[2]) for c in rec.calls] == [1, 50] and rec.calls[1][3] == 148


def notify_engine(tmp_path: Path, notify: str, mode: str = "enforce") -> Engine:
    extra = "[notify]\nenabled = true\nsmtp_port = 9\n" + notify
    text = config_text(tmp_path, mode=mode, extra=extra)
    return Engine(load_config(tmp_path / "t.toml", text=text), Metrics())


def notify_sink(engine: Engine):  # type: ignore[no-untyped-def]
    return next(s for s in engine.sinks if s.name == "notify")


def test_sink_queues_enforced_and_optionally_observed_verdicts(tmp_path: Path) -> None:
    cases = [("enforce", "", 1), ("observe", "", 0), ("observe", "observe = true\n", 1)]
    for mode, option, expected in cases:
        engine = notify_engine(tmp_path / mode / str(len(option)),
                               'admins = ["sec@example.org"]\nbatch_seconds = 3600.0\n' + option,
                               mode=mode)
        try:
            for marker in (None, "quarantine", "tempfail"):
                data = message_bytes(marker=marker)
                engine.scan_within_budget(msg(data, sender="alice@example.org"))
            queued = engine.metrics.registry.get_sample_value(
                "mailwarden_notify_events_total", {"result": "queued"})
            assert queued == expected, (mode, option)
        finally:
            notify_sink(engine).queue.close(timeout=0.1)  # type: ignore[attr-defined]
            engine.close()


def test_sender_is_notified_only_when_asked_and_local(tmp_path: Path) -> None:
    engine = notify_engine(tmp_path, 'admins = ["sec@example.org"]\nnotify_sender = true\n'
                                     'sender_domains = ["example.org"]\n')
    try:
        sink = notify_sink(engine)
        local = msg(b"", sender="alice@example.org")
        foreign = msg(b"", sender="mallory@example.com")
        assert sink.recipients(local) == [("sec@example.org", "admin"),  # type: ignore[attr-defined]
                                          ("alice@example.org", "sender")]
        assert sink.recipients(foreign) == [("sec@example.org", "admin")]  # type: ignore[attr-defined]
        assert sink.recipients(msg(b"", sender=FROM)) == [("sec@example.org", "admin")]  # type: ignore[attr-defined]
    finally:
        engine.close()


def test_engine_passes_own_alert_unscanned_but_scans_a_forgery(tmp_path: Path) -> None:
    engine = notify_engine(tmp_path, f'admins = ["sec@example.org"]\nfrom_address = "{FROM}"\n')
    try:
        sink = notify_sink(engine)
        real = sink._send  # type: ignore[attr-defined]
        sent: list[bytes] = []
        sink._transport = type("T", (), {"send": lambda self, f, r, d: sent.append(d)})()  # type: ignore[attr-defined]
        real("sec@example.org", "admin", [event(1)], 0)
        own = sent[0]
        decision = engine.scan_within_budget(msg(own))
        assert decision.action is Action.ACCEPT and "signature verified" in decision.reasons[0]
        marked = own.replace(b"\r\n\r\n", b"\r\nX-Mailwarden-Test: reject\r\n\r\n", 1)
        assert engine.scan_within_budget(msg(marked)).action is Action.REJECT
        assert engine.scan_within_budget(msg(own, sender="x@example.org")).findings == ()
        registry = engine.metrics.registry
        assert registry.get_sample_value("mailwarden_alert_mail_exempt_total") == 1.0
    finally:
        engine.close()


@pytest.mark.parametrize(("option", "key"), [
    ("", "notify.admins"), ('admins = ["nobody"]', "notify.admins"),
    ('admins = ["a@b"]\nactions = ["accept"]', "notify.actions"),
    ('admins = ["a@b"]\nsendmail_command = []', "notify.sendmail_command"),
    ('admins = ["a@b"]\nbatch = 1', "notify.batch"),
])
def test_config_errors_name_the_key(tmp_path: Path, option: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        notify_engine(tmp_path, option + "\n")


def test_example_config_documents_the_defaults() -> None:
    from mailwarden.notify import sink as notify

    from conftest import REPO

    example = load_config(REPO / "deploy" / "mailwarden.toml").sections["notify"]
    defaults = load_config().sections["notify"]
    for read in (notify._settings, notify._limits, notify._transport):
        assert read(example) == read(defaults)
    assert example.get_bool("enabled", True) is False


class Outbox:
    """A transport that keeps what it is asked to send."""

    def __init__(self) -> None:
        self.mails: list[tuple[str, bytes]] = []

    def send(self, sender: str, recipient: str, data: bytes) -> None:
        self.mails.append((recipient, data))


def worker_engine(tmp_path: Path, index: int, notify: str) -> Engine:
    """An engine as pre-fork worker ``index`` of 2 builds it (the supervisor's overrides)."""
    from mailwarden.config import apply_overrides

    text = config_text(tmp_path, extra="[notify]\nenabled = true\nsmtp_port = 9\n" + notify)
    config = load_config(tmp_path / "t.toml", text=text)
    return Engine(apply_overrides(config, {"workers": 2, "worker_index": index}), Metrics())


def test_spool_keeps_events_whole_in_order_and_bounded(tmp_path: Path) -> None:
    from mailwarden.notify.spool import NotifySpool

    spool = NotifySpool(tmp_path / "spool.sqlite", max_rows=3)
    try:
        events = [event(i) for i in range(4)]
        assert [spool.put(f"r{i}@x", "admin", e) for i, e in enumerate(events)] == [
            True, True, True, False]
        spool._conn.execute("INSERT INTO spool(recipient, kind, event) VALUES ('z@x', 'admin',"
                            " '{broken')")  # over the bound on purpose: read past, not stuck
        assert spool.take(limit=2) == [("r0@x", "admin", events[0]), ("r1@x", "admin", events[1])]
        assert spool.take() == [("r2@x", "admin", events[2])]
        assert spool.take() == [] and len(spool) == 0
        assert events[0].findings and events[0].recipient_domains  # the round trip saw both
    finally:
        spool.close()
    assert not spool.put("late@x", "admin", events[0])  # a closed spool refuses, never raises


def test_pre_fork_workers_send_one_digest_through_worker_0(tmp_path: Path) -> None:
    """Worker 1 spools; worker 0 relays its events into the one queue, with the configured
    limits (not a per-worker share) and one digest per window for both workers' events."""
    notify = ('admins = ["sec@example.org"]\nbatch_seconds = 0.3\ndigest_seconds = 60.0\n'
              "max_mails_per_hour = 10\n")
    sender, other = worker_engine(tmp_path, 0, notify), worker_engine(tmp_path, 1, notify)
    sink0, sink1 = notify_sink(sender), notify_sink(other)
    outbox = Outbox()
    sink0._transport = outbox
    try:
        assert sink1.queue is None and sink0.queue.limits.max_mails_per_hour == 10
        for i, engine in enumerate((other, other, sender, other)):
            engine.scan_within_budget(msg(message_bytes(marker="quarantine"),
                                          sender="alice@example.org", queue_id=f"W{i}"))
        wait_for(lambda: len(outbox.mails) == 1)
        time.sleep(1.5)  # another poll of the spool: nothing more, the next mail waits 60 s
        assert len(outbox.mails) == 1
        recipient, mail = outbox.mails[0]
        assert recipient == "sec@example.org"
        assert b"held or refused 4 outgoing message(s)" in mail
        assert b"Queue ID:   W2" in mail and b"(queue IDs W0, W1, W3)" in mail, mail
        sample = sender.metrics.registry.get_sample_value
        assert sample("mailwarden_notify_events_total", {"result": "queued"}) == 4.0
        assert other.metrics.registry.get_sample_value(
            "mailwarden_notify_events_total", {"result": "queued"}) == 0.0  # counted once, by 0
    finally:
        other.close()
        sender.close()


def test_admin_alert_carries_signed_review_links_and_the_sender_none(tmp_path: Path) -> None:
    from mailwarden.notify.sink import review_links
    from mailwarden.web.links import KEY_FILE, read_token, secret_key

    text = config_text(tmp_path, extra='[web]\nbase_url = "https://review.example.org/"\n')
    links = review_links(load_config(text=text))
    assert links is not None
    event = event_from(msg(b"Subject: x\r\n\r\nbody\r\n"), decision())
    admin = body_text([event], "mx.example.org", admin=True, links=links)
    sender = body_text([event], "mx.example.org", admin=False, links=links)
    urls = dict(line.split() for line in admin.splitlines() if "https://" in line)
    assert set(urls) == {"Review:", "Release:"} and "https://" not in sender
    key = secret_key(tmp_path / "state" / KEY_FILE)
    for label, action in (("Review:", "open"), ("Release:", "release")):
        token = urls[label].removeprefix("https://review.example.org/link/")
        link = read_token(key, token, 60)
        assert (link.ref, link.action) == ("MW-AAAAAAAAAAAA", action)
    observed = event_from(msg(b"Subject: x\r\n\r\nbody\r\n"), decision(mode="observe"))
    assert "https://" not in body_text([observed], "mx", admin=True, links=links)
    assert review_links(load_config(text=config_text(tmp_path))) is None


def _held(engaged: bool, extra: tuple[Finding, ...] = (), ref: str = "MW-B") -> Decision:
    details = (("held_since", "1725271200"), ("reason", "sender_hold"), ("action", "quarantine"))
    hold = Finding("sending", "sender_hold", 1.0, 1, "envelope", "sender held", Confidence.HIGH,
                   details=(*details, ("engaged", "1")) if engaged else details)
    anomaly = Finding("sending", "sending_anomaly", 0.9, 1, "envelope", "38 messages in 1 h")
    return Decision(Action.QUARANTINE, Action.QUARANTINE, 1.9, {}, (hold, anomaly, *extra),
                    ("sender held",), ref, "enforce")


def test_a_sender_hold_is_alerted_once_per_episode(tmp_path: Path) -> None:
    engine = notify_engine(tmp_path, 'admins = ["sec@example.org"]\nbatch_seconds = 3600.0\n')
    sink = notify_sink(engine)
    leak = Finding("leak", "private_key", 6.0, 1, "body", "RSA PRIVATE KEY", Confidence.HIGH)
    try:
        decisions = (_held(True, ref="MW-1"), _held(False, ref="MW-2"), _held(False, ref="MW-3"),
                     _held(False, (leak,), ref="MW-4"))
        for n, decided in enumerate(decisions):
            message = msg(b"", sender="alice@example.org", queue_id=f"Q{n}")
            sink.handle(message, decided)  # type: ignore[attr-defined]
        sample = engine.metrics.registry.get_sample_value
        assert sample("mailwarden_notify_events_total", {"result": "queued"}) == 2
        assert sample("mailwarden_notify_events_total", {"result": "episode"}) == 2
    finally:
        sink.queue.close(timeout=0.1)  # type: ignore[attr-defined]
        engine.close()
