"""The per-sender profile the ``sending`` detector keeps in the state store, and the org prior.

A :class:`Profile` is what a store blob decodes to: message count, the last send times, the
recipients and recipient domains seen (as 32-bit hashes with first/last-seen times, never
addresses), decayed hour-of-day and weekday histograms, and exponentially weighted means and
variances of the quantities the features compare against. Every part is capped (times, recipients,
domains), so one profile stays under ~5 KB whatever the sender does. :class:`OrgPrior` is the same
kind of baseline aggregated over the training data and shipped in the model manifest: a new
sender's baselines start from it and drift to its own as messages arrive (see
:mod:`mailwarden.detectors.sending.features`).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

TIMES_KEPT = 100
MAX_RECIPIENTS = 256
MAX_DOMAINS = 64
ALPHA_MIN = 0.02  # EWMA memory of roughly the last 50 messages
HIST_DECAY = 0.998  # hour/weekday histograms remember roughly the last 500 messages
# The first six are EWMA (mean, var) pairs; the rest are pairs kept by
# mailwarden.detectors.sending.baseline (hour/day buckets, decayed peaks, first-seen, hold state).
STAT_KEYS = ("lsize", "latt", "lrcpt", "lc1h", "lc1d", "newthread",
             "bh", "bh2", "bd", "pk", "pk2", "first", "hold", "hits", "pk3", "bh3")
_EWMA_KEYS = frozenset(STAT_KEYS[:6])
_MAGIC = b"MWS1"  # JSON metadata (read only: files written before MWS2 stay readable)
_HEADER = struct.Struct("<4sIHHH")
# MWS2: magic, n, last, score, times, recipients, domains, human values, stat keys present (bits
# in STAT_KEYS order); then float64 hours, wdays, (mean, var) per present stat and human; then the
# same uint32 times and (hash, first, last) triples as MWS1. The values are rounded as MWS1
# rounded them, so a profile decodes to exactly what its MWS1 blob decoded to.
_MAGIC2 = b"MWS2"
_HEADER2 = struct.Struct("<4sIddHHHHB")
# MWS3: MWS2 with a 16-bit stat-key mask (more keys); what encode() writes.
_MAGIC3 = b"MWS3"
_HEADER3 = struct.Struct("<4sIddHHHHH")


def hash32(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "little")


@dataclass
class Profile:
    """One sender's history; mutable, owned by one transaction at a time."""

    n: int = 0
    last: float = 0.0
    times: list[int] = field(default_factory=list)
    rcpts: dict[int, tuple[int, int]] = field(default_factory=dict)
    domains: dict[int, tuple[int, int]] = field(default_factory=dict)
    hours: list[float] = field(default_factory=lambda: [0.0] * 24)
    wdays: list[float] = field(default_factory=lambda: [0.0] * 7)
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    human: list[float] = field(default_factory=list)
    score: float = 0.0

    def alpha(self) -> float:
        return max(1.0 / (self.n + 1), ALPHA_MIN)

    def push_stat(self, key: str, value: float, alpha: float, floor: float = 0.25) -> None:
        """EWMA mean/variance update; once there is history, an outlier moves the baseline by at
        most 3 standard deviations' worth, so a burst cannot quickly become its own baseline."""
        mean, var = self.stats.get(key, (value, 0.0))
        delta = value - mean
        if self.n >= 10:
            bound = 3.0 * (var + floor) ** 0.5
            delta = max(-bound, min(bound, delta))
        mean += alpha * delta
        self.stats[key] = (mean, (1.0 - alpha) * (var + alpha * delta * delta))

    def push_human(self, values: list[float], alpha: float) -> None:
        if len(self.human) != len(values):
            self.human = list(values)
            return
        self.human = [m + alpha * (v - m) for m, v in zip(self.human, values, strict=True)]

    def touch(self, table: dict[int, tuple[int, int]], key: int, at: int, cap: int) -> None:
        first = table[key][0] if key in table else at
        table[key] = (first, at)
        if len(table) > cap:
            oldest = min(table, key=lambda k: table[k][1])
            del table[oldest]

    def encode(self) -> bytes:
        hours, wdays, stats, human, score = self._stored()
        keys = [k for k in STAT_KEYS if k in stats]
        if len(keys) != len(stats):  # a key this layout cannot name: the JSON layout can
            return self.encode_json()
        floats = hours + wdays
        for key in keys:
            floats += stats[key]
        floats += human
        mask = sum(1 << STAT_KEYS.index(k) for k in keys)
        head = _HEADER3.pack(_MAGIC3, self.n, self.last, score, len(self.times),
                             len(self.rcpts), len(self.domains), len(human), mask)
        return head + struct.pack(f"<{len(floats)}d", *floats) + self._tables()

    def encode_json(self) -> bytes:
        """The MWS1 layout (JSON metadata), as written before MWS2."""
        hours, wdays, stats, human, score = self._stored()
        meta = {"n": self.n, "last": self.last, "score": score, "h": hours, "w": wdays,
                "s": {k: list(v) for k, v in stats.items()}, "u": human}
        text = json.dumps(meta, separators=(",", ":")).encode("ascii")
        head = _HEADER.pack(_MAGIC, len(text), len(self.times), len(self.rcpts), len(self.domains))
        return head + text + self._tables()

    def _stored(self) -> tuple[list[float], list[float], dict[str, tuple[float, float]],
                               list[float], float]:
        """Hours, weekdays, stats, human values and score as both layouts store them (rounded)."""
        return ([round(v, 3) for v in self.hours], [round(v, 3) for v in self.wdays],
                {k: (round(m, 5), round(v, 5)) if k in _EWMA_KEYS else (m, v)
                 for k, (m, v) in self.stats.items()},
                [round(v, 4) for v in self.human], round(self.score, 4))

    def _tables(self) -> bytes:
        """Both layouts' tail: send times, then (hash, first, last) of recipients and domains."""
        times = np.asarray(self.times, dtype="<u4")
        return times.tobytes() + _triples(self.rcpts).tobytes() + _triples(self.domains).tobytes()

    @classmethod
    def decode(cls, blob: bytes | None) -> Profile:
        """The profile in ``blob``; a new profile for None or an unreadable blob."""
        if not blob or len(blob) < _HEADER.size:
            return cls()
        try:
            if blob.startswith(_MAGIC3):
                return cls._decode2(blob, _HEADER3)
            if blob.startswith(_MAGIC2):
                return cls._decode2(blob, _HEADER2)
            if blob.startswith(_MAGIC):
                return cls._decode(blob)
        except (ValueError, KeyError, TypeError, struct.error):
            pass
        return cls()

    @classmethod
    def _decode2(cls, blob: bytes, header: struct.Struct) -> Profile:
        _magic, n, last, score, n_times, n_rc, n_dm, n_human, mask = header.unpack_from(blob)
        keys = [k for i, k in enumerate(STAT_KEYS) if mask >> i & 1]
        n_floats = 31 + 2 * len(keys) + n_human
        pos = header.size
        floats = struct.unpack_from(f"<{n_floats}d", blob, pos)
        pos += 8 * n_floats
        if len(blob) != pos + 4 * (n_times + 3 * (n_rc + n_dm)):
            raise ValueError("MWS2 blob of the wrong length")
        times, rcpts, domains = _read_tables(blob, pos, n_times, n_rc, n_dm)
        stats = {k: (floats[31 + 2 * i], floats[32 + 2 * i]) for i, k in enumerate(keys)}
        return cls(
            n=n, last=last, times=times, rcpts=rcpts, domains=domains,
            hours=list(floats[:24]), wdays=list(floats[24:31]), stats=stats,
            human=list(floats[31 + 2 * len(keys):]), score=score,
        )

    @classmethod
    def _decode(cls, blob: bytes) -> Profile:
        _magic, n_text, n_times, n_rc, n_dm = _HEADER.unpack_from(blob)
        pos = _HEADER.size
        meta: dict[str, Any] = json.loads(blob[pos : pos + n_text])
        times, rcpts, domains = _read_tables(blob, pos + n_text, n_times, n_rc, n_dm)
        return cls(
            n=int(meta["n"]), last=float(meta["last"]), times=times, rcpts=rcpts, domains=domains,
            hours=[float(v) for v in meta["h"]], wdays=[float(v) for v in meta["w"]],
            stats={k: (float(v[0]), float(v[1])) for k, v in meta["s"].items()},
            human=[float(v) for v in meta["u"]], score=float(meta.get("score", 0.0)),
        )


