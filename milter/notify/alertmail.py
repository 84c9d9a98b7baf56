"""Alert mail: what a notification says about held or refused messages, and its signature.

:mod:`mailwarden.notify.sink` turns each quarantine or reject decision into an :class:`AlertEvent`
(queue ID, reference, time, verdict, finding types with counts, confidence and masked fragments:
never a subject, body text or attachment) and composes digests of them with :func:`compose`.
Every alert is a plain 7-bit text mail signed with an HMAC token (header ``X-Mailwarden-Alert``)
over its headers and body under a per-install key; :func:`verify` accepts a message only if the
token is valid and recent and the message carries no header beyond the signed ones and transport
trace headers. The engine then passes it unscanned, so alerts never loop through the filter, while
a forged or reused token on any other message (a different body, subject or extra header) fails
verification and the message is scanned as usual.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailwarden.message import Message, domain_of
from mailwarden.verdict import Decision, Finding

ALERT_HEADER = "X-Mailwarden-Alert"
SIGNED = ("from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version",
          "content-type", "content-transfer-encoding")
# Headers an MTA may add in transit (and our own verdict headers); any other header fails.
TRACE = ("received", "return-path", "delivered-to", "x-original-to", "dkim-signature",
         "x-mailwarden-verdict", "x-mailwarden-score", "x-mailwarden-findings")
MAX_EVIDENCE = 3
_DIGIT_RUN = re.compile(r"\d(?:[ .\-]?\d){7,}")
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/=_\-]{24,}")
_TOKEN = re.compile(r"^v1; t=(\d{1,12}); h=([0-9a-f]{64})$")


@dataclass(frozen=True, slots=True)
class FindingLine:
    type: str
    count: int
    confidence: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One held or refused message as an alert may describe it (no content)."""

    queue_id: str
    ref: str
    at: float
    verdict: str
    action: str
    mode: str
    sender: str
    recipients: int
    recipient_domains: tuple[str, ...]
    score: float
    findings: tuple[FindingLine, ...]

    @property
    def group(self) -> tuple[str, str, tuple[tuple[str, int], ...]]:
        """Events alike enough to be summarised together in a digest."""
        return self.sender, self.verdict, tuple((f.type, f.count) for f in self.findings)


def scrub(evidence: str, limit: int = 60) -> str:
    """Defence in depth on already-masked evidence: no long digit runs or tokens, ASCII only."""
    text = _LONG_TOKEN.sub("[redacted]", evidence)
    text = _DIGIT_RUN.sub(lambda m: "****" + re.sub(r"\D", "", m.group())[-4:], text)
    text = text.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")
    return text[:limit]


@dataclass(slots=True)
class _Tally:
    count: int = 0
    rank: int = -1
    confidence: str = ""
    evidence: list[str] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.count += finding.count
        if finding.confidence.rank > self.rank:
            self.rank, self.confidence = finding.confidence.rank, finding.confidence.value
        shown = scrub(finding.evidence)
        if shown and len(self.evidence) < MAX_EVIDENCE and shown not in self.evidence:
            self.evidence.append(shown)


def event_from(message: Message, decision: Decision) -> AlertEvent:
    tallies: dict[str, _Tally] = {}
    for f in decision.findings:
        tallies.setdefault(f.type, _Tally()).add(f)
    env = message.envelope
    return AlertEvent(
        queue_id=env.queue_id or "NOQUEUE", ref=decision.ref, at=env.received_at or time.time(),
        verdict=decision.verdict.value, action=decision.action.value, mode=decision.mode,
        sender=scrub(env.mail_from or "<>", 120), recipients=len(env.recipients),
        recipient_domains=tuple(sorted({domain_of(r) for r in env.recipients} - {""}))[:10],
        score=decision.score,
        findings=tuple(FindingLine(t, v.count, v.confidence, tuple(v.evidence))
                       for t, v in sorted(tallies.items())),
    )


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _what(event: AlertEvent) -> str:
    verb = {"quarantine": "held (quarantine)", "reject": "refused (reject)",
            "tempfail": "deferred (tempfail)"}.get(event.verdict, event.verdict)
    return verb if event.mode == "enforce" else f"would have been {verb} (observe mode)"


# The review interface's links for one reference: (label, url) pairs, e.g. Review and Release.
LinkMaker = Callable[[str], list[tuple[str, str]]]


def describe(event: AlertEvent, admin: bool, links: LinkMaker | None = None) -> list[str]:
    out = [f"  {_what(event)}  {_when(event.at)}",
           f"    Reference:  {event.ref}",
           f"    Queue ID:   {event.queue_id}"]
    if admin and links is not None and event.mode == "enforce" and event.verdict == "quarantine":
        out += [f"    {label + ':':<12}{url}" for label, url in links(event.ref)]
    if admin:
        domains = ", ".join(event.recipient_domains) or "-"
        out += [f"    Sender:     {event.sender}",
                f"    Recipients: {event.recipients} ({scrub(domains, 200)})",
                f"    Score:      {event.score:.2f}"]
    for i, f in enumerate(event.findings or (FindingLine("policy", 1, "-", ()),)):
        shown = f"  {', '.join(f.evidence)}" if admin and f.evidence else ""
        label = "    Findings:   " if i == 0 else "                "
        out.append(f"{label}{f.type} x{f.count} (confidence {f.confidence}){shown}")
    return out


