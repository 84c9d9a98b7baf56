"""Quarantine review operations: the store's records joined with the MTA's hold queue.

This is what ``mailwarden quarantine`` does, without the argument parsing and printing (see
:mod:`mailwarden.quarantine.cli`): list held messages (records joined by queue ID with the MTA's
own listing), check that a queue ID still names the message the record describes, release or
delete it through the MTA and record the review (audit event, optional feedback row and allow
entries), and expire what nobody reviewed. The MTA acts first and the store records afterwards,
so a refused ``postsuper`` leaves the record untouched.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import time
from dataclasses import dataclass

from mailwarden.message import domain_of
from mailwarden.quarantine.mta import HOLD, MailQueue, MtaNotFound, QueuedMessage
from mailwarden.quarantine.records import HeldRecord, Review
from mailwarden.quarantine.sink import QuarantineSettings
from mailwarden.quarantine.store import QuarantineStore

log = logging.getLogger("mailwarden.quarantine.sink")

_REF_RE = re.compile(rb"^X-Mailwarden-Verdict:.*\bref=(MW-[0-9A-F]+)", re.M | re.I)
# A queue ID that names the held message arrived before the record was written.
_ARRIVAL_SLACK = 120.0
# The daemon writes a record before Postfix's cleanup has moved the message into the hold queue:
# a record this young whose message is not listed yet is not reconciled (it may still arrive).
RECONCILE_GRACE = 10.0
RELEASED_EXTERNALLY = "released_externally"
GONE = "gone"


class ReviewError(Exception):
    """A review request that cannot be carried out; the message is safe to print."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One held message as the reviewer sees it: our record, the MTA's entry, or both."""

    record: HeldRecord | None
    queued: QueuedMessage | None
    mta_unknown: bool = False  # the MTA could not be asked (down, not permitted)

    @property
    def queue_id(self) -> str:
        if self.record is not None:
            return self.record.queue_id
        assert self.queued is not None
        return self.queued.queue_id

    @property
    def held_at(self) -> float:
        if self.record is not None:
            return self.record.created
        return self.queued.arrival if self.queued else 0.0

    @property
    def mta_state(self) -> str:
        if self.mta_unknown:
            return "unknown"
        return self.queued.queue if self.queued else "missing"

    @property
    def sender_domain(self) -> str:
        if self.record is not None:
            return self.record.sender_domain
        return domain_of(self.queued.sender) if self.queued else ""


def actor() -> str:
    """Who is reviewing: the sudo caller if any, else the effective user."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def entries(store: QuarantineStore, queue: MailQueue | None,
            state: str | None = "held") -> list[Entry]:
    """Records in ``state`` joined with the MTA's queue, plus held messages without a record
    (``queue`` None: the MTA cannot be asked, records only). Records whose message left the hold
    queue behind mailwarden's back are reconciled first (see :func:`reconcile`)."""
    queued = queue.messages() if queue is not None else {}
    if queue is not None:
        reconcile(store, queued)
    records = store.records(state)
    out = [Entry(r, queued.get(r.queue_id), queue is None) for r in records]
    known = {r.queue_id for r in records}
    if state in (None, "held"):
        out += [Entry(None, q) for q in queued.values()
                if q.queue == HOLD and q.queue_id not in known]
    return sorted(out, key=lambda e: e.held_at)


@dataclass(frozen=True, slots=True)
class Reconciled:
    record: HeldRecord
    state: str  # RELEASED_EXTERNALLY | GONE
    where: str  # the MTA queue it is in now, or "missing"


def reconcile(store: QuarantineStore, queued: dict[str, QueuedMessage],
              now: float | None = None, grace: float = RECONCILE_GRACE) -> list[Reconciled]:
    """Mark held records whose message is no longer in the hold queue: released with the MTA's
    own tools (``postsuper -H``: it is in another queue now, state ``released_externally``) or
    gone (delivered after such a release, or deleted: ``gone``). ``queued`` must have been
    listed after the records were written; a message that is missing but younger than ``grace``
    seconds is left alone (its cleanup may not have finished)."""
    now = time.time() if now is None else now
    out = []
    for record in store.records("held"):
        msg = queued.get(record.queue_id)
        if msg is not None and msg.queue == HOLD:
            continue
        if msg is not None and msg.arrival <= record.created + _ARRIVAL_SLACK:
            state, where = RELEASED_EXTERNALLY, msg.queue
        elif now - record.created < grace:
            continue
        else:
            state, where = GONE, "missing"
        detail = (f"left the hold queue outside mailwarden (now {where}): "
                  "released or deleted with the MTA's own tools")
        store.review(record, Review(state, "mta", detail, counters=(("reconciled", state),)))
        log.warning("qid=%s ref=%s %s: %s", record.queue_id, record.ref, state, detail)
        out.append(Reconciled(record, state, where))
    return out


def select(items: list[Entry], now: float, older_than: float | None = None,
           newer_than: float | None = None, detector: str | None = None,
           sender_domain: str | None = None) -> list[Entry]:
    """Filter by age (seconds), detector name and sender domain."""
    out = []
    for item in items:
        age = now - item.held_at
        if older_than is not None and age < older_than:
            continue
        if newer_than is not None and age > newer_than:
            continue
        if detector and (item.record is None or detector not in item.record.detectors):
            continue
        if sender_domain and item.sender_domain != sender_domain.lower().lstrip("@"):
            continue
        out.append(item)
    return out


