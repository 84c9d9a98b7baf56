"""The ``sending`` detector end to end: config, run modes, findings, stores, outages, threads."""

from __future__ import annotations

import base64
import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailwarden.detectors.base import DetectorContext, DetectorUnavailable, registrations
from mailwarden.detectors.sending.detector import (
    SendingDetector,
    attachment_bytes,
    event_from_message,
)
from mailwarden.detectors.sending.profile import Profile
from mailwarden.detectors.sending.state import sender_key
from mailwarden.detectors.sending.state_sqlite import SqliteStore
from mailwarden.message import Envelope, Message
from mailwarden.options import ConfigError, Options

from redis_server import RedisServer, redis_server  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 6, 9, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # Monday 09:00
RAW = b"From: a@corp.example\nTo: b@corp.example\nSubject: hi\n\n" + b"hello there\n" * 300


def build(tmp_path: Path, run_mode: str = "replay", **options: object) -> SendingDetector:
    context = DetectorContext(model_dir=REPO / "models", state_dir=tmp_path / "state",
                              run_mode=run_mode)
    detector = registrations()["sending"].factory(Options(options, "detectors.sending"), context)
    assert isinstance(detector, SendingDetector)
    return detector


def msg(at: float, rcpts: tuple[str, ...] = ("bob@corp.example",),
        sender: str = "alice@corp.example", auth: str | None = None, raw: bytes = RAW) -> Message:
    return Message(Envelope("Q1", sender, rcpts, auth_user=auth, received_at=at), raw, len(raw))


def feed_history(det: SendingDetector, days: int = 20, sender: str = "alice@corp.example",
                 auth: str | None = None) -> float:
    """Four messages per working day to two colleagues; returns the time after the last one."""
    at = T0
    for day in range(days):
        for k in range(4):
            at = T0 + day * 86400 + k * 7200
            rcpt = ("bob@corp.example", "carol@corp.example")[k % 2]
            result = det.analyse(msg(at, (rcpt,), sender, auth))
            assert result.error is None
    return at


def burst(det: SendingDetector, start: float, n: int = 8):  # type: ignore[no-untyped-def]
    results = []
    for i in range(n):
        rcpts = tuple(f"p{i}-{k}@n{i}-{k}.example.net" for k in range(3))
        results.append(det.analyse(msg(start + 30 * (i + 1), rcpts)))
    return results


def test_unknown_option_and_bad_timezone_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        build(tmp_path, modle="lof")
    with pytest.raises(ConfigError, match="time zone"):
        build(tmp_path, timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="model"):
        build(tmp_path, model="kmeans")


