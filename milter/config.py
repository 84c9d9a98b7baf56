"""The configuration file: one TOML file read with the standard library into typed, frozen values.

``load_config`` is the only entry point: it parses the file (or the built-in defaults, which equal
the commented example ``deploy/mailwarden.toml``), validates every key through
:class:`mailwarden.options.Options` and returns a :class:`Config`. Unknown keys and bad values raise
:class:`mailwarden.options.ConfigError` naming the key and line, so ``mailwarden check`` and
``mailwarden run`` refuse to start on a bad file. Detector sections are validated by each
detector's own factory when the engine builds it.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mailwarden.options import ConfigError, LineFinder, Options
from mailwarden.verdict import Action, Confidence, Direction

DEFAULT_PATH = Path("/etc/mailwarden/mailwarden.toml")
DEFAULT_SOCKET = "unix:/run/mailwarden/mailwarden.sock"
MODES = ("observe", "enforce")
QUARANTINE_FALLBACKS = ("tempfail", "reject")
ENGINE_KEYS = ("enabled", "required", "weight")


# Top-level config sections that belong to sinks (validated by the sink's factory).
SINK_SECTIONS: tuple[str, ...] = ("audit", "notify", "quarantine")


@dataclass(frozen=True, slots=True)
class MilterConfig:
    socket: str
    mode: str
    on_error: Action
    timeout_seconds: float
    max_scan_bytes: int
    spool_bytes: int
    internal_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    add_headers: bool
    workers: int
    processes: int
    name: str
    # When the MTA did not offer the quarantine action (negotiated per connection): what a
    # message the policy would hold gets instead (tempfail or reject), never a plain accept.
    quarantine_fallback: Action = Action.TEMPFAIL


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Thresholds:
    quarantine: float | None
    tempfail: float | None
    reject: float | None


@dataclass(frozen=True, slots=True)
class Rule:
    """Maps a finding (type, count, confidence) or a raw score to an action."""

    name: str
    action: Action
    finding_type: str | None = None
    detector: str | None = None
    min_count: int = 1
    min_confidence: Confidence = Confidence.LOW
    score_key: str | None = None
    above: float = 0.0
    direction: Direction | None = None


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    outbound: Thresholds
    inbound: Thresholds
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    name: str
    enabled: bool
    required: bool
    weight: float
    options: Options


# Finding types only an approver may release from the review interface ([web]).
HIGH_SEVERITY_TYPES = ["credit_card", "us_ssn", "iban", "private_key", "aws_access_key",
                       "api_token", "password"]


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The ``[web]`` section: the review interface (``mailwarden web``, docs/review.md)."""

    listen: str
    secure_cookies: bool
    idle_timeout_seconds: float
    session_max_seconds: float
    login_attempts: int
    login_window_seconds: float
    link_max_age_seconds: float
    proxy_hops: int
    helper_socket: str
    helper_users: tuple[str, ...]
    base_url: str
    high_severity_types: tuple[str, ...]
    allow_days: float


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    milter: MilterConfig
    metrics: MetricsConfig
    policy: PolicyConfig
    detectors: tuple[DetectorConfig, ...]
    model_dir: Path
    state_dir: Path
    timezone: str
    log_level: str
    # Sections of decision sinks ([audit], [notify], [quarantine]): each sink validates its own.
    sections: dict[str, Options]
    web: WebConfig | None = None
    # Pre-fork mode: the worker count and this worker's index (0 sends the alert mail of all),
    # set by the supervisor; 1 and 0 otherwise.
    workers: int = 1
    worker_index: int = 0


def load_config(path: str | Path | None = None, text: str | None = None,
                defaults: dict[str, Any] | None = None) -> Config:
    """Read and validate ``path`` (or ``text``); ``None`` for both means built-in defaults.
    ``defaults``, when given, collects every key read with its default (see :class:`Options`);
    detectors and sinks read their own keys when the engine is built."""
    label = str(path) if path else "<defaults>"
    if text is None:
        text = Path(path).read_text(encoding="utf-8") if path else ""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(syntax)", str(exc), path=label) from None
    root = Options(data, "", LineFinder(text, label), defaults)
    config = _build(root, label)
    root.finish()
    return config


def resolve_model_dir(value: str) -> Path:
    """``[paths] model_dir``; empty (the default) means the models shipped inside the package."""
    if value:
        return Path(value)
    spec = importlib.util.find_spec("mailwarden.models")
    locations = list(spec.submodule_search_locations or ()) if spec else []
    if not locations:
        raise ConfigError("paths.model_dir", "unset, and the package ships no models")
    return Path(locations[0])


