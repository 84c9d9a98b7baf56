"""Sending features and profiles: history-relative values, org prior, caps, time zones, evidence."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from mailwarden.detectors.sending.features import (
    IDX,
    FeatureConfig,
    SendEvent,
    explain,
    learn,
    observe,
)
from mailwarden.detectors.sending.names import FEATURES
from mailwarden.detectors.sending.profile import MAX_DOMAINS, MAX_RECIPIENTS, OrgPrior, Profile

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # a Monday
CFG = FeatureConfig()


def ev(at: float, rcpts: tuple[str, ...] = ("bob@corp.example",), size: int = 5000,
       attach: int = 0, sender: str = "alice@corp.example", reply: bool = False) -> SendEvent:
    return SendEvent(at, sender, rcpts, size, attach, reply)


def history(n: int = 60, prior: OrgPrior | None = None) -> Profile:
    p = Profile()
    for i in range(n):
        e = ev(T0 + i * 86400 / 4, ("bob@corp.example", "carol@corp.example")[: 1 + i % 2])
        learn(p, e, observe(p, e, prior or OrgPrior(), CFG))
    return p


def value(p: Profile, e: SendEvent, name: str, prior: OrgPrior | None = None) -> float:
    return float(observe(p, e, prior or OrgPrior(), CFG).vector[IDX[name]])


def test_vector_has_every_feature_and_observe_does_not_mutate() -> None:
    p = history(10)
    before = p.encode()
    obs = observe(p, ev(T0 + 10 * 86400), OrgPrior(), CFG)
    assert obs.vector.shape == (len(FEATURES),)
    assert np.isfinite(obs.vector).all()
    assert p.encode() == before


def test_new_recipients_and_domains_relative_to_the_sender() -> None:
    p = history()
    at = T0 + 30 * 86400
    assert value(p, ev(at, ("bob@corp.example",)), "new_recipient_share") < 0.05
    new = ("x@elsewhere.example", "y@other.example")
    # All new, weighted by the sender's 60 messages against the prior's pseudo-count of 10.
    assert value(p, ev(at, new), "new_recipient_share") == pytest.approx(60 / 70)
    assert value(p, ev(at, new), "new_domain_share") == pytest.approx(60 / 70)
    obs = observe(p, ev(at, new), OrgPrior(), CFG)
    assert obs.human[IDX["new_domains_10m"]] == 2


def test_new_sender_starts_from_the_org_prior() -> None:
    prior = OrgPrior(human=tuple(0.1 if f == "new_recipient_share" else 0.0 for f in FEATURES))
    fresh = Profile()
    # Everything is new for a brand-new sender, so the feature is the org's usual novelty.
    assert value(fresh, ev(T0, ("x@y.example",)), "new_recipient_share", prior) == 0.1
    assert value(history(200), ev(T0 + 80 * 86400, ("x@y.example",)),
                 "new_recipient_share", prior) > 0.9


def test_message_rate_counts_windows() -> None:
    p = history()
    at = T0 + 40 * 86400
    for k in range(4):
        e = ev(at + k * 10)
        learn(p, e, observe(p, e, OrgPrior(), CFG))
    obs = observe(p, ev(at + 45), OrgPrior(), CFG)
    assert obs.human[IDX["msgs_1m"]] == 5
    assert obs.human[IDX["msgs_10m"]] == 5
    assert obs.vector[IDX["msgs_1h_vs_usual"]] > 2


def test_hour_of_day_uses_the_configured_time_zone() -> None:
    p = history()
    at = T0 + 30 * 86400  # 2024-04-03 10:00 UTC, 03:00 in Los Angeles (summer time)
    utc = observe(p, ev(at), OrgPrior(), FeatureConfig(timezone="UTC"))
    la = observe(p, ev(at), OrgPrior(), FeatureConfig(timezone="America/Los_Angeles"))
    assert utc.hour == 10
    assert la.hour == 3
    night = observe(p, ev(at + 16 * 3600), OrgPrior(), CFG)  # 02:00 UTC, never used
    assert night.vector[IDX["hour_rarity"]] > utc.vector[IDX["hour_rarity"]] + 1


def test_external_and_webmail_shares() -> None:
    rcpts = ("a@corp.example", "b@partner.example", "c@gmail.com", "d@yahoo.co.uk")
    obs = observe(Profile(), ev(T0, rcpts), OrgPrior(), CFG)
    assert obs.human[IDX["external_share"]] == 0.75
    assert obs.human[IDX["webmail_share"]] == 0.5
    cfg = FeatureConfig(internal_domains=frozenset({"corp.example", "partner.example"}))
    assert observe(Profile(), ev(T0, rcpts), OrgPrior(), cfg).human[IDX["external_share"]] == 0.5
    assert cfg.is_webmail("mail.gmx.net") and not cfg.is_webmail("example.com")


def test_attachment_and_size_against_the_senders_usual() -> None:
    p = history()
    at = T0 + 30 * 86400
    assert value(p, ev(at, attach=8_000_000, size=11_000_000), "attachment_vs_usual") > 5
    assert abs(value(p, ev(at), "size_vs_usual")) < 1


def test_profile_round_trip_and_caps() -> None:
    p = history(30)
    for i in range(40):
        rcpts = tuple(f"r{i}-{k}@d{i}-{k % 5}.example" for k in range(30))
        e = ev(T0 + 8 * 86400 + i * 60, rcpts)
        learn(p, e, observe(p, e, OrgPrior(), CFG))
    assert len(p.rcpts) == MAX_RECIPIENTS
    assert len(p.domains) == MAX_DOMAINS
    blob = p.encode()
    assert len(blob) < 6000
    again = Profile.decode(blob)
    assert again.encode() == blob
    assert again.n == p.n == 70
    assert again.rcpts == p.rcpts


def test_unreadable_blob_gives_a_new_profile() -> None:
    assert Profile.decode(b"MWS1garbage-garbage-garbage").n == 0
    assert Profile.decode(b"MWS2garbage-garbage-garbage").n == 0
    assert Profile.decode(None).n == 0
    blob = history(5).encode()
    assert Profile.decode(blob).n == 5
    assert Profile.decode(blob[:-1]).n == 0  # truncated
    assert Profile.decode(blob + b"\0\0\0\0").n == 0  # trailing bytes


@pytest.mark.parametrize("n", [0, 1, 3, 70])
def test_binary_profile_layout_decodes_exactly_as_the_json_layout(n: int) -> None:
    """MWS3 (binary) and MWS1 (JSON, what state files written earlier hold) decode to the same
    profile, field by field, so scores do not move when the layout changes; both still read."""
    p = history(n)
    for i in range(n // 2):
        rcpts = tuple(f"r{i}-{k}@d{k % 3}.example" for k in range(1 + i % 4))
        e = ev(T0 + 20 * 86400 + i * 613.7, rcpts, size=1000 + 37 * i)
        learn(p, e, observe(p, e, OrgPrior(), CFG))
    p.score = 0.123456789
    binary, text = p.encode(), p.encode_json()
    assert binary[:4] == b"MWS3" and text[:4] == b"MWS1"
    from_binary, from_text = Profile.decode(binary), Profile.decode(text)
    assert from_binary == from_text
    assert from_binary.score == 0.1235 and from_binary.n == p.n
    assert (len(from_binary.stats), len(from_binary.rcpts)) == (len(p.stats), len(p.rcpts))
    assert len(p.stats) == (14 if n else 0)  # 6 EWMA pairs + the baseline's buckets and peaks
    # what the detector does next with either is the same, to the bit
    e = ev(T0 + 40 * 86400, ("new@else.example",))
    assert np.array_equal(observe(from_binary, e, OrgPrior(), CFG).vector,
                          observe(from_text, e, OrgPrior(), CFG).vector)


def test_explanations_name_values_and_baselines_without_addresses() -> None:
    p = history()
    rcpts = tuple(f"person{k}@new{k}.example" for k in range(14))
    obs = observe(p, ev(T0 + 30 * 86400 + 3, rcpts), OrgPrior(), CFG)
    texts = [explain(obs, i) for i in range(len(FEATURES))]
    assert "recipients to 14 new domains in 10 min (baseline 0.0)" in texts
    assert all("@" not in t and "new3.example" not in t for t in texts)


def test_org_prior_round_trips_through_json() -> None:
    profiles = [history(20), history(40)]
    prior = OrgPrior.from_profiles(profiles)
    assert abs(sum(prior.hours) - 1) < 0.1
    assert OrgPrior.from_json(prior.as_json()) == prior
