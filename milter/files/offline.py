"""Scoring files without an MTA: the engine behind ``mailwarden score`` and ``mailwarden replay``.

Messages read by :mod:`mailwarden.files.sources` become :class:`~mailwarden.message.Message`
snapshots whose envelope comes from the headers (sender from ``From:``, recipients from
``To:``/``Cc:``/ ``Bcc:``, time from ``Date:``), then go through the same
:class:`~mailwarden.engine.Engine` the milter uses. ``score`` is stateless; ``replay`` orders
messages by ``Date:`` and runs them with a fresh in-memory sending-pattern state, as if they were
sent at those times.
"""

from __future__ import annotations

import email.utils
import json
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from mailwarden.config import load_config
from mailwarden.engine import Engine
from mailwarden.files.sources import RawMessage, iter_sources
from mailwarden.message import Envelope, Message, addresses
from mailwarden.metrics import Metrics
from mailwarden.verdict import Decision, Direction


def message_from_raw(raw: RawMessage, direction: Direction, max_bytes: int) -> Message:
    data = raw.data[:max_bytes]
    probe = Message(Envelope("", "", ()), data, len(raw.data), len(raw.data) > max_bytes)
    sender = next(iter(addresses(probe.header("From"))), "")
    recipients = tuple(a for name in ("To", "Cc", "Bcc") for a in addresses(probe.header(name)))
    envelope = Envelope(
        queue_id=f"offline-{zlib.crc32(raw.source.encode('utf-8', 'replace')):08x}",
        mail_from=sender,
        recipients=recipients,
        direction=direction,
        received_at=message_time(probe) or time.time(),
    )
    return Message(envelope, data, len(raw.data), probe.truncated, raw.source)


def message_time(message: Message) -> float | None:
    value = message.header("Date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def in_date_order(messages: Iterable[Message]) -> list[Message]:
    """Stable sort by Date:; messages without a usable date keep their place after dated ones."""
    indexed = list(enumerate(messages))
    return [m for _, m in sorted(indexed, key=lambda im: (message_time(im[1]) or float("inf"),
                                                          im[0]))]


def decision_record(message: Message, decision: Decision) -> dict[str, Any]:
    return {
        "source": message.source,
        "message_id": message.message_id,
        "verdict": decision.verdict.value,
        "score": round(decision.score, 6),
        "scores": {k: round(v, 6) for k, v in sorted(decision.scores.items())},
        "findings": [f.as_dict() for f in decision.findings],
        "reasons": list(decision.reasons),
        "errors": list(decision.errors),
        "ref": decision.ref,
    }


def run_offline(
    config_path: str | None,
    paths: list[str],
    direction: str,
    as_json: bool,
    replay: bool,
    out: TextIO,
) -> int:
    config = load_config(config_path)
    engine = Engine(config, Metrics(), run_mode="replay" if replay else "score")
    try:
        for message, decision in scan_all(engine, paths, Direction(direction), replay):
            record = decision_record(message, decision)
            if as_json:
                out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            else:
                out.write(_text_line(record))
    finally:
        engine.close()
    return 0


def scan_all(
    engine: Engine, paths: list[str], direction: Direction, replay: bool
) -> Iterator[tuple[Message, Decision]]:
    limit = engine.config.milter.max_scan_bytes
    messages: Iterable[Message] = (
        message_from_raw(raw, direction, limit) for raw in iter_sources(paths)
    )
    if replay:
        messages = in_date_order(messages)
    for message in messages:
        yield message, engine.scan(message, deadline=float("inf"))


def _text_line(record: dict[str, Any]) -> str:
    kinds = ",".join(f"{f['type']}x{f['count']}" for f in record["findings"]) or "-"
    return f"{record['verdict']:<10} {record['score']:7.2f}  {kinds:<30} {record['source']}\n"
