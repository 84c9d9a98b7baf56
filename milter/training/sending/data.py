"""Sending histories for training and evaluating the ``sending`` detector.

Three sources, all turned into time-ordered
:class:`~mailwarden.detectors.sending.features.SendEvent` lists: sending logs (CSV, optionally
gzipped, with ``unix_time``, ``sender``, pipe-separated ``recipients``) whose anonymous node ids are
mapped to addresses and given seeded sizes, attachments, replies and a share of external and webmail
contacts (the logs have none of these); mail archives read with
:func:`mailwarden.files.sources.iter_sources` and replayed by Date/From/To/Cc, exactly as the
detector would see them; and a seeded generator of normal organisation traffic (working hours,
contact lists, partner domains, occasional new contacts), which any machine can rebuild and which
trains the shipped default model.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from mailwarden.detectors.sending.detector import event_from_message
from mailwarden.detectors.sending.features import SendEvent
from mailwarden.files.sources import iter_sources
from mailwarden.message import Envelope, Message

WEBMAIL_POOL = ("gmail.com", "outlook.com", "yahoo.com", "gmx.de", "web.de", "icloud.com")


def load_log(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """Rows (unix_time, sender id, recipient ids) of a sending-log CSV (``.gz`` allowed)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows = []
    for row in csv.DictReader(io.StringIO(raw.decode("utf-8"))):
        rcpts = tuple(r for r in row["recipients"].split("|") if r)
        rows.append((int(float(row["unix_time"])), row["sender"], rcpts))
    rows.sort(key=lambda r: r[0])
    return rows


def _contact_map(rows: list[tuple[int, str, tuple[str, ...]]], seed: int,
                 domain: str) -> dict[str, str]:
    """Node id -> address: senders stay internal; other ids become partners or webmail."""
    rng = random.Random(f"contacts:{seed}")
    senders = {r[1] for r in rows}
    ids = sorted(senders | {x for r in rows for x in r[2]}, key=lambda v: (len(v), v))
    out = {}
    for node in ids:
        u = rng.random()
        if node in senders or u >= 0.17:
            out[node] = f"u{node}@{domain}"
        elif u < 0.15:
            out[node] = f"c{node}@partner{rng.randrange(12)}.example.net"
        else:
            out[node] = f"c{node}@{rng.choice(WEBMAIL_POOL)}"
    return out


