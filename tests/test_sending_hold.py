"""The sending detector over the milter protocol (pymilter's TestCtx), enforce mode, fresh state:
a newcomer's ordinary burst passes, a blast engages a sender hold that `senders clear` lifts, an
established sender's 5x spike is flagged. Message time comes from a controllable clock (the
adapter's ``time.time``), never from real sleeps."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import Milter
import pytest
from test_adapter import Ctx, Source, feed

from mailwarden import cli
from mailwarden.detectors.sending.holds import SqliteHolds
from mailwarden.detectors.sending.state import sender_key
from mailwarden.engine import Engine
from mailwarden.metrics import Metrics
from mailwarden.mta.adapter import MailwardenMilter

from conftest import REPO, config_text, message_bytes
from redis_server import RedisServer, redis_server  # noqa: F401 - fixture

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # Monday 09:00
SENDING = f"""
[detectors.sending]
enabled = true
model_dir = "{REPO / 'models' / 'sending'}"
"""


class Clock:
    """Stands in for the ``time`` module in the adapter: ``time()`` is ours, the rest is real."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class Milt:
    """One engine behind the adapter; every message is one fresh SMTP session."""

    def __init__(self, tmp_path: Path, clock: Clock) -> None:
        self.config_path = tmp_path / "mailwarden.toml"
        self.config_path.write_text(config_text(tmp_path, mode="enforce", extra=SENDING))
        from mailwarden.config import load_config

        self.metrics = Metrics()
        self.engine = Engine(load_config(self.config_path), self.metrics)
        self.source = Source(self.engine)
        self.clock = clock

    def send(self, at: float, sender: str, rcpts: tuple[str, ...]) -> Ctx:
        self.clock.now = at
        Milter.factory = lambda: MailwardenMilter(self.source)
        ctx = Ctx()
        ctx._setsymval("i", f"Q{int(at * 10) % 10**9:09d}")
        ctx._setsymval("{auth_authen}", sender)
        ctx._connect(ip="192.0.2.10")
        rc = feed(ctx, message_bytes(sender=sender, to=rcpts[0]), sender=sender, rcpts=rcpts)
        assert rc in (Milter.ACCEPT, Milter.CONTINUE)
        return ctx


@pytest.fixture
def milt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    clock = Clock(T0)
    monkeypatch.setattr("mailwarden.mta.adapter.time", clock)
    m = Milt(tmp_path, clock)
    yield m
    m.engine.close()


def findings_header(ctx: Ctx) -> str:
    return str(ctx._msg["X-Mailwarden-Findings"] or "")


def test_new_senders_ordinary_burst_is_accepted(milt: Milt) -> None:
    colleagues = ("ann@example.org", "ben@example.org", "cat@example.org")
    for i in range(8):
        ctx = milt.send(T0 + 20 * i, "newbie@example.org", (colleagues[i % 3],))
        assert ctx.quarantined is None, (i, findings_header(ctx))
        assert "sender_hold" not in findings_header(ctx)


