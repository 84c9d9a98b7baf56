"""Scenario generator, mbox round trip, replay of an injected history, train/evaluate hooks."""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mailwarden.detectors.base import DetectorContext, registrations
from mailwarden.detectors.sending.features import SendEvent
from mailwarden.files.sources import iter_sources
from mailwarden.message import Envelope, Message, addresses
from mailwarden.options import Options
from mailwarden.training.sending.data import events_from_mail, synthetic_history
from mailwarden.training.sending.evaluate import add_evaluate_arguments, evaluate_from_args
from mailwarden.training.sending.scenarios import (
    KINDS,
    NEGATIVE_KINDS,
    SPIKES,
    inject,
    write_mbox,
    write_scenario_mbox,
)
from mailwarden.training.sending.train import add_train_arguments, train_from_args

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def events() -> list[SendEvent]:
    return synthetic_history(3, senders=12, days=30)


def test_synthetic_history_is_reproducible_and_plausible(events: list[SendEvent]) -> None:
    assert synthetic_history(3, senders=12, days=30) == events
    assert synthetic_history(4, senders=12, days=30) != events
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))
    assert len({e.sender for e in events}) == 12
    assert 500 < len(events) < 20000


def test_inject_places_every_kind_after_the_split(events: list[SendEvent]) -> None:
    split = events[int(len(events) * 0.7)].at
    history = inject(events, 9, split, per_kind=3)
    assert history == inject(events, 9, split, per_kind=3)
    injected = [h for h in history if h.kind]
    assert Counter(h.kind for h in injected if h.position == 1) == dict.fromkeys(KINDS, 3)
    assert all(h.event.at >= split + 3600 for h in injected)
    assert sum(1 for h in history if not h.kind) == len(events)
    for sid in {h.scenario for h in injected}:
        positions = sorted(h.position for h in injected if h.scenario == sid)
        assert positions == list(range(1, len(positions) + 1))
    senders_before = Counter(e.sender for e in events if e.at < split)
    victims = [h for h in injected if h.kind not in NEGATIVE_KINDS]
    assert all(senders_before[h.event.sender] >= 20 for h in victims)
    newcomers = [h for h in injected if h.kind in NEGATIVE_KINDS]
    assert newcomers and all(senders_before[h.event.sender] == 0 for h in newcomers)


def test_mbox_round_trip_keeps_what_the_features_use(tmp_path: Path,
                                                     events: list[SendEvent]) -> None:
    extra = SendEvent(events[40].at, "x@corp.example", ("y@gmail.com",), 600_000, 400_000, True)
    sample = [*events[:40], extra]
    assert write_mbox(tmp_path / "h.mbox", sample) == 41
    back = events_from_mail([tmp_path / "h.mbox"])
    assert len(back) == 41
    for want, got in zip(sorted(sample, key=lambda e: e.at), back, strict=True):
        assert got.sender == want.sender
        assert sorted(got.recipients) == sorted(want.recipients)
        assert int(got.at) == int(want.at)
        assert got.is_reply == want.is_reply
    big = next(e for e in back if e.sender == "x@corp.example")
    assert 380_000 < big.attach_bytes < 420_000


