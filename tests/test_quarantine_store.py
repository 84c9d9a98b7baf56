"""The quarantine store: records, reviews, allow list, feedback, counters, privacy, sharing."""

from __future__ import annotations

import os
import pwd
import sqlite3
import threading
from pathlib import Path

import pytest

from mailwarden.quarantine.records import ANY_SENDER, HeldRecord, Review, address_hash
from mailwarden.quarantine.store import FILENAME, QuarantineStore, StoreError


def record(store: QuarantineStore, ref: str = "MW-0000000000A1", queue_id: str = "AB12CD34EF",
           created: float = 1000.0, sender: str = "Alice@Example.org",
           rcpts: tuple[str, ...] = ("bob@partner.example", "carol@other.example")) -> HeldRecord:
    finding = {"detector": "leak", "type": "credit_card", "score": 6.0, "count": 2,
               "location": "attachment:salaries.xlsx", "evidence": "****1234, ****9876",
               "confidence": "high", "details": {"kinds": "visa"}}
    return HeldRecord(
        queue_id=queue_id, ref=ref, created=created, verdict="quarantine", mode="enforce",
        score=6.0, scores={"leak": 6.0}, findings=(finding,), reasons=("score 6.00 >= 5",),
        models={"leak": "rules 1"}, direction="outbound", sender_domain="example.org",
        sender_hash=store.hash(sender), recipient_hashes=tuple(store.hash(r) for r in rcpts),
        recipient_domains=tuple(sorted({r.split("@")[1] for r in rcpts})), size=2048)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = QuarantineStore(tmp_path / "state" / FILENAME)
    yield s
    s.close()


def test_record_round_trip_and_lookup_by_ref_or_newest_queue_id(store: QuarantineStore) -> None:
    first = record(store)
    first_id = store.add(first)
    newer = record(store, ref="MW-0000000000A2", created=2000.0)  # queue ID reused later
    store.add(newer)
    found = store.find("mw-0000000000a1")
    assert found is not None and found.id == first_id
    assert found == HeldRecord(**{**_fields(first), "id": first_id})
    by_qid = store.find("AB12CD34EF")
    assert by_qid is not None and by_qid.ref == "MW-0000000000A2"
    assert store.find("ZZZZZZZZZZ") is None
    assert [r.ref for r in store.records("held")] == ["MW-0000000000A1", "MW-0000000000A2"]
    assert found.detectors == ("leak",) and found.types == ("credit_card",)


def _fields(r: HeldRecord) -> dict[str, object]:
    return {name: getattr(r, name) for name in HeldRecord.__dataclass_fields__}


def test_store_file_holds_no_addresses(store: QuarantineStore, tmp_path: Path) -> None:
    store.add(record(store))
    store.review(store.records()[0], Review("released", "root", feedback="false_positive",
                                            allow="pair"))
    store.close()
    data = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir())
    for address in (b"alice@example.org", b"Alice@Example.org", b"bob@partner.example"):
        assert address not in data
    assert b"partner.example" in data  # domains are kept in clear


def test_hash_is_keyed_and_case_insensitive() -> None:
    assert address_hash(b"k1", "A@B.example") == address_hash(b"k1", "<a@b.example>")
    assert address_hash(b"k1", "a@b.example") != address_hash(b"k2", "a@b.example")


def test_each_store_has_its_own_salt(tmp_path: Path) -> None:
    one, two = QuarantineStore(tmp_path / "1.sqlite"), QuarantineStore(tmp_path / "2.sqlite")
    assert len(one.salt) == 16 and one.salt != two.salt
    again = QuarantineStore(tmp_path / "1.sqlite")
    assert again.salt == one.salt
    for s in (one, two, again):
        s.close()