def _build(root: Options, label: str) -> Config:
    paths = root.section("paths")
    model_dir = resolve_model_dir(paths.get_str("model_dir", ""))
    state_dir = Path(paths.get_str("state_dir", "/var/lib/mailwarden"))
    paths.finish()
    log = root.section("logging")
    level = log.get_str("level", "info", ("debug", "info", "warning", "error"))
    timezone = log.get_str("timezone", "UTC")
    log.finish()
    return Config(
        path=label,
        milter=_milter(root.section("milter")),
        metrics=_metrics(root.section("metrics")),
        policy=_policy(root.section("policy")),
        detectors=_detectors(root.section("detectors")),
        model_dir=model_dir,
        state_dir=state_dir,
        timezone=timezone,
        log_level=level,
        sections={name: root.section(name) for name in SINK_SECTIONS},
        web=_web(root.section("web")),
    )


def _milter(opts: Options) -> MilterConfig:
    networks = []
    for value in opts.get_str_list("internal_networks", ["127.0.0.0/8", "::1/128"]):
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise opts.error("internal_networks", str(exc)) from None
    socket = opts.get_str("socket", DEFAULT_SOCKET)
    if not socket.startswith(("unix:", "local:", "inet:", "inet6:")):
        raise opts.error("socket", f"must look like unix:/path or inet:PORT@HOST, got {socket!r}")
    on_error = opts.get_str("on_error", "accept", ("accept", "tempfail"))
    fallback = opts.get_str("quarantine_fallback", "tempfail", QUARANTINE_FALLBACKS)
    config = MilterConfig(
        socket=socket,
        mode=opts.get_str("mode", "observe", MODES),
        on_error=Action(on_error),
        timeout_seconds=opts.get_number("timeout_seconds", 5.0, minimum=0.05),
        max_scan_bytes=opts.get_int("max_scan_bytes", 10 * 1024 * 1024, minimum=1024),
        spool_bytes=opts.get_int("spool_bytes", 1024 * 1024, minimum=0),
        internal_networks=tuple(networks),
        add_headers=opts.get_bool("add_headers", True),
        workers=opts.get_int("workers", 8, minimum=1),
        processes=opts.get_int("processes", 0, minimum=0),
        name=opts.get_str("name", "mailwarden"),
        quarantine_fallback=Action(fallback),
    )
    opts.finish()
    return config


def _metrics(opts: Options) -> MetricsConfig:
    config = MetricsConfig(
        enabled=opts.get_bool("enabled", True),
        address=opts.get_str("address", "127.0.0.1"),
        port=opts.get_int("port", 9899, minimum=0),
    )
    opts.finish()
    return config


def _web(opts: Options) -> WebConfig:
    listen = opts.get_str("listen", "127.0.0.1:8025")
    try:
        validate_listen(listen)
    except ConfigError as exc:
        raise opts.error("listen", exc.reason) from None
    config = WebConfig(
        listen=listen,
        secure_cookies=opts.get_bool("secure_cookies", False),
        idle_timeout_seconds=opts.get_number("idle_timeout_seconds", 900.0, minimum=30.0),
        session_max_seconds=opts.get_number("session_max_seconds", 28800.0, minimum=60.0),
        login_attempts=opts.get_int("login_attempts", 5, minimum=1),
        login_window_seconds=opts.get_number("login_window_seconds", 300.0, minimum=1.0),
        link_max_age_seconds=opts.get_number("link_max_age_seconds", 86400.0, minimum=60.0),
        proxy_hops=opts.get_int("proxy_hops", 0, minimum=0),
        helper_socket=opts.get_str("helper_socket", ""),
        helper_users=tuple(opts.get_str_list("helper_users", ["mailwarden"])),
        base_url=opts.get_str("base_url", "").rstrip("/"),
        high_severity_types=tuple(opts.get_str_list("high_severity_types",
                                                    HIGH_SEVERITY_TYPES)),
        allow_days=opts.get_number("allow_days", 45.0, minimum=0.0),
    )
    opts.finish()
    return config