def test_replay_of_an_injected_history_flags_the_scenarios(tmp_path: Path) -> None:
    history = write_scenario_mbox(tmp_path / "replay.mbox", seed=5, per_kind=2)
    context = DetectorContext(REPO / "models", tmp_path / "state", run_mode="replay")
    # per-message scores: a sender hold would hold (count) every later message of a victim
    det = registrations()["sending"].factory(Options({"sender_hold": False},
                                                     "detectors.sending"), context)
    messages = []
    for raw in iter_sources([tmp_path / "replay.mbox"]):  # what `mailwarden replay` does
        m = Message(Envelope("", "", ()), raw.data, len(raw.data))
        rcpts = tuple(a for k in ("To", "Cc") for a in addresses(m.header(k)))
        at = events_from_mail_time(m)
        m.envelope = Envelope("", addresses(m.header("From"))[0], rcpts, received_at=at)
        messages.append((at, m))
    assert len(messages) == len(history)
    first_flag: dict[str, int] = {}
    false_pos = normal = 0
    for _at, m in sorted(messages, key=lambda pair: pair[0]):
        result = det.analyse(m)
        label = m.header("X-Scenario")
        if label is None:
            normal += 1
            false_pos += bool(result.findings)
            continue
        _kind, sid, pos = label.split()
        if result.findings:
            first_flag.setdefault(sid, int(pos))
    scenarios = {h.scenario for h in history if h.kind and h.kind not in NEGATIVE_KINDS
                 and h.kind not in SPIKES}
    newcomers = {str(h.scenario) for h in history if h.kind in NEGATIVE_KINDS}
    assert newcomers and not newcomers & set(first_flag)  # new senders' bursts pass
    within = sum(1 for sid in scenarios if first_flag.get(str(sid), 99) <= 10)
    assert within >= 0.9 * len(scenarios)
    spikes = {str(h.scenario) for h in history if h.kind == "rate_spike_10x"}
    assert spikes <= set(first_flag), first_flag  # the 10x spikes are flagged (not all by 10)
    assert false_pos <= 0.02 * normal


def events_from_mail_time(m: Message) -> float:
    from email.utils import parsedate_to_datetime

    return parsedate_to_datetime(m.header("Date") or "").timestamp()


def write_log(path: Path, events: list[SendEvent]) -> None:
    ids: dict[str, str] = {}
    with gzip.open(path, "wt", encoding="utf-8", newline="") as out:
        w = csv.writer(out)
        w.writerow(["message_id", "unix_time", "sender", "recipients", "n_recipients"])
        for n, e in enumerate(events):
            rc = [ids.setdefault(r, str(len(ids) + 1)) for r in e.recipients]
            w.writerow([n, int(e.at), ids.setdefault(e.sender, str(len(ids) + 1)), "|".join(rc),
                        len(rc)])


def test_train_and_evaluate_hooks(tmp_path: Path, events: list[SendEvent]) -> None:
    log = tmp_path / "log.csv.gz"
    write_log(log, events)
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    add_evaluate_arguments(parser)  # must skip the flags train already added
    assert train_from_args(parser.parse_args([]), tmp_path / "models") == {}
    args = parser.parse_args(["--sending", str(log), "--sending-model", "isolation_forest",
                              "--scenarios-per-kind", "2"])
    summary = train_from_args(args, tmp_path / "models")
    out = tmp_path / "models" / "sending"
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["models"]) == ["isolation_forest"]
    assert summary["sending"]["messages"] == len(events)  # type: ignore[index]
    context = DetectorContext(tmp_path / "models", tmp_path / "state", run_mode="replay")
    det = registrations()["sending"].factory(Options({}, "detectors.sending"), context)
    assert det.describe()["training"] == "log.csv.gz"
    report = evaluate_from_args(args, tmp_path / "models", tmp_path / "report")
    results = report["sending"]["log.csv.gz"]  # type: ignore[index]
    written = json.loads((tmp_path / "report" / "sending-evaluation.json").read_text())
    positives = len(KINDS) - len(NEGATIVE_KINDS)
    assert written["log.csv.gz"]["isolation_forest"]["scenarios"] == 2 * positives
    negatives = written["log.csv.gz"]["isolation_forest"]["negatives"]["new_sender_burst"]
    assert negatives["scenarios"] == 2
    for name in ("isolation_forest", "isolation_forest + tails",
                 "shipped/isolation_forest + tails"):
        r = results[name]
        assert 0.5 < r["roc_auc"] <= 1.0
        assert 0.0 <= r["fp_rate"] <= 1.0 and r["real_messages"] > 0


def test_training_is_reproducible(tmp_path: Path, events: list[SendEvent]) -> None:
    from mailwarden.detectors.sending.features import FeatureConfig
    from mailwarden.training.sending.train import write_model

    for name in ("a", "b"):
        write_model(tmp_path / name, events, FeatureConfig(), ("isolation_forest",), 7, "t")
    with np.load(tmp_path / "a" / "isolation_forest.npz") as a, \
            np.load(tmp_path / "b" / "isolation_forest.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files)