def test_missing_or_foreign_model_makes_the_detector_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DetectorUnavailable, match="sending model"):
        build(tmp_path, model_dir=str(tmp_path / "nothing"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    manifest = (REPO / "models" / "sending" / "manifest.json").read_text()
    (foreign / "manifest.json").write_text(manifest.replace('"msgs_1m"', '"other"'))
    for f in (REPO / "models" / "sending").glob("*.npz"):
        (foreign / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DetectorUnavailable, match="other features"):
        build(tmp_path, model_dir=str(foreign))


@pytest.mark.parametrize("model", ["isolation_forest", "ocsvm", "lof", "autoencoder"])
def test_every_shipped_model_flags_a_burst_and_not_routine_mail(tmp_path: Path,
                                                                 model: str) -> None:
    det = build(tmp_path, model=model)
    end = feed_history(det)
    routine = det.analyse(msg(end + 86400 - 7200 * 3, ("bob@corp.example",)))
    assert routine.scores["sending_anomaly"] < 0.6 and not routine.findings
    results = burst(det, end + 86400 - 3600)
    assert any(r.findings for r in results[:3])


def test_finding_explains_with_baselines_and_masks_addresses(tmp_path: Path) -> None:
    det = build(tmp_path, sender_hold=False)
    end = feed_history(det)
    result = burst(det, end + 3600)[4]
    (finding,) = result.findings
    assert finding.type == "sending_anomaly"
    assert "new domains in 10 min (baseline" in finding.evidence
    assert "@" not in finding.evidence and ".example.net" not in finding.evidence
    anomaly = result.scores["sending_anomaly"]
    # one visible weight: the engine multiplies by [detectors.sending] weight, nothing hidden
    assert finding.score == pytest.approx(anomaly) and finding.score <= 1.0
    details = dict(finding.details)
    assert details["model"] == "isolation_forest"
    assert details["reason"] in details["reasons"].split(",")


def test_report_above_option_and_no_hidden_weight(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        build(tmp_path, weight=2.0)  # the engine's weight is the only one
    det = build(tmp_path, report_above=0.99, sender_hold=False)
    end = feed_history(det, days=10)
    results = burst(det, end + 3600)
    flagged = [r for r in results if r.findings]
    assert all(r.scores["sending_anomaly"] > 0.99 for r in flagged)
    assert flagged and all(r.findings[0].score <= 1.0 for r in flagged)
    quiet = [r for r in results if not r.findings]
    assert all(r.scores["sending_anomaly"] <= 0.99 for r in quiet)


def test_identity_is_the_sasl_login_first(tmp_path: Path) -> None:
    det = build(tmp_path, run_mode="milter")
    feed_history(det, days=2, sender="alias1@corp.example", auth="alice")
    det.analyse(msg(T0 + 3 * 86400, sender="alias2@corp.example", auth="alice"))
    det.close()
    store = SqliteStore(tmp_path / "state" / "sending.sqlite")
    assert Profile.decode(store.get(sender_key("alice"))).n == 9
    assert store.get(sender_key("alias1@corp.example")) is None
    store.close()


def test_score_mode_is_stateless(tmp_path: Path) -> None:
    det = build(tmp_path, run_mode="score")
    first = det.analyse(msg(T0))
    for i in range(5):
        again = det.analyse(msg(T0 + 10 + i))
    assert again.scores == first.scores
    assert not (tmp_path / "state").exists()


def test_sqlite_state_persists_across_restarts(tmp_path: Path) -> None:
    det = build(tmp_path, run_mode="milter")
    end = feed_history(det, days=5)
    det.close()
    det = build(tmp_path, run_mode="milter")
    det.analyse(msg(end + 3600))
    det.close()
    store = SqliteStore(tmp_path / "state" / "sending.sqlite")
    profile = Profile.decode(store.get(sender_key("alice@corp.example")))
    assert profile.n == 21
    assert profile.last == end + 3600  # message time, not wall-clock time
    store.close()


def test_concurrent_messages_of_one_sender_all_counted(tmp_path: Path) -> None:
    det = build(tmp_path, run_mode="milter", sqlite_path=str(tmp_path / "c.sqlite"),
                sender_hold=False)  # a hold stops learning: every message must be counted

    def worker(offset: int) -> None:
        for i in range(25):
            assert det.analyse(msg(T0 + offset * 1000 + i * 30)).error is None

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    det.close()
    store = SqliteStore(tmp_path / "c.sqlite")
    assert Profile.decode(store.get(sender_key("alice@corp.example"))).n == 100
    store.close()


def test_anomalous_senders_counts_recent_flags(tmp_path: Path) -> None:
    det = build(tmp_path)
    end = feed_history(det)
    assert det.anomalous_senders() == 0
    results = burst(det, end + 3600)
    assert results[-1].findings
    assert det.anomalous_senders() == 1
    det.analyse(msg(end + 3600 + 3 * 3600, ("carol@corp.example",), sender="dave@corp.example"))
    assert det.anomalous_senders() == 0  # the flag is older than 15 minutes of message time


@pytest.mark.redis
def test_redis_outage_skips_messages_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                  redis_server: RedisServer) -> None:  # noqa: F811
    det = build(tmp_path, run_mode="milter", store="redis", redis_url=redis_server.url,
                redis_timeout_seconds=0.3, store_retry_seconds=0.2, store_retry_max_seconds=0.4)
    assert det.health()
    assert det.analyse(msg(T0)).error is None
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="mailwarden.detectors.sending.detector"):
        failed = []
        for i in range(20):
            failed.append(det.analyse(msg(T0 + 60 + i)))
            time.sleep(0.05)  # long enough for several retries against the stopped server
    assert all(r.error and r.error.startswith("store unavailable") for r in failed)
    assert all(not r.findings for r in failed)
    assert sum("skipping messages" in r.getMessage() for r in caplog.records) == 1
    assert not det.health()
    redis_server.start()
    deadline = time.monotonic() + 10
    result = det.analyse(msg(T0 + 200))
    while result.error and time.monotonic() < deadline:
        time.sleep(0.1)
        result = det.analyse(msg(T0 + 200))
    assert result.error is None
    assert "sending_anomaly" in result.scores
    assert det.health()
    det.close()


@pytest.mark.redis
def test_redis_state_is_shared_by_two_detectors(tmp_path: Path,
                                                redis_server: RedisServer) -> None:  # noqa: F811
    one = build(tmp_path, run_mode="milter", store="redis", redis_url=redis_server.url)
    two = build(tmp_path, run_mode="milter", store="redis", redis_url=redis_server.url)
    for i in range(10):
        (one if i % 2 else two).analyse(msg(T0 + i * 600))
    assert one.anomalous_senders() == 0
    import redis

    client = redis.Redis.from_url(redis_server.url)
    blob = client.get(f"mailwarden:sending:s:{sender_key('alice@corp.example')}")
    client.close()
    assert Profile.decode(blob).n == 10
    one.close()
    two.close()


def test_attachment_size_counts_non_text_parts_only() -> None:
    payload = base64.encodebytes(b"\x01" * 300_000).decode()
    raw = ("From: a@x.example\nTo: b@y.example\nMIME-Version: 1.0\n"
           'Content-Type: multipart/mixed; boundary="zz"\n\n--zz\nContent-Type: text/plain\n\n'
           + "text " * 5000 + "\n--zz\nContent-Type: application/pdf\n"
           "Content-Transfer-Encoding: base64\n\n" + payload + "--zz--\n").encode()
    m = msg(T0, raw=raw)
    assert 290_000 <= attachment_bytes(m) <= 310_000
    assert attachment_bytes(msg(T0)) == 0


def test_event_uses_message_time_and_reply_headers() -> None:
    raw = b"From: a@x.example\nTo: b@y.example\nIn-Reply-To: <x@y>\n\nhi\n"
    ev = event_from_message(msg(T0 + 5, raw=raw))
    assert ev.at == T0 + 5 and ev.is_reply and ev.size == len(raw)
    assert not event_from_message(msg(T0)).is_reply