def body_text(events: list[AlertEvent], host: str, admin: bool, dropped: int = 0,
              links: LinkMaker | None = None) -> str:
    intro = (f"mailwarden on {host} held or refused {len(events) + dropped} outgoing "
             f"message(s)" + ("" if admin else " that you sent") + ".")
    out = [intro, "This notice never contains the messages' content, subject or attachments.",
           "Quote the reference when asking an administrator about a message.", ""]
    groups: dict[tuple[object, ...], list[AlertEvent]] = {}
    for event in events:
        groups.setdefault(event.group, []).append(event)
    for similar in groups.values():
        out += describe(similar[0], admin, links)
        if len(similar) > 1:
            ids = ", ".join(e.queue_id for e in similar[1:11])
            more = " ..." if len(similar) > 11 else ""
            out.append(f"    and {len(similar) - 1} more like it until {_when(similar[-1].at)}"
                       f" (queue IDs {ids}{more})")
        out.append("")
    if dropped:
        out.append(f"{dropped} further event(s) were not listed (notification limits).")
    return "\n".join(out) + "\n"  # every field from the message went through scrub()


def canonical(headers: dict[str, str], body: bytes, ts: int) -> bytes:
    parts = [f"v1\nt={ts}\n"]
    parts += [f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in SIGNED]
    norm = b"\n".join(line.rstrip() for line in body.replace(b"\r\n", b"\n").split(b"\n"))
    parts.append("body:" + hashlib.sha256(norm.rstrip(b"\n")).hexdigest() + "\n")
    return "".join(parts).encode("utf-8", "surrogateescape")


def sign(key: bytes, headers: dict[str, str], body: bytes, ts: int) -> str:
    mac = hmac.new(key, canonical(headers, body, ts), hashlib.sha256).hexdigest()
    return f"v1; t={ts}; h={mac}"


def compose(key: bytes, sender: str, recipient: str, subject: str, body: str,
            now: float | None = None) -> bytes:
    """A complete RFC 5322 alert mail (CRLF line ends), signed."""
    ts = int(time.time() if now is None else now)
    domain = sender.rpartition("@")[2] or "localhost"
    headers = {
        "from": sender, "to": recipient, "subject": subject,
        "date": email.utils.formatdate(ts, usegmt=True),
        "message-id": email.utils.make_msgid("mailwarden-alert", domain=domain),
        "auto-submitted": "auto-generated", "mime-version": "1.0",
        "content-type": 'text/plain; charset="us-ascii"', "content-transfer-encoding": "7bit",
    }
    data = body.encode("ascii", "replace").replace(b"\n", b"\r\n")
    token = sign(key, headers, data, ts)
    lines = [f"{name.title()}: {value}" for name, value in headers.items()]
    lines = [line.replace("Message-Id", "Message-ID") for line in lines]
    lines.append(f"{ALERT_HEADER}: {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + data


def _header_block(raw: bytes) -> tuple[list[tuple[str, str]], bytes] | None:
    """(name, unfolded value) pairs and the body; None when the header block looks odd."""
    sep = re.search(rb"\r?\n\r?\n", raw)
    if sep is None:
        return None
    head, body = raw[:sep.start()], raw[sep.end():]
    fields: list[tuple[str, str]] = []
    for line in re.split(rb"\r?\n", head):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.decode("latin-1").strip())
            continue
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            return None
        fields.append((name.strip().lower(), value.strip()))
    return fields, body


def _alert_fields(message: Message) -> tuple[dict[str, str], bytes] | None:
    """Headers and body of a message shaped like an alert: only signed and trace headers, each
    signed one at most once; None otherwise."""
    parsed = None if message.truncated else _header_block(message.raw)
    if parsed is None:
        return None
    fields, body = parsed
    names = [n for n, _ in fields]
    token = ALERT_HEADER.lower()
    if any(n not in SIGNED and n not in TRACE and n != token for n in names):
        return None
    if any(names.count(n) > 1 for n in (*SIGNED, token)):
        return None
    return dict(fields), body


def verify(key: bytes, message: Message, max_age: float, now: float | None = None) -> bool:
    """True only for an intact, recent alert mail signed with ``key``."""
    shaped = _alert_fields(message)
    if shaped is None:
        return False
    values, body = shaped
    token = values.get(ALERT_HEADER.lower(), "")
    match = _TOKEN.match(token)
    if match is None:
        return False
    ts = int(match.group(1))
    current = time.time() if now is None else now
    if not current - max_age <= ts <= current + 300:
        return False
    expected = sign(key, {n: values.get(n, "") for n in SIGNED}, body, ts)
    return hmac.compare_digest(expected, token)
