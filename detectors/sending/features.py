"""Feature extraction for the ``sending`` detector: one message against its sender's history.

Input is a :class:`SendEvent` (who, when, recipients, sizes, reply or not: built from a
:class:`~mailwarden.message.Message` by the detector, or from a sending log by training and
evaluation) and the sender's :class:`~mailwarden.detectors.sending.profile.Profile` as it was
before the message. :func:`observe` returns the fixed-order feature vector the models score plus
the human-readable values used in evidence; :func:`learn` then folds the message into the profile.
Baselines blend the sender's own history with the organisation prior by message count, so a new
sender is compared with the organisation and a long-standing one with itself.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from mailwarden.detectors.sending.anomaly_models import Array
from mailwarden.detectors.sending.baseline import (
    Activity,
    Baseline,
    baseline,
    deviations,
    fold,
    span_rate,
)
from mailwarden.detectors.sending.names import FEATURES
from mailwarden.detectors.sending.profile import (
    HIST_DECAY,
    MAX_DOMAINS,
    MAX_RECIPIENTS,
    TIMES_KEPT,
    OrgPrior,
    Profile,
    hash32,
)
from mailwarden.message import domain_of

IDX = {name: i for i, name in enumerate(FEATURES)}
# Personal webmail domains; "name.*" matches that name under any public suffix (yahoo.co.uk).
WEBMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.*", "live.*", "msn.com", "yahoo.*",
    "ymail.com", "aol.com", "gmx.*", "web.de", "protonmail.com", "proton.me", "pm.me",
    "icloud.com", "me.com", "mac.com", "mail.ru", "yandex.*", "zoho.com", "tutanota.com",
    "tuta.io", "mail.com", "qq.com", "163.com", "126.com", "seznam.cz", "wp.pl", "o2.pl",
    "libero.it", "orange.fr", "laposte.net", "t-online.de", "freenet.de", "fastmail.com",
)
WEBMAIL_CACHE = 4096
_VAR_FLOOR = {"lsize": 0.25, "latt": 1.0, "lrcpt": 0.1, "lc1h": 0.25, "lc1d": 0.25}
_Z_CLIP = 10.0
YOUNG_SECONDS = 6 * 3600  # a contact first seen this recently still counts as new
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class SendEvent:
    """One outgoing message as the sending features see it (no content)."""

    at: float
    sender: str
    recipients: tuple[str, ...]
    size: int = 0
    attach_bytes: int = 0
    is_reply: bool = False


@dataclass(frozen=True)
class FeatureConfig:
    timezone: str = "UTC"
    internal_domains: frozenset[str] = frozenset()
    webmail_domains: tuple[str, ...] = WEBMAIL_DOMAINS
    tz: ZoneInfo = field(init=False, repr=False, compare=False)
    # domain -> is_webmail, emptied when full (dict get/set are atomic: shared by threads)
    _webmail: dict[str, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tz", ZoneInfo(self.timezone))
        object.__setattr__(self, "_webmail", {})

    def is_internal(self, domain: str, sender_domain: str) -> bool:
        if self.internal_domains:
            return domain in self.internal_domains or any(
                domain.endswith("." + d) for d in self.internal_domains
            )
        return domain == sender_domain

    def is_webmail(self, domain: str) -> bool:
        known = self._webmail.get(domain)
        if known is None:
            known = self._match_webmail(domain)
            if len(self._webmail) >= WEBMAIL_CACHE:
                self._webmail.clear()
            self._webmail[domain] = known
        return known

    def _match_webmail(self, domain: str) -> bool:
        for pattern in self.webmail_domains:
            if pattern.endswith(".*"):
                base = pattern[:-1]
                if domain.startswith(base) or f".{base}" in domain:
                    return True
            elif domain == pattern or domain.endswith("." + pattern):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Observation:
    """Features of one message plus what is needed to explain them and to learn from it."""

    vector: Array
    human: tuple[float, ...]
    baseline: tuple[float, ...]
    hour: int
    weekday: int
    recipient_hashes: tuple[int, ...]
    domain_hashes: tuple[int, ...]
    activity: Activity
    base: Baseline
    dev: Array  # per-behaviour deviations from the baseline (sending_baseline.BEHAVIOURS)


def _count_since(times: list[int], since: float) -> int:
    return len(times) - bisect.bisect_left(times, since)


def _blend(own: float, prior: float, w: float) -> float:
    return w * own + (1.0 - w) * prior


def _z(p: Profile, prior: OrgPrior, key: str, value: float, w: float) -> float:
    m_own, v_own = p.stats.get(key, prior.stats.get(key, (value, 0.0)))
    m_pri, v_pri = prior.stats.get(key, (m_own, v_own))
    mean, var = _blend(m_own, m_pri, w), _blend(v_own, v_pri, w)
    z = (value - mean) / math.sqrt(var + _VAR_FLOOR.get(key, 0.25))
    return max(-_Z_CLIP, min(_Z_CLIP, z))


def _recipient_parts(ev: SendEvent) -> tuple[list[str], list[str]]:
    rcpts = sorted({r.strip().strip("<>").lower() for r in ev.recipients if r.strip()})
    domains = sorted({domain_of(r) for r in rcpts} - {""})
    return rcpts, domains


def observe(p: Profile, ev: SendEvent, prior: OrgPrior, cfg: FeatureConfig) -> Observation:
    """Features of ``ev`` relative to the profile as it was before it (``p`` is not changed)."""
    t = int(ev.at)
    rcpts, domains = _recipient_parts(ev)
    rh = tuple(hash32(r) for r in rcpts)
    dh = tuple(hash32(d) for d in domains)
    n_r, n_d = max(len(rh), 1), max(len(dh), 1)
    w = p.n / (p.n + prior.weight)
    ph = prior.human if len(prior.human) == len(FEATURES) else (0.0,) * len(FEATURES)
    c1m, c10m, c1h, c1d = (1 + _count_since(p.times, t - s) for s in (60, 600, 3600, 86400))
    recent: set[int] = set()
    fresh = 0
    for k, (first, last) in p.rcpts.items():
        if last >= t - 3600:
            recent.add(k)
            fresh += first >= t - 3600
    d1h = len(recent | set(rh))
    n1h = fresh + sum(1 for h in rh if h not in p.rcpts)
    young = t - YOUNG_SECONDS
    new_r = sum(1 for h in rh if p.rcpts.get(h, (t, t))[0] >= young) / n_r
    new_d_list = [h for h in dh if h not in p.domains]
    new_d = sum(1 for h in dh if p.domains.get(h, (t, t))[0] >= young) / n_d
    nd10 = sum(1 for first, _l in p.domains.values() if first >= t - 600) + len(new_d_list)
    sender_dom = domain_of(ev.sender)
    ext = sum(1 for r in rcpts if not cfg.is_internal(domain_of(r), sender_dom)) / n_r
    web = sum(1 for r in rcpts if cfg.is_webmail(domain_of(r))) / n_r
    local = datetime.fromtimestamp(t, cfg.tz)
    hour, wday = local.hour, local.weekday()
    p_hour = (p.hours[hour] + prior.weight * prior.hours[hour]) / (sum(p.hours) + prior.weight)
    p_wday = (p.wdays[wday] + prior.weight * prior.wdays[wday]) / (sum(p.wdays) + prior.weight)
    is_new = 0.0 if ev.is_reply else 1.0
    lsize, latt, lrcpt = math.log1p(ev.size), math.log1p(ev.attach_bytes), math.log1p(len(rh))
    nt_prior = prior.stats.get("newthread", (0.5, 0.0))[0]
    nt_mean = _blend(p.stats.get("newthread", (nt_prior, 0.0))[0], nt_prior, w)
    vector = np.array([
        math.log1p(c1m),
        math.log1p(c10m),
        _z(p, prior, "lc1h", math.log1p(c1h), w),
        _z(p, prior, "lc1d", math.log1p(c1d), w),
        lrcpt,
        _z(p, prior, "lrcpt", lrcpt, w),
        math.log1p(d1h),
        _blend(new_r, ph[IDX["new_recipient_share"]], w),
        _blend(new_d, ph[IDX["new_domain_share"]], w),
        math.log1p(_blend(nd10, ph[IDX["new_domains_10m"]], w)),
        ext,
        web,
        -math.log(24.0 * p_hour),
        -math.log(7.0 * p_wday),
        _z(p, prior, "lsize", lsize, w),
        _z(p, prior, "latt", latt, w),
        is_new - nt_mean,
    ], dtype=np.float64)
    human = (float(c1m), float(c10m), float(c1h), float(c1d), float(len(rh)), float(len(rh)),
             float(d1h),
             new_r, new_d, float(nd10), ext, web, 100.0 * p_hour, 100.0 * p_wday,
             float(ev.size), float(ev.attach_bytes), is_new)
    own = p.human if len(p.human) == len(FEATURES) else ph
    usual = tuple(_blend(o, q, w) for o, q in zip(own, ph, strict=True))
    act = Activity(float(c1h), float(c1d), float(d1h), float(n1h), float(c10m),
                   span_rate(p.times, t))
    base = baseline(p, prior, t)
    dev = deviations(act, base, float(vector[IDX["hour_rarity"]]), new_r)
    return Observation(vector, human, usual, hour, wday, rh, dh, act, base, dev)


def learn(p: Profile, ev: SendEvent, obs: Observation) -> None:
    """Fold the message into the profile (after it was scored)."""
    t = int(ev.at)
    a = p.alpha()
    c1h, c1d = obs.human[IDX["msgs_1h_vs_usual"]], obs.human[IDX["msgs_1d_vs_usual"]]
    for key, value in (("lsize", math.log1p(ev.size)), ("latt", math.log1p(ev.attach_bytes)),
                       ("lrcpt", math.log1p(len(obs.recipient_hashes))),
                       ("lc1h", math.log1p(c1h)), ("lc1d", math.log1p(c1d)),
                       ("newthread", obs.human[IDX["new_thread_vs_usual"]])):
        p.push_stat(key, value, a, _VAR_FLOOR.get(key, 0.25))
    p.push_human(list(obs.human), a)
    p.hours = [v * HIST_DECAY for v in p.hours]
    p.hours[obs.hour] += 1.0
    p.wdays = [v * HIST_DECAY for v in p.wdays]
    p.wdays[obs.weekday] += 1.0
    _touch_all(p.rcpts, obs.recipient_hashes, t, MAX_RECIPIENTS)
    _touch_all(p.domains, obs.domain_hashes, t, MAX_DOMAINS)
    bisect.insort(p.times, t)
    del p.times[:-TIMES_KEPT]
    fold(p, t, obs.activity)
    p.n += 1
    p.last = max(p.last, float(t))


def _touch_all(table: dict[int, tuple[int, int]], keys: tuple[int, ...], at: int, cap: int) -> None:
    for key in keys:
        first = table[key][0] if key in table else at
        table[key] = (min(first, at), max(at, table.get(key, (at, at))[1]))
    if len(table) > cap:
        keep = sorted(table.items(), key=lambda kv: kv[1][1])[-cap:]
        table.clear()
        table.update(keep)


def explain(obs: Observation, index: int) -> str:
    """One evidence phrase for feature ``index``: the value against the sender's baseline."""
    v, b = obs.human[index], obs.baseline[index]
    name = FEATURES[index]
    if name == "hour_rarity":
        return f"sent at {obs.hour:02d}h, {v:.0f}% of this sender's mail at that hour"
    if name == "weekday_rarity":
        return f"sent on {_WEEKDAYS[obs.weekday]}, {v:.0f}% of this sender's mail on that day"
    templates = {
        "msgs_1m": "{v:.0f} messages in 1 min (baseline {b:.1f})",
        "msgs_10m": "{v:.0f} messages in 10 min (baseline {b:.1f})",
        "msgs_1h_vs_usual": "{v:.0f} messages in 1 h (baseline {b:.1f})",
        "msgs_1d_vs_usual": "{v:.0f} messages in 24 h (baseline {b:.1f})",
        "recipients": "{v:.0f} recipients (baseline {b:.1f})",
        "recipients_vs_usual": "{v:.0f} recipients (baseline {b:.1f})",
        "distinct_recipients_1h": "{v:.0f} distinct recipients in 1 h (baseline {b:.1f})",
        "new_recipient_share": "{v:.0%} of recipients never seen from this sender "
                               "(baseline {b:.0%})",
        "new_domain_share": "{v:.0%} of recipient domains never seen (baseline {b:.0%})",
        "new_domains_10m": "recipients to {v:.0f} new domains in 10 min (baseline {b:.1f})",
        "external_share": "{v:.0%} external recipients (baseline {b:.0%})",
        "webmail_share": "{v:.0%} personal-webmail recipients (baseline {b:.0%})",
        "size_vs_usual": "message size {v_kb:.0f} KB (baseline {b_kb:.0f} KB)",
        "attachment_vs_usual": "attachments {v_kb:.0f} KB (baseline {b_kb:.0f} KB)",
        "new_thread_vs_usual": "new thread (baseline {b:.0%} new threads)",
    }
    return templates[name].format(v=v, b=b, v_kb=v / 1024, b_kb=b / 1024)