def test_review_updates_state_events_counters_and_feedback(store: QuarantineStore) -> None:
    store.add(record(store))
    held = store.records()[0]
    done = store.review(held, Review("deleted", "alice", "leak confirmed", "confirmed_leak",
                                     counters=(("reviewed", "delete"),
                                               ("feedback", "confirmed_leak"))))
    assert done.state == "deleted" and done.state_by == "alice" and done.state_at
    assert store.records("held") == [] and store.held_count() == 0
    assert store.records("deleted")[0].note == "leak confirmed"
    assert store.counters() == {("reviewed", "delete"): 1, ("feedback", "confirmed_leak"): 1}
    (row,) = store.feedback_rows()
    assert row["label"] == "confirmed_leak" and row["ref"] == held.ref
    assert row["scores"] == {"leak": 6.0} and row["recipient_count"] == 2
    assert row["findings"] == [{"detector": "leak", "type": "credit_card", "score": 6.0,
                                "count": 2, "confidence": "high", "details": {"kinds": "visa"}}]
    conn = sqlite3.connect(store.path)
    events = conn.execute("SELECT action, actor, detail FROM events").fetchall()
    assert events == [("deleted", "alice", "leak confirmed")]


def test_allow_entries_pair_domain_and_any_sender_without_duplicates(
        store: QuarantineStore) -> None:
    store.add(record(store))
    store.add(record(store, ref="MW-0000000000A2", queue_id="CD34EF56AB"))
    first, second = store.records()
    store.review(first, Review("released", "root", feedback="false_positive", allow="pair"))
    store.review(second, Review("released", "root", feedback="false_positive", allow="pair"))
    entries = store.allow_entries()
    assert [(e.kind, e.sender_hash) for e in entries] == [("pair", first.sender_hash)] * 2
    assert {e.target for e in entries} == set(first.recipient_hashes)
    third = record(store, ref="MW-0000000000A3", queue_id="EF56AB78CD")
    store.add(third)
    store.review(store.find("MW-0000000000A3"),  # type: ignore[arg-type]
                 Review("released", "root", allow="domain", any_sender=True))
    domains = [(e.sender_hash, e.target) for e in store.allow_entries() if e.kind == "domain"]
    assert domains == [(ANY_SENDER, "other.example"), (ANY_SENDER, "partner.example")]
    assert store.remove_allow(entries[0].id, "root") is True
    assert store.remove_allow(entries[0].id, "root") is False
    assert len(store.allow_entries()) == 3


def test_prune_forgets_old_reviewed_records_only(store: QuarantineStore) -> None:
    store.add(record(store, created=100.0))
    store.add(record(store, ref="MW-0000000000A2", queue_id="CD34EF56AB", created=100.0))
    store.review(store.find("MW-0000000000A2"), Review("released", "root",  # type: ignore[arg-type]
                                                       feedback="false_positive"))
    assert store.prune(before=200.0) == 1
    assert [r.ref for r in store.records(None)] == ["MW-0000000000A1"]
    assert len(store.feedback_rows()) == 1  # feedback is training data: kept


def test_concurrent_writers_from_threads_and_a_second_process_handle(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    writer, other = QuarantineStore(path), QuarantineStore(path)
    errors: list[BaseException] = []

    def add_many(s: QuarantineStore, offset: int) -> None:
        try:
            for i in range(25):
                s.add(record(s, ref=f"MW-{offset + i:012X}", queue_id=f"Q{offset + i:09d}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add_many, args=(s, n * 100))
               for n, s in enumerate((writer, writer, other, other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(writer.records()) == 100
    writer.close()
    other.close()


def test_missing_store_is_not_created_when_asked_not_to(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        QuarantineStore(tmp_path / "nope" / FILENAME, create=False)
    assert not (tmp_path / "nope").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create files owned by others")
def test_root_leaves_files_owned_by_the_state_directory_owner(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    s = QuarantineStore(state / FILENAME)
    s.add(record(s))
    owners = {p.name: (p.stat().st_uid, p.stat().st_gid) for p in state.iterdir()}
    s.close()
    assert owners[FILENAME] == (nobody.pw_uid, nobody.pw_gid)
    assert all(owner == (nobody.pw_uid, nobody.pw_gid) for owner in owners.values()), owners



def test_short_lived_threads_do_not_leak_connections(store: QuarantineStore) -> None:
    """The daemon writes from libmilter's per-connection threads: one thread per SMTP session."""

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    store.add(record(store, ref="MW-100000000000", queue_id="WARMUP0000"))
    before = open_fds()
    for i in range(40):
        t = threading.Thread(target=store.add,
                             args=(record(store, ref=f"MW-{i:012X}", queue_id=f"Q{i:09d}"),))
        t.start()
        t.join()
    assert len(store.records()) == 41
    assert open_fds() <= before + 1
