"""The sender's own baseline: decayed peaks, the learning state and per-behaviour deviations.

This sits between the profile (:mod:`mailwarden.detectors.sending.profile`, which stores the
numbers as pairs in ``Profile.stats``) and the tail model (:mod:`~.sending_tails`).
At every message the sliding-window activity (messages in the last hour and day, distinct and new
recipients in the last hour) is compared with the sender's usual peak of the same quantity: the
largest value of each closed hour (day), decayed by :data:`PEAK_DECAY` per closed active hour
(day), so a peak is forgotten over some weeks of activity. While a sender is *learning* (fewer
than :data:`TRUST_MESSAGES` messages or :data:`TRUST_DAYS` days since first seen) it is compared
with the organisation's new-sender peaks (``OrgPrior.new_peaks``) or its own, whichever is higher:
being new is not anomalous. Once trusted, a closed hour beyond :data:`GROWTH` times the peak
plus 1 is not learned, so a burst never becomes its own baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mailwarden.detectors.sending.anomaly_models import Array
from mailwarden.detectors.sending.profile import OrgPrior, Profile

TRUST_MESSAGES = 30
TRUST_DAYS = 7.0
PEAK_DECAY = 0.99
GROWTH = 2.0
# Deviation behaviours (the tail model calibrates each; evidence names the strongest).
BEHAVIOURS: tuple[str, ...] = ("rate_1h", "rate_1d", "recipients_1h", "new_recipients_1h",
                               "rate_10m", "rate_5_messages", "odd_hour_new")
# messages in 1 h, in 24 h, distinct recipients in 1 h, new recipients in 1 h, messages in 10 min,
# messages per hour over the sender's last 10 messages
Peaks = tuple[float, float, float, float, float, float]
SPAN_MESSAGES = 5


@dataclass(frozen=True, slots=True)
class Activity:
    """Sliding-window values at one message, the message included."""

    c1h: float
    c1d: float
    d1h: float
    n1h: float
    c10m: float
    r10: float  # messages per hour over the last SPAN_MESSAGES messages (0: fewer sent so far)

    def as_peaks(self) -> Peaks:
        return (self.c1h, self.c1d, self.d1h, self.n1h, self.c10m, self.r10)


@dataclass(frozen=True, slots=True)
class Baseline:
    """What one message is compared with, and how far the sender's learning has got."""

    peaks: Peaks
    trusted: bool
    messages: int
    days: float

    @property
    def state(self) -> str:
        return "trusted" if self.trusted else "learning"


def learning_state(p: Profile, t: float) -> tuple[bool, int, float]:
    """(trusted, messages seen, days since first seen) of a profile at time ``t``."""
    first = p.stats.get("first", (t, 0.0))[0] if p.n else t
    days = max(0.0, (t - first) / 86400.0)
    return p.n >= TRUST_MESSAGES and days >= TRUST_DAYS, p.n, days


def _fold(peak: float, pending: float, trusted: bool) -> float:
    """The peak after a closed hour (day) whose largest value was ``pending``. Once trusted, an
    hour beyond GROWTH x peak + 1 is an outlier (a spike, perhaps the attacker's): not learned."""
    if trusted and pending > GROWTH * peak + 1.0:
        return peak * PEAK_DECAY
    return max(peak * PEAK_DECAY, pending)