class _Habits:
    """Seeded per-sender message sizes, attachment habits and reply share."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.size_mu = math.log(rng.uniform(4000, 40000))
        self.attach_p = rng.uniform(0.03, 0.35)
        self.attach_mu = math.log(rng.uniform(40_000, 600_000))
        self.reply_p = rng.uniform(0.3, 0.7)

    def sizes(self) -> tuple[int, int, bool]:
        rng = self.rng
        attach = int(rng.lognormvariate(self.attach_mu, 1.0)) if rng.random() < self.attach_p else 0
        size = int(rng.lognormvariate(self.size_mu, 0.6)) + attach * 4 // 3
        return size, attach, rng.random() < self.reply_p


def enrich_log(rows: list[tuple[int, str, tuple[str, ...]]], seed: int = 0,
               domain: str = "corp.example") -> list[SendEvent]:
    contacts = _contact_map(rows, seed, domain)
    habits: dict[str, _Habits] = {}
    events = []
    for at, sender, rcpts in rows:
        h = habits.get(sender) or habits.setdefault(sender, _Habits(random.Random(
            f"habits:{seed}:{sender}")))
        size, attach, reply = h.sizes()
        events.append(SendEvent(float(at), contacts[sender], tuple(contacts[r] for r in rcpts),
                                size, attach, reply))
    return events


def events_from_mail(paths: Iterable[str | Path]) -> list[SendEvent]:
    """Messages of mail files/archives as the detector would see them, ordered by Date."""
    events = []
    for raw in iter_sources(paths):
        message = Message(Envelope("", "", ()), raw.data, len(raw.data), source=raw.source)
        parsed = message.parsed
        try:
            at = parsedate_to_datetime(str(parsed.get("Date", ""))).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        sender = [a for _, a in getaddresses([str(parsed.get("From", ""))]) if "@" in a]
        rcpts = [a for _, a in getaddresses([str(v) for k in ("To", "Cc", "Bcc")
                                             for v in parsed.get_all(k, [])]) if "@" in a]
        if not sender or not rcpts:
            continue
        message.envelope = Envelope("", sender[0], tuple(rcpts), received_at=at)
        events.append(event_from_message(message))
    events.sort(key=lambda e: e.at)
    return events


def load_events(paths: Iterable[str | Path], seed: int = 0) -> list[SendEvent]:
    """CSV sending logs, audit logs (``*.jsonl``) and mail sources together, in time order."""
    events: list[SendEvent] = []
    mail: list[Path] = []
    from mailwarden.training.sending.audit import events_from_audit, is_audit_log

    for path in map(Path, paths):
        if path.name.endswith((".csv", ".csv.gz")):
            events.extend(enrich_log(load_log(path), seed, domain=f"{_stem(path)}.example"))
        elif is_audit_log(path):  # the installation's own audit log (mailwarden.sinks.audit)
            events.extend(events_from_audit(path))
        else:
            mail.append(path)
    if mail:
        events.extend(events_from_mail(mail))
    events.sort(key=lambda e: e.at)
    return events


def _stem(path: Path) -> str:
    return path.name.split(".")[0].replace("_", "-")


def synthetic_history(seed: int, senders: int = 40, days: int = 60, timezone: str = "UTC",
                      start: datetime | None = None,
                      domain: str = "example.org") -> list[SendEvent]:
    """Normal traffic of a small organisation, reproducible from ``seed``."""
    tz = ZoneInfo(timezone)
    first = (start or datetime(2024, 1, 1)).replace(tzinfo=tz)
    staff = [f"user{i}@{domain}" for i in range(max(senders * 3, 60))]
    partners = [f"partner{i}.example.com" for i in range(30)]
    events: list[SendEvent] = []
    for i in range(senders):
        person = _Person(random.Random(f"person:{seed}:{i}"), staff[i], staff, partners)
        for day in range(days):
            events.extend(person.day(first + timedelta(days=day)))
    events.sort(key=lambda e: e.at)
    return events


class _Person:
    def __init__(self, rng: random.Random, address: str, staff: list[str],
                 partners: list[str]) -> None:
        self.rng, self.address, self.staff, self.partners = rng, address, staff, partners
        self.rate = min(max(rng.lognormvariate(math.log(8), 0.7), 1.0), 60.0)
        self.start, self.span = rng.uniform(7, 10), rng.uniform(7, 10)
        self.weekend = rng.uniform(0.0, 0.15)
        self.evening = rng.random() < 0.15
        self.contacts = rng.sample(staff, rng.randint(4, 30))
        for _ in range(rng.randint(0, 12)):
            self.contacts.append(f"ext{rng.randrange(10**6)}@{rng.choice(partners)}")
        if rng.random() < 0.15:
            self.contacts.append(f"friend{rng.randrange(10**6)}@{rng.choice(WEBMAIL_POOL)}")
        self.habits = _Habits(rng)

    def _recipients(self) -> tuple[str, ...]:
        rng = self.rng
        if rng.random() < 0.03:
            return tuple(rng.sample(self.staff, rng.randint(10, 40)))
        n = 1
        while rng.random() < 0.4 and n < 8:
            n += 1
        chosen = {rng.choice(self.contacts) for _ in range(n)}
        if rng.random() < 0.03:
            new = (f"ext{rng.randrange(10**6)}@{rng.choice(self.partners)}"
                   if rng.random() < 0.5 else rng.choice(self.staff))
            self.contacts.append(new)
            chosen.add(new)
        return tuple(sorted(chosen))

    def day(self, date: datetime) -> list[SendEvent]:
        rng = self.rng
        factor = self.weekend if date.weekday() >= 5 else 1.0
        count = _poisson(rng, self.rate * factor)
        out = []
        for _ in range(count):
            hour = self.start + rng.random() * self.span
            if self.evening and rng.random() < 0.2:
                hour = rng.uniform(19, 23.5)
            at = (date + timedelta(hours=hour)).timestamp()
            for k in range(1 + (rng.randint(1, 3) if rng.random() < 0.1 else 0)):
                size, attach, reply = self.habits.sizes()
                out.append(SendEvent(at + k * rng.uniform(30, 300), self.address,
                                     self._recipients(), size, attach, reply))
        return out


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
