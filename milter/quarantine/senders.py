"""``mailwarden senders``: what the sending detector knows about a sender, and sender holds.

Subcommands ``list`` (held senders), ``show ADDR`` (learning state, the sender's own peaks, hold
state and its audit rows), ``clear ADDR`` (a reviewer lets the sender's new mail through again) and
``hold ADDR`` (a reviewer holds a sender by hand), registered through ``COMMAND_MODULES`` in
:mod:`mailwarden.cli`. They read ``[detectors.sending]`` of the same config file as the daemon and
open the same state store and hold registry (:mod:`mailwarden.detectors.sending.holds`; SQLite or
Redis), so a hold engaged by any milter of the organisation is seen and cleared here. ``ADDR`` is
the address or SASL login (hashed before use, as the detector does) or the 24-hex-digit key shown by
``list``. Messages already in the MTA's hold queue stay there: release them with ``mailwarden
quarantine``. Exit status: 0 success, 1 sender not found / not held, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mailwarden.config import Config
from mailwarden.detectors.base import DetectorContext
from mailwarden.detectors.sending.baseline import (
    TRUST_DAYS,
    TRUST_MESSAGES,
    learning_state,
    peaks_of,
)
from mailwarden.detectors.sending.hold import engage, held_since, release
from mailwarden.detectors.sending.holds import HoldRecord, HoldRegistry, mask_identity
from mailwarden.detectors.sending.profile import Profile
from mailwarden.detectors.sending.state import StateStore, StoreUnavailable, Update, sender_key
from mailwarden.options import ConfigError

_KEY_RE = re.compile(r"^[0-9a-f]{24}$")


@dataclass
class Opened:
    store: StateStore
    holds: HoldRegistry


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("senders", help="sending baselines and sender holds: list, "
                                   "show, clear, hold")
    sub = parser.add_subparsers(dest="senders_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML config file (as for `mailwarden run`)")
    common.add_argument("--json", action="store_true", help="JSON output")
    p = sub.add_parser("list", parents=[common], help="held senders")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", parents=[common], help="learning state, peaks and hold of one "
                       "sender")
    p.add_argument("sender", help="address, SASL login or key")
    p.set_defaults(func=cmd_show)
    for name, func, text in (("clear", cmd_clear, "let a held sender's new mail through"),
                             ("hold", cmd_hold, "hold every further message of a sender")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("sender", help="address, SASL login or key")
        p.add_argument("--reviewer", default=None, help="who (default: the login name)")
        p.add_argument("--reason", default="", help="recorded in the audit row")
        p.set_defaults(func=func)


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[Opened]:
    from mailwarden.cli import config_path
    from mailwarden.config import load_config

    with open_sending(load_config(config_path(args))) as ctx:
        yield ctx


@contextmanager
def open_sending(config: Config) -> Iterator[Opened]:
    """The sending detector's state store and hold registry, as the daemon opens them (the
    CLI here and the review interface's sender incidents)."""
    from mailwarden.detectors.sending.settings import open_holds, open_store, read_settings

    section = next((d for d in config.detectors if d.name == "sending"), None)
    if section is None:
        raise ConfigError("detectors.sending", "the sending detector is not configured")
    context = DetectorContext(model_dir=config.model_dir, state_dir=config.state_dir,
                              run_mode="milter", timezone=config.timezone)
    settings = read_settings(section.options, context)
    store = open_store(settings, context)
    holds = open_holds(settings, context)
    assert holds is not None  # milter mode always has a registry
    try:
        yield Opened(store, holds)
    except StoreUnavailable as exc:  # the CLI's OSError path: exit status 1, a clear message
        raise OSError(f"sending state: {exc}") from exc
    finally:
        store.close()
        holds.close()


def key_of(sender: str) -> str:
    text = sender.strip().lower()
    return text if _KEY_RE.match(text) else sender_key(text)