def resolve(store: QuarantineStore, key: str) -> HeldRecord:
    record = store.find(key)
    if record is None:
        raise ReviewError(f"{key}: no mailwarden quarantine record (not held by mailwarden?)")
    return record


def verify(queue: MailQueue, record: HeldRecord) -> QueuedMessage:
    """The MTA's held message for ``record``, refusing a queue ID reused by another message."""
    if record.state != "held":
        raise ReviewError(f"{record.queue_id} ({record.ref}) was already {record.state}")
    queued = queue.messages().get(record.queue_id)
    if queued is None or queued.queue != HOLD:
        where = f"in the {queued.queue} queue" if queued else "no longer queued"
        raise ReviewError(f"{record.queue_id} ({record.ref}) is not held: {where}")
    refs = set(re.findall(r"MW-[0-9A-F]+", queued.reason))
    refs |= {m.decode() for m in _REF_RE.findall(queue.headers(record.queue_id))}
    if (refs and record.ref not in refs) or queued.arrival > record.created + _ARRIVAL_SLACK:
        raise ReviewError(f"{record.queue_id} now names another message than {record.ref} "
                          "(queue ID reused); nothing done")
    return queued


def release(store: QuarantineStore, queue: MailQueue, key: str, who: str,
            false_positive: bool = False, allow: str | None = None, any_sender: bool = False,
            note: str = "") -> HeldRecord:
    record = resolve(store, key)
    if allow and not false_positive:
        raise ReviewError("--allow needs --false-positive")
    verify(queue, record)
    queue.release(record.queue_id)
    counters = [("reviewed", "release")]
    if false_positive:
        counters.append(("feedback", "false_positive"))
    review = Review("released", who, note, "false_positive" if false_positive else None,
                    allow, any_sender, tuple(counters))
    done = store.review(record, review)
    log.info("qid=%s ref=%s released by %s%s", record.queue_id, record.ref, who,
             " (false positive" + (f", allow {allow})" if allow else ")") if false_positive
             else "")
    return done


def delete(store: QuarantineStore, queue: MailQueue, key: str, who: str,
           confirmed: bool = False, note: str = "") -> HeldRecord:
    record = resolve(store, key)
    verify(queue, record)
    queue.delete(record.queue_id)
    counters = [("reviewed", "delete")]
    if confirmed:
        counters.append(("feedback", "confirmed_leak"))
    review = Review("deleted", who, note, "confirmed_leak" if confirmed else None,
                    counters=tuple(counters))
    done = store.review(record, review)
    log.info("qid=%s ref=%s deleted by %s%s", record.queue_id, record.ref, who,
             " (confirmed leak)" if confirmed else "")
    return done


@dataclass(frozen=True, slots=True)
class Expired:
    record: HeldRecord
    outcome: str  # "delete" | "release" | "gone" | "released_externally" | "error: ..."


def expire(store: QuarantineStore, queue: MailQueue, settings: QuarantineSettings,
           who: str, now: float | None = None, dry_run: bool = False) -> list[Expired]:
    """Apply the expiry policy to records held longer than ``expire_after_days``."""
    now = time.time() if now is None else now
    out: list[Expired] = []
    if settings.expire_after_days <= 0:
        return out
    limit = settings.expire_after_days * 86400.0
    if not dry_run:  # what left the hold queue outside mailwarden is not expired but reported
        out += [Expired(item.record, item.state) for item in
                reconcile(store, queue.messages(), now) if now - item.record.created >= limit]
    due = [r for r in store.records("held") if now - r.created >= limit]
    queued = queue.messages() if due else {}
    for record in due:
        out.append(_expire_one(store, queue, settings, record, queued, who, now, dry_run))
    if not dry_run:
        store.prune(now - settings.retention_days * 86400.0)
    return out


def _expire_one(store: QuarantineStore, queue: MailQueue, settings: QuarantineSettings,
                record: HeldRecord, queued: dict[str, QueuedMessage], who: str, now: float,
                dry_run: bool) -> Expired:
    days = (now - record.created) / 86400.0
    action = settings.expire_action
    msg = queued.get(record.queue_id)
    if msg is None or msg.queue != HOLD:
        if not dry_run:
            store.review(record, Review("gone", who, "not in the hold queue at expiry"))
        return Expired(record, "gone")
    if dry_run:
        return Expired(record, action)
    try:
        verify(queue, record)
        (queue.release if action == "release" else queue.delete)(record.queue_id)
    except (ReviewError, MtaNotFound) as exc:
        store.review(record, Review("gone", who, f"at expiry: {exc}"))
        return Expired(record, "gone")
    detail = f"expired unreviewed after {days:.1f} days: {action}"
    store.review(record, Review("expired", who, detail, counters=(("expired", action),)))
    log.warning("qid=%s ref=%s expired unreviewed after %.1f days: %s", record.queue_id,
                record.ref, days, "released" if action == "release" else "deleted")
    return Expired(record, action)
