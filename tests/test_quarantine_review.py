"""Review operations and the CLI over an in-memory MTA: joins, checks, expiry, exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from mailwarden.cli import main
from mailwarden.quarantine import cli as quarantine_cli
from mailwarden.quarantine import review
from mailwarden.quarantine.mta import HOLD, MtaError, MtaNotFound, MtaPermissionError, QueuedMessage
from mailwarden.quarantine.records import HeldRecord
from mailwarden.quarantine.sink import QuarantineSettings
from mailwarden.quarantine.store import FILENAME, QuarantineStore

from conftest import write_config

NOW = 1_000_000.0


class FakeQueue:
    """An MTA hold queue in memory, with the behaviour of the real backends."""

    name = "fake"

    def __init__(self) -> None:
        self.queued: dict[str, QueuedMessage] = {}
        self.head: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []
        self.refuse = False

    def hold(self, qid: str, ref: str | None, arrival: float = NOW - 10,
             sender: str = "alice@example.org", queue: str = HOLD) -> None:
        self.queued[qid] = QueuedMessage(qid, queue, arrival, 100, sender, ("bob@partner.example",))
        verdict = f"X-Mailwarden-Verdict: quarantine; mode=enforce; ref={ref}\n" if ref else ""
        self.head[qid] = f"Subject: hi\n{verdict}".encode()

    def messages(self) -> dict[str, QueuedMessage]:
        return dict(self.queued)

    def headers(self, queue_id: str) -> bytes:
        return self.head[queue_id]

    def content(self, queue_id: str) -> bytes:
        return self.head[queue_id] + b"\nsecret body\n"

    def _take(self, action: str, queue_id: str) -> None:
        if self.refuse:
            raise MtaPermissionError(f"{action} {queue_id}: not permitted (run as root)")
        if queue_id not in self.queued or self.queued[queue_id].queue != HOLD:
            raise MtaNotFound(f"{queue_id} is not held")
        del self.queued[queue_id]
        self.calls.append((action, queue_id))

    def release(self, queue_id: str) -> None:
        self._take("release", queue_id)

    def delete(self, queue_id: str) -> None:
        self._take("delete", queue_id)


def add(store: QuarantineStore, qid: str, ref: str, created: float = NOW,
        detector: str = "leak", domain: str = "example.org") -> HeldRecord:
    store.add(HeldRecord(
        queue_id=qid, ref=ref, created=created, verdict="quarantine", mode="enforce", score=7.0,
        scores={}, findings=({"detector": detector, "type": "credit_card", "score": 7.0,
                              "count": 1, "evidence": "****1234"},),
        reasons=("score 7.00 >= quarantine threshold 5",), models={}, direction="outbound",
        sender_domain=domain, sender_hash=store.hash(f"alice@{domain}"),
        recipient_hashes=(store.hash("bob@partner.example"),),
        recipient_domains=("partner.example",), size=100))
    found = store.find(ref)
    assert found is not None
    return found


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = QuarantineStore(tmp_path / FILENAME)
    yield s
    s.close()


def settings(tmp_path: Path, days: float = 14.0, action: str = "delete") -> QuarantineSettings:
    return QuarantineSettings(True, tmp_path / FILENAME, "postfix", "", "", "sendmail", days,
                              action, 180.0)


def test_entries_join_records_with_the_hold_queue(store: QuarantineStore) -> None:
    queue = FakeQueue()
    add(store, "AAAAA11111", "MW-00000000000A")
    add(store, "BBBBB22222", "MW-00000000000B")  # no longer queued
    queue.hold("AAAAA11111", "MW-00000000000A")
    queue.hold("CCCCC33333", None)  # held by something else
    queue.hold("DDDDD44444", None, queue="deferred")
    items = {e.queue_id: e for e in review.entries(store, queue)}
    # BBBBB22222 left the hold queue behind mailwarden's back: reconciled, no longer "held".
    assert set(items) == {"AAAAA11111", "CCCCC33333"}
    assert items["AAAAA11111"].mta_state == HOLD and items["AAAAA11111"].record is not None
    assert items["CCCCC33333"].record is None and items["CCCCC33333"].sender_domain == \
        "example.org"
    gone = {e.queue_id: e for e in review.entries(store, queue, "gone")}
    assert set(gone) == {"BBBBB22222"} and gone["BBBBB22222"].mta_state == "missing"


def test_reconcile_marks_holds_released_or_deleted_behind_its_back(
        store: QuarantineStore) -> None:
    queue = FakeQueue()
    for qid, ref in (("AAAAA11111", "MW-00000000000A"), ("BBBBB22222", "MW-00000000000B"),
                     ("CCCCC33333", "MW-00000000000C")):
        add(store, qid, ref)
        queue.hold(qid, ref)
    add(store, "DDDDD44444", "MW-00000000000D", created=NOW + 55)  # just written, not listed yet
    queue.hold("BBBBB22222", "MW-00000000000B", queue="deferred")  # postsuper -H
    del queue.queued["CCCCC33333"]  # postsuper -d, or delivered after a postsuper -H
    done = review.reconcile(store, queue.messages(), now=NOW + 60)
    assert {(d.record.queue_id, d.state, d.where) for d in done} == {
        ("BBBBB22222", "released_externally", "deferred"), ("CCCCC33333", "gone", "missing")}
    assert [r.queue_id for r in store.records("held")] == ["AAAAA11111", "DDDDD44444"]
    released = store.find("MW-00000000000B")
    assert released is not None and released.state_by == "mta"
    assert "outside mailwarden" in released.note
    assert store.counters() == {("reconciled", "released_externally"): 1,
                                ("reconciled", "gone"): 1}
    assert review.reconcile(store, queue.messages(), now=NOW + 60) == []  # idempotent


def test_select_filters_age_detector_and_sender_domain(store: QuarantineStore) -> None:
    queue = FakeQueue()
    add(store, "AAAAA11111", "MW-00000000000A", created=NOW - 3 * 86400)
    add(store, "BBBBB22222", "MW-00000000000B", created=NOW - 600, detector="content",
        domain="other.example")
    queue.hold("AAAAA11111", "MW-00000000000A", arrival=NOW - 3 * 86400)
    queue.hold("BBBBB22222", "MW-00000000000B", arrival=NOW - 600)
    queue.hold("CCCCC33333", None, arrival=NOW - 60)
    items = review.entries(store, queue)

    def ids(**kw: object) -> set[str]:
        return {e.queue_id for e in review.select(items, NOW, **kw)}  # type: ignore[arg-type]

    assert ids(older_than=86400) == {"AAAAA11111"}
    assert ids(newer_than=3600) == {"BBBBB22222", "CCCCC33333"}
    assert ids(detector="content") == {"BBBBB22222"}
    assert ids(sender_domain="@Example.org") == {"AAAAA11111", "CCCCC33333"}


def test_verify_refuses_a_reused_queue_id(store: QuarantineStore) -> None:
    queue = FakeQueue()
    rec = add(store, "AAAAA11111", "MW-00000000000A")
    queue.hold("AAAAA11111", "MW-0000000000FF")  # another message of ours with that ID
    with pytest.raises(review.ReviewError, match="queue ID reused"):
        review.verify(queue, rec)
    queue.hold("AAAAA11111", None, arrival=NOW + 3600)  # not ours, arrived after the record
    with pytest.raises(review.ReviewError, match="queue ID reused"):
        review.verify(queue, rec)
    queue.hold("AAAAA11111", "MW-00000000000A", queue="deferred")
    with pytest.raises(review.ReviewError, match="in the deferred queue"):
        review.verify(queue, rec)
    queue.hold("AAAAA11111", "MW-00000000000A")
    assert review.verify(queue, rec).queue_id == "AAAAA11111"


def test_release_as_false_positive_records_feedback_and_allow(store: QuarantineStore) -> None:
    queue = FakeQueue()
    add(store, "AAAAA11111", "MW-00000000000A")
    queue.hold("AAAAA11111", "MW-00000000000A")
    with pytest.raises(review.ReviewError, match="--allow needs --false-positive"):
        review.release(store, queue, "AAAAA11111", "root", allow="pair")
    done = review.release(store, queue, "MW-00000000000A", "ops", false_positive=True,
                          allow="domain", note="partner")
    assert queue.calls == [("release", "AAAAA11111")]
    assert done.state == "released" and done.state_by == "ops" and done.note == "partner"
    assert [r["label"] for r in store.feedback_rows()] == ["false_positive"]
    assert [(e.kind, e.target) for e in store.allow_entries()] == [("domain", "partner.example")]
    assert store.counters() == {("reviewed", "release"): 1, ("feedback", "false_positive"): 1}
    with pytest.raises(review.ReviewError, match="already released"):
        review.release(store, queue, "AAAAA11111", "ops")


def test_refused_mta_action_leaves_the_record_held(store: QuarantineStore) -> None:
    queue = FakeQueue()
    add(store, "AAAAA11111", "MW-00000000000A")
    queue.hold("AAAAA11111", "MW-00000000000A")
    queue.refuse = True
    with pytest.raises(MtaPermissionError):
        review.delete(store, queue, "AAAAA11111", "ops", confirmed=True)
    assert store.records("held")[0].queue_id == "AAAAA11111"
    assert store.feedback_rows() == [] and store.counters() == {}


def test_expire_acts_on_old_records_only(store: QuarantineStore, tmp_path: Path) -> None:
    queue = FakeQueue()
    add(store, "AAAAA11111", "MW-00000000000A", created=NOW - 15 * 86400)
    add(store, "BBBBB22222", "MW-00000000000B", created=NOW - 86400)
    add(store, "CCCCC33333", "MW-00000000000C", created=NOW - 20 * 86400)  # vanished
    queue.hold("AAAAA11111", "MW-00000000000A", arrival=NOW - 15 * 86400 - 5)
    queue.hold("BBBBB22222", "MW-00000000000B", arrival=NOW - 86400 - 5)
    dry = review.expire(store, queue, settings(tmp_path), "timer", now=NOW, dry_run=True)
    assert sorted((e.record.queue_id, e.outcome) for e in dry) == [
        ("AAAAA11111", "delete"), ("CCCCC33333", "gone")]
    assert queue.calls == [] and len(store.records("held")) == 3
    done = review.expire(store, queue, settings(tmp_path, action="release"), "timer", now=NOW)
    assert sorted((e.record.queue_id, e.outcome) for e in done) == [
        ("AAAAA11111", "release"), ("CCCCC33333", "gone")]
    assert queue.calls == [("release", "AAAAA11111")]
    assert [r.queue_id for r in store.records("held")] == ["BBBBB22222"]
    assert store.records("expired")[0].note == "expired unreviewed after 15.0 days: release"
    assert store.counters() == {("expired", "release"): 1, ("reconciled", "gone"): 1}
    assert review.expire(store, queue, settings(tmp_path, days=0), "timer", now=NOW) == []


def test_expire_prunes_old_reviewed_records(store: QuarantineStore, tmp_path: Path) -> None:
    queue = FakeQueue()
    add(store, "AAAAA11111", "MW-00000000000A", created=NOW - 400 * 86400)
    queue.hold("AAAAA11111", "MW-00000000000A", arrival=NOW - 400 * 86400 - 5)
    review.delete(store, queue, "AAAAA11111", "ops")
    review.expire(store, queue, settings(tmp_path), "timer", now=NOW)
    assert store.records(None) == []


def test_age_parser() -> None:
    assert quarantine_cli.age("90m") == 5400 and quarantine_cli.age("2") == 2 * 86400
    assert quarantine_cli.age("1.5h") == 5400 and quarantine_cli.age("1w") == 7 * 86400
    with pytest.raises(argparse.ArgumentTypeError):
        quarantine_cli.age("soon")


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    queue = FakeQueue()
    monkeypatch.setattr(quarantine_cli, "make_queue", lambda *a, **k: queue)
    config = write_config(tmp_path)
    store = QuarantineStore(tmp_path / "state" / FILENAME)
    yield queue, store, str(config)
    store.close()


def test_cli_list_and_show(fake_cli, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    queue, store, config = fake_cli
    rec = add(store, "AAAAA11111", "MW-00000000000A", created=NOW)
    queue.hold("AAAAA11111", rec.ref, arrival=NOW - 1)
    assert main(["quarantine", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "AAAAA11111" in out and "credit_card=1 (leak)" in out and "1 message(s)" in out
    assert main(["quarantine", "show", "AAAAA11111", "--config", config, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["ref"] == rec.ref and "body" not in shown and "Subject: hi" in shown["headers"]
    assert main(["quarantine", "show", rec.ref, "--config", config, "--body"]) == 0
    text = capsys.readouterr().out
    assert "secret body" in text and "****1234" in text
    assert main(["quarantine", "show", "ZZZZZ99999", "--config", config]) == 1
    assert "no record and not in the MTA's queue" in capsys.readouterr().err


def test_cli_release_reports_each_failure_and_exits_1(fake_cli,  # type: ignore[no-untyped-def]
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    queue, store, config = fake_cli
    rec = add(store, "AAAAA11111", "MW-00000000000A")
    queue.hold("AAAAA11111", rec.ref)
    status = main(["quarantine", "release", "ZZZZZ99999", "AAAAA11111", "--config", config,
                   "--false-positive", "--allow", "pair"])
    out = capsys.readouterr()
    assert status == 1
    assert "ZZZZZ99999: no mailwarden quarantine record" in out.err
    assert "released AAAAA11111 (MW-00000000000A) as a false positive" in out.out
    assert main(["quarantine", "release", "AAAAA11111", "--allow", "pair",
                 "--config", config]) == 1
    assert "--allow needs --false-positive" in capsys.readouterr().err
    assert main(["quarantine", "allowlist", "--config", config, "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["kind"] == "pair" and entry["ref"] == "MW-00000000000A"
    assert main(["quarantine", "allowlist", "--remove", str(entry["id"]),
                 "--config", config]) == 0
    assert main(["quarantine", "allowlist", "--remove", str(entry["id"]),
                 "--config", config]) == 1


def test_cli_bad_quarantine_config_exits_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, extra="[quarantine]\nexpire_action = \"bounce\"\n")
    assert main(["quarantine", "list", "--config", str(config)]) == 2
    assert "quarantine.expire_action" in capsys.readouterr().err


def test_cli_list_without_the_mta_shows_records_and_exits_1(  # type: ignore[no-untyped-def]
        fake_cli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    queue, store, config = fake_cli
    add(store, "AAAAA11111", "MW-00000000000A")

    def down() -> dict[str, QueuedMessage]:
        raise MtaError("listing the queue: postqueue failed: Mail system is down")

    monkeypatch.setattr(queue, "messages", down)
    assert main(["quarantine", "list", "--config", config, "--json"]) == 1
    out = capsys.readouterr()
    assert "Mail system is down; showing mailwarden's records only" in out.err
    row = json.loads(out.out)
    assert row["queue_id"] == "AAAAA11111" and row["mta_queue"] == "unknown"
    assert row["state"] == "held"
