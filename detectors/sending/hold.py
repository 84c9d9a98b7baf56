"""Sender hold, the per-profile part: when a sender is judged compromised, and its hold flag.

The ``sending`` detector calls :func:`judge` inside the store transaction of every message. A
sender is judged compromised after ``count`` high-anomaly messages (``above``) within ``window``
seconds, or after one extreme message (``extreme``) against a trusted baseline. While the sender
is still learning only the tail model's score counts (being compared with the organisation's new
senders), not the model's. The hold is kept in the profile (``stats["hold"]``: since, messages
held), so the check costs nothing extra per message; the listing, the audit rows and clearing by
a reviewer live in :mod:`mailwarden.detectors.sending.holds`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.detectors.sending.profile import Profile


@dataclass(frozen=True)
class HoldPolicy:
    enabled: bool = True
    above: float = 0.9
    count: int = 3
    window: float = 600.0
    extreme: float = 0.999


def held_since(p: Profile) -> float | None:
    hold = p.stats.get("hold")
    return None if hold is None else hold[0]


def judge(p: Profile, at: float, anomaly: float, tail: float, trusted: bool,
          policy: HoldPolicy) -> str | None:
    """Record a high-anomaly message; the reason when the sender should now be held."""
    if not policy.enabled:
        return None
    counted = anomaly if trusted else tail
    if trusted and anomaly >= policy.extreme:
        return f"one message with anomaly {anomaly:.3f} against a trusted baseline"
    if counted < policy.above:
        return None
    older, newer = p.stats.get("hits", (-1e18, -1e18))
    recent = [h for h in (older, newer) if at - h <= policy.window]
    p.stats["hits"] = (newer, at)
    if len(recent) + 1 >= policy.count:
        minutes = policy.window / 60
        return f"{len(recent) + 1} messages with anomaly >= {policy.above:g} in {minutes:g} min"
    return None


def engage(p: Profile, at: float) -> None:
    p.stats["hold"] = (at, 0.0)


def note_held(p: Profile) -> int:
    since, count = p.stats["hold"]
    p.stats["hold"] = (since, count + 1)
    return int(count + 1)


def release(p: Profile) -> bool:
    """Clear the hold and the recent hits; True if the sender was held."""
    p.stats.pop("hits", None)
    return p.stats.pop("hold", None) is not None