def _label(sender: str, key: str) -> str:
    return key if _KEY_RE.match(sender.strip().lower()) else mask_identity(sender)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def cmd_list(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        records = ctx.holds.all()
    if args.json:
        for r in records:
            print(json.dumps({"key": r.key, "sender": r.label, "since": r.since,
                              "reason": r.reason}))
        return 0
    if not records:
        print("no sender is held")
    for r in records:
        print(f"{r.key}  {r.label:30s}  held since {_when(r.since)}  {r.reason}")
    return 0


def describe(profile: Profile, now: float) -> dict[str, Any]:
    """What ``show`` says about one profile (no addresses: the profile holds none)."""
    trusted, messages, days = learning_state(profile, now)
    return {
        "messages": messages, "days_seen": round(days, 1),
        "baseline": "trusted" if trusted else "learning",
        "learning": {"messages_needed": TRUST_MESSAGES, "days_needed": TRUST_DAYS,
                     "progress": round(min(1.0, messages / TRUST_MESSAGES,
                                           days / TRUST_DAYS), 2)},
        "usual_peaks": {k: round(v, 1) for k, v in peaks_of(profile, now).items()},
        "usual_hours": _usual_hours(profile),
        "last_message": _when(profile.last) if profile.last else None,
        "held_since": held_since(profile),
    }


def _usual_hours(profile: Profile) -> list[int]:
    total = sum(profile.hours) or 1.0
    return [h for h, v in enumerate(profile.hours) if v / total >= 0.05]


def cmd_show(args: argparse.Namespace) -> int:
    key = key_of(args.sender)
    with opened(args) as ctx:
        blob = ctx.store.get(key)
        record = ctx.holds.get(key)
        events = ctx.holds.events(key)
    if blob is None and record is None and not events:
        print(f"mailwarden: no state for {_label(args.sender, key)}", file=sys.stderr)
        return 1
    profile = Profile.decode(blob)
    info = describe(profile, profile.last or time.time())
    info.update(key=key, sender=_label(args.sender, key),
                hold=None if record is None else {"since": _when(record.since),
                                                   "reason": record.reason},
                audit=[{"at": _when(e.at), "event": e.event, "by": e.actor, "detail": e.detail}
                       for e in events])
    if args.json:
        print(json.dumps(info, sort_keys=True))
        return 0
    for name, value in info.items():
        print(f"{name:14s} {json.dumps(value) if isinstance(value, dict | list) else value}")
    return 0


def _set_hold(store: StateStore, key: str, at: float, hold: bool) -> bool:
    def change(blob: bytes | None) -> tuple[Update, bool]:
        profile = Profile.decode(blob)
        changed = release(profile) if not hold else held_since(profile) is None
        if hold and changed:
            engage(profile, at)
        return Update(profile.encode(), max(profile.last, at) if hold else profile.last or at,
                      None), changed

    return store.transact(key, change)


def clear_hold(ctx: Opened, key: str, reviewer: str, reason: str) -> bool:
    """Clear a sender hold (registry, audit event and the profile's flag); False if not held."""
    now = time.time()
    listed = ctx.holds.remove(key, now, reviewer, reason)
    flagged = ctx.store.get(key) is not None and _set_hold(ctx.store, key, now, hold=False)
    return listed or flagged


def cmd_clear(args: argparse.Namespace) -> int:
    key = key_of(args.sender)
    reviewer = args.reviewer or getpass.getuser()
    with opened(args) as ctx:
        cleared = clear_hold(ctx, key, reviewer, args.reason)
    if not cleared:
        print(f"mailwarden: {_label(args.sender, key)} is not held", file=sys.stderr)
        return 1
    print(f"cleared {_label(args.sender, key)}: new mail from this sender is scored again")
    return 0


def cmd_hold(args: argparse.Namespace) -> int:
    key, now = key_of(args.sender), time.time()
    reviewer = args.reviewer or getpass.getuser()
    label = _label(args.sender, key)
    with opened(args) as ctx:
        _set_hold(ctx.store, key, now, hold=True)
        new = ctx.holds.put(HoldRecord(key, label, now, args.reason or "held by a reviewer"),
                            reviewer)
    print(f"{'held' if new else 'already held'}: {label}")
    return 0


__all__ = ["add_parser", "describe", "key_of"]
