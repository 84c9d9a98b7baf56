"""Seeded compromise scenarios injected into a sending history, for evaluation and replay tests.

Real sending logs hold no compromises, so evaluation (:mod:`mailwarden.training.sending.evaluate`)
takes a history, keeps its earlier part for training, and injects into the later part scenarios
against senders with an established history: a burst to new external recipients, night-time
exfiltration of large attachments to one new webmail address, blasts to hundreds of recipients
(fan-out), mail at the sender's dead hour to colleagues never written to, and rate spikes at 3, 5
and 10 times the sender's own peak hourly count (95th percentile of its active hours before the
split), evenly spread, to its usual recipients, starting at its usual hours. One more kind is a
*negative*: a sender never seen before sends an ordinary burst (8 messages, 1, 5, 20 or 30 s apart,
to three colleagues at working hours), which must not be flagged (``NEGATIVE_KINDS``). Every
injected message carries its scenario's kind, id and position, so detection delay can be measured.
:func:`write_mbox` writes any such history as an mbox (headers Date/From/To/Cc, Message-ID,
In-Reply-To for replies, a base64 attachment of about the stated size), which the ``replay`` command
reads back in Date order.
"""

from __future__ import annotations

import base64
import dataclasses
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from mailwarden.detectors.sending.features import SendEvent
from mailwarden.training.sending.data import WEBMAIL_POOL

KINDS = ("burst_new_external", "night_exfil_webmail", "blast", "odd_hour_strangers",
         "rate_spike_3x", "rate_spike_5x", "rate_spike_10x", "new_sender_burst")
NEGATIVE_KINDS = ("new_sender_burst",)  # injected, but ordinary: must not be flagged
SPIKES = {"rate_spike_3x": 3.0, "rate_spike_5x": 5.0, "rate_spike_10x": 10.0}
MIN_HISTORY = 20


@dataclass(frozen=True, slots=True)
class Labeled:
    event: SendEvent
    kind: str = ""  # "" for a real (normal) message
    scenario: int = -1
    position: int = 0  # 1-based index of the message inside its scenario


@dataclass
class _Victim:
    address: str
    contacts: list[str]
    hours: Counter[int]
    peak: float  # 95th percentile of messages per active hour before the split
    colleagues: list[str]  # addresses at the sender's domain seen anywhere before the split


