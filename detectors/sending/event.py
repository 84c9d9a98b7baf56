"""One outgoing message as the ``sending`` detector sees it: a :class:`SendEvent`, no content.

:func:`event_from_message` takes the identity (SASL login, else envelope sender), the envelope
recipients, the message time, the size, the approximate attachment bytes (:func:`attachment_bytes`:
non-text MIME parts, bounded, no decoding) and whether it is a reply, from a
:class:`~mailwarden.message.Message`; the detector (:mod:`mailwarden.detectors.sending.detector`)
scores it.
"""

from __future__ import annotations

import time

from mailwarden.detectors.sending.features import SendEvent
from mailwarden.message import Message

MAX_PARTS = 200


def attachment_bytes(message: Message) -> int:
    """Approximate decoded size of non-text MIME parts (no decoding: cost bounded by size)."""
    total = 0
    for count, part in enumerate(message.parsed.walk()):
        if count >= MAX_PARTS:
            break
        if part.is_multipart() or part.get_content_maintype() in ("text", "message"):
            continue
        payload = part.get_payload()
        size = len(payload) if isinstance(payload, str | bytes) else 0
        encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        total += size * 3 // 4 if encoding == "base64" else size
    return total


def event_from_message(message: Message, now: float | None = None) -> SendEvent:
    env = message.envelope
    parsed = message.parsed
    return SendEvent(
        at=env.received_at or (time.time() if now is None else now),
        sender=env.sender_identity,
        recipients=env.recipients,
        size=message.size,
        attach_bytes=message.memo("sending.attachment_bytes", lambda: attachment_bytes(message)),
        is_reply=bool(parsed.get("In-Reply-To") or parsed.get("References")),
    )