def closed_peaks(p: Profile, t: float, trusted: bool) -> tuple[Peaks, bool, bool]:
    """The sender's peaks with a finished hour/day bucket folded in; (peaks, hour, day closed)."""
    pk1h, pkd = p.stats.get("pk", (0.0, 0.0))
    pkn, pk1d = p.stats.get("pk2", (0.0, 0.0))
    pk10, pkr = p.stats.get("pk3", (0.0, 0.0))
    hour_idx, pend_c = p.stats.get("bh", (t // 3600, 0.0))
    pend_d, pend_n = p.stats.get("bh2", (0.0, 0.0))
    pend_10, pend_r = p.stats.get("bh3", (0.0, 0.0))
    day_idx, pend_day = p.stats.get("bd", (t // 86400, 0.0))
    hour_closed, day_closed = hour_idx != t // 3600, day_idx != t // 86400
    if hour_closed:
        pk1h, pkd, pkn = (_fold(pk1h, pend_c, trusted), _fold(pkd, pend_d, trusted),
                          _fold(pkn, pend_n, trusted))
        pk10, pkr = _fold(pk10, pend_10, trusted), _fold(pkr, pend_r, trusted)
    if day_closed:
        pk1d = _fold(pk1d, pend_day, trusted)
    return (pk1h, pk1d, pkd, pkn, pk10, pkr), hour_closed, day_closed


def baseline(p: Profile, prior: OrgPrior, t: float) -> Baseline:
    trusted, n, days = learning_state(p, t)
    own, _h, _d = closed_peaks(p, t, trusted)
    floor = (1.0, 1.0, 1.0, 0.0, 1.0, 1.0)
    if trusted:
        peaks = tuple(max(o, f) for o, f in zip(own, floor, strict=True))
    else:
        new = tuple(prior.new_peaks) + (0.0,) * (len(floor) - len(prior.new_peaks))
        peaks = tuple(max(o, n, f) for o, n, f in zip(own, new, floor, strict=True))
    return Baseline(peaks, trusted, n, days)  # type: ignore[arg-type]


def deviations(act: Activity, base: Baseline, hour_rarity: float, new_share: float) -> Array:
    """One value per :data:`BEHAVIOURS`: log ratio to the usual peak; rare hour x new share."""
    b = base.peaks
    return np.array([
        math.log((act.c1h + 1.0) / (b[0] + 1.0)),
        math.log((act.c1d + 1.0) / (b[1] + 1.0)),
        math.log((act.d1h + 1.0) / (b[2] + 1.0)),
        math.log((act.n1h + 1.0) / (b[3] + 1.0)),
        math.log((act.c10m + 1.0) / (b[4] + 1.0)),
        math.log((act.r10 + 1.0) / (b[5] + 1.0)) if base.trusted else 0.0,
        max(hour_rarity, 0.0) * new_share,
    ], dtype=np.float64)


def span_rate(times: list[int], t: float) -> float:
    """Messages per hour over the last SPAN_MESSAGES messages, this one included (0 if fewer)."""
    if len(times) < SPAN_MESSAGES - 1:
        return 0.0
    span = max(t - times[-(SPAN_MESSAGES - 1)], 60.0)
    return SPAN_MESSAGES * 3600.0 / span


def fold(p: Profile, t: float, act: Activity) -> None:
    """Fold one message's activity into the pending buckets and the peaks (after scoring)."""
    trusted, _n, _days = learning_state(p, t)
    peaks, hour_closed, day_closed = closed_peaks(p, t, trusted)
    _c, pend_c = p.stats.get("bh", (0.0, 0.0))
    pend_d, pend_n = p.stats.get("bh2", (0.0, 0.0))
    pend_10, pend_r = p.stats.get("bh3", (0.0, 0.0))
    _d, pend_day = p.stats.get("bd", (0.0, 0.0))
    if hour_closed:
        pend_c = pend_d = pend_n = pend_10 = pend_r = 0.0
    if day_closed:
        pend_day = 0.0
    p.stats["pk"] = (peaks[0], peaks[2])
    p.stats["pk2"] = (peaks[3], peaks[1])
    p.stats["bh"] = (float(t // 3600), max(pend_c, act.c1h))
    p.stats["bh2"] = (max(pend_d, act.d1h), max(pend_n, act.n1h))
    p.stats["pk3"] = (peaks[4], peaks[5])
    p.stats["bh3"] = (max(pend_10, act.c10m), max(pend_r, act.r10))
    p.stats["bd"] = (float(t // 86400), max(pend_day, act.c1d))
    if "first" not in p.stats:
        p.stats["first"] = (float(t), 0.0)


def phrase(index: int, act: Activity, base: Baseline, hour: int) -> str:
    """The deviation ``index`` in words, against the baseline it was measured on."""
    whose = ("this sender's usual peak" if base.trusted
             else "new senders here usually peak at")
    connector = " is" if base.trusted else ""
    values = act.as_peaks()
    what = {0: "messages in the last hour", 1: "messages in the last 24 hours",
            2: "distinct recipients in the last hour", 3: "new recipients in the last hour",
            4: "messages in the last 10 minutes",
            5: f"messages per hour over the last {SPAN_MESSAGES} messages"}
    value, usual = (values[index], base.peaks[index]) if index in what else (0.0, 0.0)
    if index in what:
        return f"{value:.0f} {what[index]}; {whose}{connector} {usual:.0f}"
    return f"mail to recipients never written to before, at {hour:02d}h, an hour this sender " \
           "rarely sends at"


def peaks_of(p: Profile, t: float) -> dict[str, float]:
    """The sender's own peaks (for ``mailwarden senders show``)."""
    trusted, _n, _d = learning_state(p, t)
    peaks, _h, _dd = closed_peaks(p, t, trusted)
    return {"messages_per_hour": peaks[0], "messages_per_day": peaks[1],
            "recipients_per_hour": peaks[2], "new_recipients_per_hour": peaks[3],
            "messages_per_10_minutes": peaks[4], "rate_over_5_messages": peaks[5]}
