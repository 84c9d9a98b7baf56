"""``mailwarden replay`` end to end: a history with injected compromises, the shipped model.

The scenario generator writes an organisation's mail history as an mbox (normal traffic plus
injected compromises in the last 30%); ``mailwarden replay`` must order it by Date, rebuild each
sender's behaviour from scratch and flag the compromises through the sending detector's score.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from mailwarden.cli import main
from mailwarden.training.sending.scenarios import NEGATIVE_KINDS, SPIKES, write_scenario_mbox

from conftest import REPO

CONFIG = """
[milter]
mode = "enforce"
[paths]
model_dir = "{models}"
state_dir = "{state}"
[detectors.leak]
enabled = false
[detectors.content]
enabled = false
[detectors.allowlist]
enabled = false
[detectors.sending]
enabled = true
required = true
report_above = 0.6
# this test measures the per-message score; a sender hold would hold a victim's later real mail
sender_hold = false
[[policy.rules]]
name = "anomaly"
score = "sending_anomaly"
above = 0.6
action = "quarantine"
"""


def test_replay_flags_injected_compromises(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    mbox = tmp_path / "history.mbox"
    history = write_scenario_mbox(mbox, seed=5, senders=8, days=20, per_kind=1, size_scale=0.01)
    config = tmp_path / "replay.toml"
    config.write_text(CONFIG.format(models=REPO / "models", state=tmp_path / "state"))
    assert main(["replay", "--json", "--config", str(config), str(mbox)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == len(history)

    scenario_of = {}
    for index, item in enumerate(history, start=1):
        scenario_of[f"{mbox}#{index}"] = item
    first_flag: dict[int, int] = {}
    positions: dict[int, int] = defaultdict(int)
    kind_of: dict[int, str] = {}
    normal = flagged_normal = 0
    for record in records:
        item = scenario_of[record["source"]]
        assert "sending_anomaly" in record["scores"]
        flagged = record["verdict"] == "quarantine"
        if not item.kind:
            normal += 1
            flagged_normal += flagged
            continue
        positions[item.scenario] = max(positions[item.scenario], item.position)
        kind_of[item.scenario] = item.kind
        if flagged and item.scenario not in first_flag:
            first_flag[item.scenario] = item.position
    newcomers = {s for s, k in kind_of.items() if k in NEGATIVE_KINDS}
    assert newcomers and not newcomers & set(first_flag), first_flag  # new is not anomalous
    scenarios = {s for s, k in kind_of.items() if k not in NEGATIVE_KINDS and k not in SPIKES}
    assert len(scenarios) >= 4
    early = [s for s in scenarios if first_flag.get(s, 99) <= 10]
    spikes = {kind_of[s]: first_flag.get(s) for s in kind_of if kind_of[s] in SPIKES}
    print(f"scenarios {len(scenarios)}, flagged within 10: {len(early)}, "
          f"normal flagged {flagged_normal}/{normal}, spikes first flagged at {spikes}")
    assert len(early) == len(scenarios), (first_flag, kind_of)
    assert spikes["rate_spike_10x"] is not None, spikes
    assert flagged_normal / normal <= 0.02, (flagged_normal, normal)
    finding = next(f for r in records for f in r["findings"] if f["type"] == "sending_anomaly")
    assert "@" not in finding["evidence"]  # counts and baselines, never addresses