def _victims(events: list[SendEvent], split_at: float, tz: ZoneInfo) -> list[_Victim]:
    counts: Counter[str] = Counter()
    contacts: dict[str, dict[str, None]] = {}
    hours: dict[str, Counter[int]] = {}
    per_hour: dict[str, Counter[int]] = {}
    seen: dict[str, None] = {}
    for ev in events:
        if ev.at >= split_at:
            break
        counts[ev.sender] += 1
        contacts.setdefault(ev.sender, {}).update(dict.fromkeys(ev.recipients))
        hours.setdefault(ev.sender, Counter())[datetime.fromtimestamp(ev.at, tz).hour] += 1
        per_hour.setdefault(ev.sender, Counter())[int(ev.at // 3600)] += 1
        seen.update(dict.fromkeys((ev.sender, *ev.recipients)))
    chosen = sorted(s for s, n in counts.items() if n >= MIN_HISTORY)
    return [_Victim(s, list(contacts[s]), hours[s], _p95(per_hour[s].values()),
                    [a for a in seen if _domain(a) == _domain(s) and a != s]) for s in chosen]


def _p95(values: Iterable[int]) -> float:
    ordered = sorted(values)
    return float(max(1, ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]))


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def _fresh(rng: random.Random, webmail: bool = False) -> str:
    if webmail:
        return f"x{rng.randrange(10**8)}@{rng.choice(WEBMAIL_POOL)}"
    return f"x{rng.randrange(10**8)}@d{rng.randrange(10**8)}.example.com"


def _messages(kind: str, v: _Victim, start: float, rng: random.Random,
              tz: ZoneInfo) -> list[SendEvent]:
    def ev(at: float, rcpts: Iterable[str], size: int, attach: int = 0) -> SendEvent:
        return SendEvent(at, v.address, tuple(rcpts), size, attach, False)

    out: list[SendEvent] = []
    at = start
    if kind == "burst_new_external":
        for _ in range(15):
            at += rng.uniform(15, 60)
            out.append(ev(at, [_fresh(rng) for _ in range(rng.randint(1, 3))], 6000))
    elif kind == "night_exfil_webmail":
        at = _at_hour(start, rng.uniform(1, 3.5), tz)
        drop = _fresh(rng, webmail=True)
        for _ in range(8):
            at += rng.uniform(180, 900)
            attach = int(rng.uniform(2e6, 15e6))
            out.append(ev(at, [drop], attach * 4 // 3 + 3000, attach))
    elif kind == "blast":
        for _ in range(4):
            at += rng.uniform(60, 600)
            n = rng.randint(150, 500)
            known = rng.sample(v.contacts, min(len(v.contacts), n // 3))
            out.append(ev(at, known + [_fresh(rng) for _ in range(n - len(known))], 20000))
    elif kind == "odd_hour_strangers":
        out = _strangers(v, start, rng, tz)
    elif kind in SPIKES:
        out = _spike(v, SPIKES[kind], start, rng, tz)
    elif kind == "new_sender_burst":
        out = _newcomer(v, start, rng, tz)
    else:
        raise ValueError(f"unknown scenario kind {kind!r}")
    return out


def _strangers(v: _Victim, start: float, rng: random.Random, tz: ZoneInfo) -> list[SendEvent]:
    """Mail at the sender's dead hour to colleagues (inside the organisation) never written to."""
    known = set(v.contacts)
    strangers = [a for a in v.colleagues if a not in known]
    rng.shuffle(strangers)
    rare = min(range(24), key=lambda h: (v.hours[h], rng.random()))
    at = _at_hour(start, rare + rng.random() * 0.5, tz)
    out = []
    for i in range(10):
        at += rng.uniform(120, 600)
        fresh = f"x{rng.randrange(10**8)}@{_domain(v.address)}"
        rcpt = strangers[i] if i < len(strangers) else fresh
        out.append(SendEvent(at, v.address, (rcpt,), 9000, 0, False))
    return out


def _usual_hour(v: _Victim, rng: random.Random) -> int:
    hours = [h for h, _n in v.hours.most_common(6)]
    return rng.choice(hours)


def _spike(v: _Victim, factor: float, start: float, rng: random.Random,
           tz: ZoneInfo) -> list[SendEvent]:
    """``factor`` x the sender's peak hourly count, evenly spread, usual recipients and hours."""
    gap = 3600.0 / (factor * v.peak)
    at = _at_hour(start, _usual_hour(v, rng) + rng.random() * 0.5, tz)
    out = []
    for _ in range(40):
        at += gap * rng.uniform(0.8, 1.2)
        out.append(SendEvent(at, v.address, tuple(rng.sample(v.contacts, min(2, len(
            v.contacts)))), 12000, 0, rng.random() < 0.5))
    return out


def _newcomer(v: _Victim, start: float, rng: random.Random, tz: ZoneInfo) -> list[SendEvent]:
    """A sender never seen before, at the victim's domain: 8 ordinary messages to three
    colleagues, 1, 5, 20 or 30 s apart (the catch-up bursts of issue 15)."""
    address = f"new{rng.randrange(10**8)}@{_domain(v.address)}"
    pool = v.colleagues or v.contacts
    three = rng.sample(pool, min(3, len(pool)))
    at = _at_hour(start, rng.uniform(9, 16), tz)
    gap = rng.choice((1.0, 5.0, 20.0, 30.0))
    out = []
    for i in range(8):
        at += gap * rng.uniform(0.8, 1.2)
        out.append(SendEvent(at, address, (three[i % len(three)],),
                             int(rng.uniform(3000, 40000)), 0, rng.random() < 0.3))
    return out


def _at_hour(start: float, hour: float, tz: ZoneInfo) -> float:
    """The first time at ``hour`` (local) not before ``start``."""
    day = datetime.fromtimestamp(start, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    at = (day + timedelta(hours=hour)).timestamp()
    return at if at >= start else (day + timedelta(days=1, hours=hour)).timestamp()


def inject(events: list[SendEvent], seed: int, split_at: float, per_kind: int = 10,
           timezone: str = "UTC", kinds: tuple[str, ...] = KINDS) -> list[Labeled]:
    """``events`` plus ``per_kind`` scenarios of each kind after ``split_at``, in time order."""
    tz = ZoneInfo(timezone)
    rng = random.Random(f"scenarios:{seed}")
    victims = _victims(events, split_at, tz)
    if not victims:
        raise ValueError("no sender has enough history before the split to be a victim")
    end = events[-1].at
    out = [Labeled(e) for e in events]
    scenario = 0
    for kind in kinds:
        for _ in range(per_kind):
            victim = rng.choice(victims)
            start = rng.uniform(split_at + 3600, max(end - 7200, split_at + 7200))
            for pos, e in enumerate(_messages(kind, victim, start, rng, tz), start=1):
                out.append(Labeled(e, kind, scenario, pos))
            scenario += 1
    out.sort(key=lambda item: item.event.at)
    return out


def write_mbox(path: Path, history: Iterable[Labeled | SendEvent], *,
               attachment_cap: int = 1_000_000, size_scale: float = 1.0) -> int:
    """Write ``history`` as an mbox (label in ``X-Scenario`` when set); returns messages written.

    ``size_scale`` shrinks every message and attachment alike (the size features compare a
    message with the sender's usual, so ratios are what matters) to keep test files small.
    """
    count = 0
    with Path(path).open("wb") as out:
        for item in history:
            labeled = item if isinstance(item, Labeled) else Labeled(item)
            if size_scale != 1.0:
                ev = labeled.event
                labeled = dataclasses.replace(labeled, event=dataclasses.replace(
                    ev, size=int(ev.size * size_scale), attach_bytes=int(ev.attach_bytes *
                                                                         size_scale)))
            out.write(b"From mailwarden-scenarios Thu Jan  1 00:00:00 1970\n")
            out.write(_render(labeled, count, attachment_cap))
            out.write(b"\n")
            count += 1
    return count


def _render(item: Labeled, number: int, cap: int) -> bytes:
    ev = item.event
    when = datetime.fromtimestamp(ev.at, ZoneInfo("UTC"))
    head = [f"From: {ev.sender}", f"To: {', '.join(ev.recipients)}",
            f"Date: {format_datetime(when)}", f"Message-ID: <m{number}.{int(ev.at)}@scenarios>",
            "Subject: status", "MIME-Version: 1.0"]
    if ev.is_reply:
        head.append(f"In-Reply-To: <r{number}@scenarios>")
    if item.kind:
        head.append(f"X-Scenario: {item.kind} {item.scenario} {item.position}")
    filler = "lorem ipsum dolor sit amet\n" * max(1, min(ev.size - ev.attach_bytes, 60000) // 27)
    if not ev.attach_bytes:
        head.append("Content-Type: text/plain; charset=us-ascii")
        return ("\n".join(head) + "\n\n" + filler).encode("ascii")
    data = base64.encodebytes(b"\0" * min(ev.attach_bytes, cap)).decode("ascii")
    head.append('Content-Type: multipart/mixed; boundary="b"')
    body = (f"--b\nContent-Type: text/plain\n\n{filler}\n--b\n"
            "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
            f'Content-Disposition: attachment; filename="a.bin"\n\n{data}--b--\n')
    return ("\n".join(head) + "\n\n" + body).encode("ascii")


def write_scenario_mbox(path: Path, seed: int = 1, senders: int = 12, days: int = 30,
                        per_kind: int = 2, size_scale: float = 0.05) -> list[Labeled]:
    """A synthetic organisation's history with injected scenarios in its last 30%, as an mbox.

    For end-to-end tests of ``replay``: every injected message has an ``X-Scenario`` header
    (kind, scenario id, position); sizes are scaled by ``size_scale`` (about 40 MB at the
    defaults); returns the written history in order.
    """
    from mailwarden.training.sending.data import synthetic_history

    events = synthetic_history(seed, senders=senders, days=days)
    history = inject(events, seed, events[int(len(events) * 0.7)].at, per_kind)
    write_mbox(path, history, size_scale=size_scale)
    return history