Table = dict[int, tuple[int, int]]


def _read_tables(blob: bytes, pos: int, n_times: int, n_rc: int,
                 n_dm: int) -> tuple[list[int], Table, Table]:
    """The tail written by :meth:`Profile._tables`: times, recipients, domains."""
    arr = np.frombuffer(blob, dtype="<u4", offset=pos, count=n_times + 3 * (n_rc + n_dm))
    rc = arr[n_times : n_times + 3 * n_rc].reshape(-1, 3).tolist()
    dm = arr[n_times + 3 * n_rc :].reshape(-1, 3).tolist()
    return (arr[:n_times].tolist(), {k: (a, b) for k, a, b in rc},
            {k: (a, b) for k, a, b in dm})


def _triples(table: dict[int, tuple[int, int]]) -> npt.NDArray[np.uint32]:
    """(key, first, last) of every entry, flattened in table order, as little-endian uint32."""
    flat = chain.from_iterable((k, a, b) for k, (a, b) in table.items())
    return np.fromiter(flat, dtype="<u4", count=3 * len(table))


@dataclass(frozen=True)
class OrgPrior:
    """Organisation-wide baselines a new sender starts from (shipped in the model manifest)."""

    hours: tuple[float, ...] = tuple([1.0 / 24] * 24)
    wdays: tuple[float, ...] = tuple([1.0 / 7] * 7)
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    human: tuple[float, ...] = ()
    weight: float = 10.0
    # What is normal for a new sender of this organisation: high percentiles of messages in 1 h,
    # in 24 h, distinct and new recipients in 1 h, in 10 min and per hour over 10 messages, of
    # the messages of senders still learning. A sender is compared with these until its own
    # baseline is trusted.
    new_peaks: tuple[float, ...] = (0.0,) * 6

    def as_json(self) -> dict[str, Any]:
        return {
            "hours": list(self.hours), "wdays": list(self.wdays), "weight": self.weight,
            "stats": {k: list(v) for k, v in self.stats.items()}, "human": list(self.human),
            "new_peaks": list(self.new_peaks),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrgPrior:
        return cls(
            hours=tuple(float(v) for v in data["hours"]),
            wdays=tuple(float(v) for v in data["wdays"]),
            stats={k: (float(v[0]), float(v[1])) for k, v in data["stats"].items()},
            human=tuple(float(v) for v in data["human"]),
            weight=float(data.get("weight", 10.0)),
            new_peaks=tuple(float(v) for v in data.get("new_peaks", (0.0,) * 6)),
        )

    @classmethod
    def from_profiles(cls, profiles: list[Profile], weight: float = 10.0) -> OrgPrior:
        """Message-weighted average of many senders' baselines (training time)."""
        used = [p for p in profiles if p.n > 0 and p.human]
        if not used:
            return cls(weight=weight)
        w = np.array([p.n for p in used], dtype=float)
        hours = np.sum([np.array(p.hours) / max(sum(p.hours), 1e-9) * c for p, c in zip(used, w,
                        strict=True)], axis=0) / w.sum()
        wdays = np.sum([np.array(p.wdays) / max(sum(p.wdays), 1e-9) * c for p, c in zip(used, w,
                        strict=True)], axis=0) / w.sum()
        stats: dict[str, tuple[float, float]] = {}
        for key in STAT_KEYS[:6]:
            rows = [(p.stats[key], c) for p, c in zip(used, w, strict=True) if key in p.stats]
            total = sum(c for _, c in rows) or 1.0
            mean = sum(m * c for (m, _), c in rows) / total
            var = sum((v + (m - mean) ** 2) * c for (m, v), c in rows) / total
            stats[key] = (float(mean), float(var))
        human = np.average(np.array([p.human for p in used]), axis=0, weights=w)
        return cls(
            hours=_floored(hours, 0.2 / 24), wdays=_floored(wdays, 0.2 / 7),
            stats=stats, human=tuple(float(v) for v in human), weight=weight,
        )


def _floored(shares: npt.NDArray[np.float64], floor: float) -> tuple[float, ...]:
    """Shares with a floor (no hour is impossible for the org), renormalised to sum to 1."""
    out = np.maximum(shares / shares.sum(), floor)
    return tuple(float(v) for v in out / out.sum())
