"""The allowlist detector: reviewer allow entries, honoured by the policy through the engine."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mailwarden.detectors import allowlist
from mailwarden.detectors.allowlist import AllowlistDetector
from mailwarden.engine import Engine
from mailwarden.message import Envelope, Message
from mailwarden.metrics import Metrics
from mailwarden.quarantine.records import HeldRecord, Review
from mailwarden.quarantine.store import FILENAME, QuarantineStore
from mailwarden.verdict import ALLOW_TYPE

from conftest import make_config, message_bytes

SENDER = "alice@example.org"


def held(store: QuarantineStore, rcpts: tuple[str, ...], ref: str) -> HeldRecord:
    rec = HeldRecord(
        queue_id="AB12CD34EF", ref=ref, created=1.0, verdict="quarantine", mode="enforce",
        score=6.0, scores={}, findings=(), reasons=(), models={}, direction="outbound",
        sender_domain="example.org", sender_hash=store.hash(SENDER),
        recipient_hashes=tuple(store.hash(r) for r in rcpts),
        recipient_domains=tuple(sorted({r.split("@")[1] for r in rcpts})), size=1)
    store.add(rec)
    found = store.find(ref)
    assert found is not None
    return found


def allow(store: QuarantineStore, kind: str, rcpts: tuple[str, ...], ref: str,
          any_sender: bool = False) -> None:
    store.review(held(store, rcpts, ref), Review("released", "root", feedback="false_positive",
                                                 allow=kind, any_sender=any_sender))


def msg(sender: str, *rcpts: str, marker: str | None = None) -> Message:
    raw = message_bytes(marker=marker, sender=sender, to=rcpts[0])
    return Message(Envelope("QID0000001", sender, tuple(rcpts)), raw, len(raw))


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = QuarantineStore(tmp_path / FILENAME)
    yield store, AllowlistDetector(tmp_path / FILENAME, cache_seconds=0.0)
    store.close()


def allowed(detector: AllowlistDetector, message: Message) -> bool:
    result = detector.analyse(message)
    assert result.error is None
    return [f.type for f in result.findings] == [ALLOW_TYPE]


def test_no_store_means_no_allow_list(tmp_path: Path) -> None:
    detector = AllowlistDetector(tmp_path / FILENAME, cache_seconds=0.0)
    assert not allowed(detector, msg(SENDER, "bob@partner.example"))
    assert not (tmp_path / FILENAME).exists()


def test_pair_covers_only_that_sender_and_recipient(setup) -> None:  # type: ignore[no-untyped-def]
    store, detector = setup
    allow(store, "pair", ("bob@partner.example",), "MW-000000000001")
    assert allowed(detector, msg(SENDER, "bob@partner.example"))
    assert allowed(detector, msg("ALICE@example.org", "Bob@Partner.example"))
    assert not allowed(detector, msg(SENDER, "carol@partner.example"))
    assert not allowed(detector, msg("mallory@example.org", "bob@partner.example"))
    finding = detector.analyse(msg(SENDER, "bob@partner.example")).findings[0]
    assert finding.score == 0.0 and "@" not in finding.evidence


def test_every_recipient_must_be_covered(setup) -> None:  # type: ignore[no-untyped-def]
    store, detector = setup
    allow(store, "pair", ("bob@partner.example",), "MW-000000000001")
    assert not allowed(detector, msg(SENDER, "bob@partner.example", "leak@dropbox.example"))
    allow(store, "domain", ("x@dropbox.example",), "MW-000000000002")
    assert allowed(detector, msg(SENDER, "bob@partner.example", "leak@dropbox.example"))


def test_domain_entry_is_per_sender_unless_any_sender(setup) -> None:  # type: ignore[no-untyped-def]
    store, detector = setup
    allow(store, "domain", ("bob@partner.example",), "MW-000000000001")
    assert allowed(detector, msg(SENDER, "anyone@partner.example"))
    assert not allowed(detector, msg("dave@example.org", "anyone@partner.example"))
    allow(store, "domain", ("bob@partner.example",), "MW-000000000002", any_sender=True)
    assert allowed(detector, msg("dave@example.org", "anyone@partner.example"))


def test_snapshot_is_cached_for_cache_seconds(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / FILENAME)
    detector = AllowlistDetector(tmp_path / FILENAME, cache_seconds=0.3)
    assert not allowed(detector, msg(SENDER, "bob@partner.example"))
    allow(store, "pair", ("bob@partner.example",), "MW-000000000001")
    assert not allowed(detector, msg(SENDER, "bob@partner.example"))  # cached snapshot
    time.sleep(0.35)
    assert allowed(detector, msg(SENDER, "bob@partner.example"))
    store.remove_allow(store.allow_entries()[0].id, "root")
    time.sleep(0.35)
    assert not allowed(detector, msg(SENDER, "bob@partner.example"))
    store.close()


def test_concurrent_analysis_during_refreshes(setup) -> None:  # type: ignore[no-untyped-def]
    store, detector = setup
    allow(store, "pair", ("bob@partner.example",), "MW-000000000001")
    results: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            ok = allowed(detector, msg(SENDER, "bob@partner.example"))
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 300 and all(results)


def test_engine_accepts_an_allowed_message_that_would_be_held(tmp_path: Path) -> None:
    extra = "[detectors.allowlist]\nenabled = true\ncache_seconds = 0.0\n"
    engine = Engine(make_config(tmp_path, extra=extra), Metrics())
    try:
        message = msg(SENDER, "bob@partner.example", marker="quarantine")
        assert engine.scan(message).action.value == "quarantine"
        store = QuarantineStore(tmp_path / "state" / FILENAME)
        allow(store, "pair", ("bob@partner.example",), "MW-000000000001")
        decision = engine.scan(message)
        assert decision.action.value == "accept" and decision.verdict.value == "accept"
        assert decision.reasons[0].startswith("allow list: reviewed allow-list entry #")
        other = msg(SENDER, "carol@partner.example", marker="quarantine")
        assert engine.scan(other).action.value == "quarantine"
        store.close()
    finally:
        engine.close()


def test_callers_during_the_first_load_wait_for_it(setup,  # type: ignore[no-untyped-def]
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = setup
    allow(store, "pair", ("bob@partner.example",), "MW-000000000001")
    slow_load = allowlist.load_snapshot

    def slow(path: Path, now: float) -> allowlist.Snapshot:
        time.sleep(0.3)
        return slow_load(path, now)

    monkeypatch.setattr(allowlist, "load_snapshot", slow)
    detector = AllowlistDetector(store.path, cache_seconds=60.0)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(
        allowed(detector, msg(SENDER, "bob@partner.example")))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 4
