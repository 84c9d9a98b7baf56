"""Config loading: defaults, the shipped example, strict errors naming key and line."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from mailwarden.config import load_config
from mailwarden.engine import Engine
from mailwarden.metrics import Metrics
from mailwarden.options import ConfigError
from mailwarden.verdict import Action

from conftest import REPO


def test_defaults_are_observe_and_fail_open() -> None:
    config = load_config()
    assert config.milter.mode == "observe"
    assert config.milter.on_error is Action.ACCEPT
    assert config.milter.socket.startswith("unix:")
    assert config.policy.outbound.quarantine == 5.0
    assert config.policy.outbound.reject == 10.0
    assert config.metrics.address == "127.0.0.1"


def test_shipped_example_equals_defaults() -> None:
    example = load_config(REPO / "deploy" / "mailwarden.toml")
    defaults = load_config()
    assert example.milter == defaults.milter
    assert example.metrics == defaults.metrics
    assert example.policy == defaults.policy
    assert (example.model_dir, example.state_dir) == (defaults.model_dir, defaults.state_dir)
    assert [(d.name, d.enabled, d.required, d.weight) for d in example.detectors] == [
        (d.name, d.enabled, d.required, d.weight) for d in defaults.detectors
    ]


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ('[milter]\nmode = "observe"\nsokcet = "unix:/x"\n', "milter.sokcet", 3),
        ('[milter]\n\nmode = "loud"\n', "milter.mode", 3),
        ("[milter]\ntimeout_seconds = -1\n", "milter.timeout_seconds", 2),
        ('[milter]\nmode = "observe"\nprocesses = -2\n', "milter.processes", 3),
        ('[milter]\ninternal_networks = ["10.0.0.0/33"]\n', "milter.internal_networks", 2),
        ("[metrics]\nport = \"x\"\n", "metrics.port", 2),
        ("[detectors.nosuch]\nenabled = true\n", "detectors.nosuch", 1),
        ("[detectors.testmarker]\nenabled = true\nscroe = 1\n", "detectors.testmarker.scroe", 3),
        ('[[policy.rules]]\nname = "x"\naction = "bounce"\ntype = "t"\n', "policy.rules.action", 3),
        ('[[policy.rules]]\nname = "x"\naction = "reject"\n', "policy.rules.type", 1),
        ("[surprise]\nx = 1\n", "surprise", 1),
    ],
)
def test_bad_config_names_key_and_line(tmp_path: Path, text: str, key: str, line: int) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config = load_config(path)
        Engine(config, Metrics()).close()  # detector options are checked when built
    assert err.value.key == key
    assert err.value.line == line
    assert str(path) in str(err.value)


def test_processes_key_and_run_override_decide_the_worker_count(tmp_path: Path) -> None:
    from mailwarden.config import apply_overrides, worker_processes

    assert load_config().milter.processes == 0  # auto
    path = tmp_path / "mw.toml"
    path.write_text("[milter]\nprocesses = 3\n")
    config = apply_overrides(load_config(path), {})
    assert worker_processes(config, {}) == 3
    assert worker_processes(config, {"processes": 2}) == 2
    assert worker_processes(config, {"processes": None}) == 3
    path.write_text("[milter]\nprocesses = 0\n")
    import os

    cpus = len(os.sched_getaffinity(0))
    assert worker_processes(load_config(path), {}) == min(2 * cpus, 8)
    assert worker_processes(load_config(path), {"processes": 1}) == 1


def test_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[milter\nmode = 1\n")
    with pytest.raises(ConfigError, match="line 1"):
        load_config(path)


def test_required_detector_that_cannot_load_refuses_start(tmp_path: Path) -> None:
    from mailwarden.detectors.base import DetectorUnavailable, registrations

    registration = registrations()["testmarker"]
    original = registration.factory

    def unavailable(options, context):  # type: ignore[no-untyped-def]
        raise DetectorUnavailable("model file missing")

    object.__setattr__(registration, "factory", unavailable)
    try:
        text = "[detectors.testmarker]\nenabled = true\nrequired = {}\n"
        optional = Engine(load_config(tmp_path / "a.toml", text=text.format("false")), Metrics())
        reasons = {d.name: d.reason for d in optional.disabled if d.configured}
        assert reasons["testmarker"] == "model file missing"
        assert "testmarker" not in [d.name for d in optional.detectors]
        optional.close()
        with pytest.raises(ConfigError, match="required detector unavailable: model file missing"):
            Engine(load_config(tmp_path / "b.toml", text=text.format("true")), Metrics())
    finally:
        object.__setattr__(registration, "factory", original)


def test_shipped_example_loads_every_default_detector_with_shipped_models(tmp_path: Path) -> None:
    from dataclasses import replace

    example = load_config(REPO / "deploy" / "mailwarden.toml")
    config = replace(example, model_dir=REPO / "models", state_dir=tmp_path)
    engine = Engine(config, Metrics(), run_mode="score")
    try:
        loaded = {d.name for d in engine.detectors}
        assert {"leak", "content", "sending"} <= loaded, [
            (d.name, d.reason) for d in engine.disabled]
        assert "testmarker" not in loaded
    finally:
        engine.close()


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(_flatten(value, dotted))
        elif not (isinstance(value, list) and value and isinstance(value[0], dict)):
            out[dotted] = value  # arrays of tables (policy.rules) are examples, not defaults
    return out


def test_example_file_shows_every_key_with_the_code_default(tmp_path: Path) -> None:
    """Every key of deploy/mailwarden.toml has the code's default as its value, and every key
    the code reads (the detectors' and sinks' own keys included) is in the file."""
    defaults: dict[str, Any] = {}
    # Every detector enabled (the test marker is off by default), so each reads its options.
    text = f'[paths]\nstate_dir = "{tmp_path}"\n[detectors.testmarker]\nenabled = true\n'
    engine = Engine(load_config(text=text, defaults=defaults), Metrics())
    engine.close()
    shipped = _flatten(tomllib.loads((REPO / "deploy" / "mailwarden.toml").read_text()))
    shipped.pop("paths.state_dir")
    assert defaults.pop("paths.state_dir") == "/var/lib/mailwarden"
    different = {k: (v, defaults.get(k, "<not read>")) for k, v in shipped.items()
                 if k not in defaults or defaults[k] != v}
    assert different == {}
    undocumented = sorted(k for k, v in defaults.items()
                          if k not in shipped and v is not None and not isinstance(v, dict)
                          and k != "policy.rules")
    assert undocumented == []
    assert len(shipped) > 60
