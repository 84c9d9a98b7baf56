"""Seeded compromise scenarios injected into a sending history, for evaluation and replay tests.

Real sending logs hold no compromises, so evaluation (:mod:`mailwarden.training.sending.evaluate`)
takes a history, keeps its earlier part for training, and injects into the later part scenarios of
five kinds against senders with an established history: a burst to new external recipients,
night-time exfiltration of large attachments to one new webmail address, blasts to hundreds of
recipients, unusual-hour mail to strangers, and a rate spike to the usual contacts. Every injected
message carries its scenario's kind, id and position, so detection delay can be measured.
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
         "rate_spike_usual")
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


def _victims(events: list[SendEvent], split_at: float, tz: ZoneInfo) -> list[_Victim]:
    counts: Counter[str] = Counter()
    contacts: dict[str, dict[str, None]] = {}
    hours: dict[str, Counter[int]] = {}
    for ev in events:
        if ev.at >= split_at:
            break
        counts[ev.sender] += 1
        contacts.setdefault(ev.sender, {}).update(dict.fromkeys(ev.recipients))
        hours.setdefault(ev.sender, Counter())[datetime.fromtimestamp(ev.at, tz).hour] += 1
    chosen = sorted(s for s, n in counts.items() if n >= MIN_HISTORY)
    return [_Victim(s, list(contacts[s]), hours[s]) for s in chosen]


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
        rare = min(range(24), key=lambda h: (v.hours[h], rng.random()))
        at = _at_hour(start, rare + rng.random() * 0.5, tz)
        for _ in range(10):
            at += rng.uniform(120, 600)
            out.append(ev(at, [_fresh(rng, webmail=rng.random() < 0.5)], 9000))
    elif kind == "rate_spike_usual":
        for _ in range(40):
            at += rng.uniform(2, 12)
            out.append(ev(at, rng.sample(v.contacts, min(2, len(v.contacts))), 12000))
    else:
        raise ValueError(f"unknown scenario kind {kind!r}")
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