def test_blast_engages_one_sender_hold_until_cleared(milt: Milt, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    sender = "mallory@example.org"
    held = [milt.send(T0 + 3 * i, sender, (f"x{i}@d{i}.example.net",)).quarantined is not None
            for i in range(200)]
    first = held.index(True)
    assert first < 100 and all(held[first:]), first  # once held, every later message is held
    holds = SqliteHolds(tmp_path / "state" / "sending.sqlite")
    key = sender_key(sender)
    assert [r.key for r in holds.all()] == [key]
    assert [e.event for e in holds.events(key)] == ["engaged"]  # one episode, one audit row
    value = milt.metrics.registry.get_sample_value
    assert value("mailwarden_sender_hold_episodes_total") == 1
    assert value("mailwarden_sender_held_messages_total") == 200 - first
    # scored against the new-sender baseline: every message up to the one that engaged the hold
    assert value("mailwarden_sending_baseline_messages_total", {"state": "learning"}) == first + 1
    assert cli.main(["senders", "show", sender, "--json", "--config",
                     str(milt.config_path)]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["hold"] and shown["baseline"] == "learning" and "@example.org" in shown["sender"]
    assert "mallory" not in out  # masked: m***@example.org
    later = T0 + 2 * 86400
    assert milt.send(later, sender, ("ann@example.org",)).quarantined is not None
    assert cli.main(["senders", "clear", sender, "--reviewer", "rev", "--config",
                     str(milt.config_path)]) == 0
    assert milt.send(later + 60, sender, ("ann@example.org",)).quarantined is None
    assert [e.event for e in holds.events(key)] == ["engaged", "cleared"]
    assert cli.main(["senders", "clear", sender, "--config", str(milt.config_path)]) == 1


def test_established_senders_5x_spike_is_flagged(milt: Milt) -> None:
    sender, usual = "alice@example.org", ("bob@example.org", "carol@example.org")
    for day in range(20):  # four messages a working day, two hours apart: peak 1 an hour
        for k in range(4):
            ctx = milt.send(T0 + day * 86400 + k * 7200, sender, (usual[k % 2],))
            assert ctx.quarantined is None
    start = T0 + 21 * 86400
    flagged = []
    for i in range(10):  # 5 an hour, to the usual recipients, at the usual hours
        ctx = milt.send(start + 720 * (i + 1), sender, (usual[i % 2],))
        flagged.append("sending_anomaly" in findings_header(ctx) or ctx.quarantined is not None)
    assert any(flagged), flagged  # the shipped prior: by the 6th (a locally trained model: 3rd)



def test_spike_evidence_says_it_in_words(tmp_path: Path) -> None:
    from test_sending_detector import build, feed_history, msg

    det = build(tmp_path, sender_hold=False)
    end = feed_history(det)  # four a working day, two hours apart
    start = end + 86400 - 7200 * 3
    results = [det.analyse(msg(start + 720 * (i + 1), (("bob@corp.example", "carol@corp."
                                                         "example")[i % 2],)))
               for i in range(10)]
    texts = [f.evidence for r in results for f in r.findings]
    words = "messages in the last hour; this sender's usual peak is 1"
    assert any(words in t for t in texts), texts
    assert all("@" not in t and "bob" not in t for t in texts)
    flagged = [bool(r.findings) for r in results]
    assert flagged.index(True) < 8 and all(flagged[flagged.index(True):]), flagged


def test_train_sending_from_the_installations_audit_log(milt: Milt, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    people = [f"{n}@example.org" for n in ("ann", "ben", "cat")]
    for day in range(15):
        for k in range(3):
            for who in people:
                milt.send(T0 + day * 86400 + k * 5400 + people.index(who) * 60, who,
                          (people[(people.index(who) + k + 1) % 3], "x@partner.example"))
    milt.engine.close()
    audit = tmp_path / "state" / "audit.jsonl"
    assert "ann@" not in audit.read_text()  # senders are keyed hashes in the audit log
    out = tmp_path / "trained"
    args = ["train", "--sending", str(audit), "--sending-model", "isolation_forest",
            "--out", str(out)]
    assert cli.main(args) == 0
    summary = json.loads(capsys.readouterr().out)["sending_train"]["sending"]
    assert summary["messages"] == 135
    report = (out / "sending" / "sending-train-report.txt").read_text()
    assert "previous model: none" in report and "new senders usually peak at" in report
    assert cli.main(args) == 0  # again: the report compares with the model it replaces
    report = (out / "sending" / "sending-train-report.txt").read_text()
    assert "previous model: 20" in report and "audit.jsonl (135 messages)" in report


def test_a_hold_is_shared_by_two_milters_through_redis(tmp_path: Path,
                                                       redis_server: RedisServer) -> None:  # noqa: F811
    from test_sending_detector import build, msg

    from mailwarden.detectors.sending.holds import RedisHolds

    one = build(tmp_path, run_mode="milter", store="redis", redis_url=redis_server.url)
    two = build(tmp_path, run_mode="milter", store="redis", redis_url=redis_server.url)
    sender = "eve@corp.example"
    results = [(one if i % 2 else two).analyse(
        msg(T0 + 3 * i, (f"x{i}@d{i}.example.net",), sender=sender)) for i in range(120)]
    first = next(i for i, r in enumerate(results) if r.scores.get("sending_held"))
    assert all(r.scores.get("sending_held") for r in results[first:])
    holds = RedisHolds(redis_server.url, "mailwarden:sending:")
    key = sender_key(sender)
    assert [r.key for r in holds.all()] == [key] and one.held_senders() == 1
    assert [e.event for e in holds.events(key)] == ["engaged"]  # one episode for both milters
    assert "eve" not in holds.all()[0].label
    holds.remove(key, T0 + 7200, "reviewer")
    from mailwarden.detectors.sending.hold import release
    from mailwarden.detectors.sending.profile import Profile
    from mailwarden.detectors.sending.state import Update

    def clear(blob: bytes | None) -> tuple[Update, None]:
        profile = Profile.decode(blob)
        release(profile)
        return Update(profile.encode(), T0 + 7200, None), None

    one._store.transact(key, clear)
    later = two.analyse(msg(T0 + 3 * 86400, ("bob@corp.example",), sender=sender))
    assert not later.scores.get("sending_held") and two.held_senders() == 0
    holds.close()
    one.close()
    two.close()
