"""The ``mailwarden`` command line: ``run``, ``check``, ``score``, ``replay`` and friends.

This is the front door for operators and tests. ``run`` hands over to :mod:`mailwarden.mta.daemon`;
``check`` loads the config and every model and says what is enabled; ``score`` and ``replay`` push
files through the same engine the milter uses (see :mod:`mailwarden.files.offline`). Exit status: 0
success, 1 runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mailwarden.config import (
    DEFAULT_PATH,
    Config,
    apply_overrides,
    validate_socket,
    worker_processes,
)
from mailwarden.engine import Engine
from mailwarden.files import offline
from mailwarden.metrics import Metrics
from mailwarden.options import ConfigError

# Modules under mailwarden that add subcommands: each has ``add_parser(subparsers) -> None`` and
# sets ``func`` (``args -> int``) on its parser.
COMMAND_MODULES: tuple[str, ...] = (
    "training.cli", "report.page", "quarantine.cli", "quarantine.senders", "mta.postfix_setup",
    "web.commands")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        status: int = args.func(args)
    except ConfigError as exc:
        print(f"mailwarden: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mailwarden score ... | head`
        sys.stderr.close()
        return 0
    except OSError as exc:
        print(f"mailwarden: {exc}", file=sys.stderr)
        return 1
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailwarden", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the milter daemon")
    _config_arg(run)
    run.add_argument("--socket", type=_socket_spec, help="unix:/path or inet:PORT@HOST")
    run.add_argument("--mode", choices=("observe", "enforce"))
    run.add_argument("--metrics-port", type=int)
    run.add_argument("--processes", type=_processes, metavar="N",
                     help="worker processes (0: two per usable CPU, at most 8; 1: one process)")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate the config and load every model")
    _config_arg(check)
    check.set_defaults(func=cmd_check)

    for name, func, text in (
        ("score", cmd_score, "score messages without an MTA (stateless)"),
        ("replay", cmd_replay, "replay messages in Date order through the full pipeline"),
    ):
        p = sub.add_parser(name, help=text)
        _config_arg(p)
        p.add_argument("--json", action="store_true", help="one JSON object per message")
        p.add_argument("--direction", choices=("outbound", "inbound"), default="outbound")
        p.add_argument("--explain", action="store_true",
                       help="after each message, what each detector added to the total and why "
                            "the verdict (scores add up across detectors)")
        p.add_argument("paths", nargs="+", metavar="PATH")
        p.set_defaults(func=func)
    for module in COMMAND_MODULES:
        importlib.import_module(f"mailwarden.{module}").add_parser(sub)
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help=f"TOML config file (default: {DEFAULT_PATH} if present, else built-in)"
    )


def _socket_spec(value: str) -> str:
    try:
        return validate_socket(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _processes(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {value!r}")
    return number


def config_path(args: argparse.Namespace) -> str | None:
    if args.config:
        return str(args.config)
    return str(DEFAULT_PATH) if DEFAULT_PATH.exists() else None


def cmd_run(args: argparse.Namespace) -> int:
    from mailwarden.mta.main import run

    overrides = {"socket": args.socket, "mode": args.mode, "metrics_port": args.metrics_port,
                 "processes": args.processes}
    return run(config_path(args), overrides)


def cmd_check(args: argparse.Namespace) -> int:
    from mailwarden.config import load_config
    from mailwarden.state_owner import adopt_new, snapshot

    path = config_path(args)
    config = apply_overrides(load_config(path), {})
    before = snapshot(config.state_dir)
    try:
        return _check(path, config)
    finally:  # run as root: what the detectors created stays the daemon's user's
        adopt_new(config.state_dir, before)


def _check(path: str | None, config: Config) -> int:
    engine = Engine(config, Metrics())
    lost = [dd for dd in engine.disabled if dd.configured]
    try:
        print(f"config: {path or '<built-in defaults>'}")
        print(f"mode: {config.milter.mode}  socket: {config.milter.socket}  "
              f"on_error: {config.milter.on_error.value}  "
              f"processes: {worker_processes(config, {})}")
        for d in engine.detectors:
            info = " ".join(f"{k}={v}" for k, v in sorted(d.detector.describe().items()))
            print(f"detector {d.name}: enabled weight={d.weight:g} {info}".rstrip())
        for dd in engine.disabled:
            print(f"detector {dd.name}: {'UNAVAILABLE' if dd.configured else 'disabled'} "
                  f"({dd.reason})")
    finally:
        engine.close()
    for dd in lost:  # enabled in the configuration but cannot load: the check fails
        print(f"check: detector {dd.name} is enabled but cannot load: {dd.reason}",
              file=sys.stderr)
    return 1 if lost else 0


def cmd_score(args: argparse.Namespace) -> int:
    if args.explain:
        return explained(args, replay=False)
    return offline.run_offline(config_path(args), args.paths, args.direction, args.json,
                               replay=False, out=sys.stdout)


def cmd_replay(args: argparse.Namespace) -> int:
    if args.explain:
        return explained(args, replay=True)
    return offline.run_offline(config_path(args), args.paths, args.direction, args.json,
                               replay=True, out=sys.stdout)


def explained(args: argparse.Namespace, replay: bool) -> int:
    """``score``/``replay`` with ``--explain``: each message's line, then why (or, with
    ``--json``, the record with ``contributions`` and ``explanation``)."""
    import json

    from mailwarden.config import load_config
    from mailwarden.explain import contributions, explain_lines, explanation, thresholds_for
    from mailwarden.verdict import Direction

    config = load_config(config_path(args))
    direction = Direction(args.direction)
    thresholds = thresholds_for(config.policy, direction)
    engine = Engine(config, Metrics(), run_mode="replay" if replay else "score")
    try:
        for message, decision in offline.scan_all(engine, args.paths, direction, replay):
            record = offline.decision_record(message, decision)
            if args.json:
                record.update(contributions=contributions(decision.findings),
                              explanation=explanation(decision, thresholds))
                print(json.dumps(record, ensure_ascii=False, sort_keys=True))
                continue
            print(f"{record['verdict']:<10} {record['score']:7.2f}  {record['source']}")
            print("\n".join(explain_lines(decision, thresholds)))
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