def validate_listen(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) for ``[web] listen`` and ``--listen``."""
    host, sep, port = spec.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("listen", f"must look like HOST:PORT (e.g. 127.0.0.1:8025), got {spec!r}")
    return host, int(port)


def _thresholds(opts: Options, quarantine: float | None, reject: float | None) -> Thresholds:
    config = Thresholds(
        quarantine=opts.get_float("quarantine", quarantine, minimum=0.0),
        tempfail=opts.get_float("tempfail", None, minimum=0.0),
        reject=opts.get_float("reject", reject, minimum=0.0),
    )
    opts.finish()
    return config


def _policy(opts: Options) -> PolicyConfig:
    outbound = _thresholds(opts.section("outbound"), 5.0, 10.0)
    inbound = _thresholds(opts.section("inbound"), None, None)
    rules_raw = opts.raw("rules", [])
    if not isinstance(rules_raw, list):
        raise opts.error("rules", "must be an array of tables ([[policy.rules]])")
    rules = tuple(_rule(opts, i, r) for i, r in enumerate(rules_raw))
    opts.finish()
    return PolicyConfig(outbound=outbound, inbound=inbound, rules=rules)


def _rule(parent: Options, index: int, raw: Any) -> Rule:
    if not isinstance(raw, dict):
        raise parent.error(f"rules[{index}]", "must be a table")
    opts = parent.child(raw, f"{parent.prefix}.rules")
    name = opts.get_str("name", f"rule{index + 1}")
    finding_type = opts.get_opt_str("type")
    score_key = opts.get_opt_str("score")
    if (finding_type is None) == (score_key is None):
        raise opts.error("type", f"rule {name!r} needs exactly one of 'type' or 'score'")
    direction = opts.get_opt_str("direction")
    try:
        rule = Rule(
            name=name,
            action=Action.parse(opts.get_str("action", "quarantine")),
            finding_type=finding_type,
            detector=opts.get_opt_str("detector"),
            min_count=opts.get_int("min_count", 1, minimum=1),
            min_confidence=Confidence(
                opts.get_str("min_confidence", "low", ("low", "medium", "high"))
            ),
            score_key=score_key,
            above=opts.get_number("above", 0.0),
            direction=Direction(direction) if direction else None,
        )
    except ValueError as exc:
        raise opts.error("action" if "action" in str(exc) else "direction", str(exc)) from None
    opts.finish()
    return rule


def _detectors(opts: Options) -> tuple[DetectorConfig, ...]:
    from mailwarden.detectors.base import registrations

    known = registrations()
    out = []
    for name in sorted(set(known) | set(opts.keys())):
        if name not in known:
            raise opts.error(name, f"unknown detector (known: {', '.join(sorted(known))})")
        section = opts.section(name)
        out.append(
            DetectorConfig(
                name=name,
                enabled=section.get_bool("enabled", known[name].default_enabled),
                required=section.get_bool("required", False),
                weight=section.get_number("weight", 1.0, minimum=0.0),
                options=section.without(ENGINE_KEYS),
            )
        )
    opts.finish()
    return tuple(out)


def validate_socket(spec: str) -> str:
    if not spec.startswith(("unix:", "local:", "inet:", "inet6:")):
        raise ConfigError("--socket", f"must look like unix:/path or inet:PORT@HOST, got {spec!r}")
    return spec


def apply_overrides(config: Config, overrides: dict[str, object]) -> Config:
    """Command-line flags (``--socket``, ``--mode``, ``--metrics-port``) win over the file."""
    milter = config.milter
    if overrides.get("socket"):
        milter = replace(milter, socket=str(overrides["socket"]))
    if overrides.get("mode"):
        milter = replace(milter, mode=str(overrides["mode"]))
    metrics = config.metrics
    if overrides.get("metrics_port") is not None:
        metrics = replace(metrics, port=int(str(overrides["metrics_port"])), enabled=True)
    workers = int(str(overrides.get("workers") or 1))
    index = int(str(overrides.get("worker_index") or 0))
    return replace(config, milter=milter, metrics=metrics, workers=workers, worker_index=index)


AUTO_PER_CPU = 2  # processes = 0: two workers per usable CPU (measured, docs/performance.md)
AUTO_MAX = 8


def worker_processes(config: Config, overrides: dict[str, object]) -> int:
    """How many processes serve: ``--processes`` or ``[milter] processes``. 1 is the
    single-process daemon, more is pre-fork mode; 0 (the default) means two per usable CPU, at
    most eight: each process runs its callbacks under one interpreter lock, and a worker that
    mostly serves one message at a time spends less CPU per message than one juggling several."""
    raw = overrides.get("processes")
    value = int(str(raw)) if raw is not None else config.milter.processes
    if value <= 0:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        value = min(AUTO_PER_CPU * cpus, AUTO_MAX)
    return max(1, value)
