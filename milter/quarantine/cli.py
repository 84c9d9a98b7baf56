"""``mailwarden quarantine``: review held mail from the command line.

Subcommands ``list``, ``show``, ``release``, ``delete``, ``expire`` (for a systemd timer or cron),
``reconcile``, ``allowlist`` and ``feedback``, registered through ``COMMAND_MODULES`` in
:mod:`mailwarden.cli`. They read the ``[quarantine]`` section of the same config file as the daemon,
open the quarantine store and the MTA backend, and hand over to :mod:`mailwarden.quarantine.review`.
Addresses shown come from the MTA's queue (the store keeps only hashes); a body is printed only with
``--body``. Exit status: 0 success, 1 when any message could not be handled (not found, not
permitted, MTA error), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mailwarden.quarantine import review
from mailwarden.quarantine.mta import MailQueue, MtaError, PostfixQueue, Runner, run_command
from mailwarden.quarantine.sendmail import SendmailQueue
from mailwarden.quarantine.sink import QuarantineSettings, read_settings
from mailwarden.quarantine.store import QuarantineStore, StoreError

STATES = ("held", "released", "deleted", "expired", "released_externally", "gone", "all")
_AGE_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "": 86400}


def age(text: str) -> float:
    """``90m``, ``12h``, ``3d``, ``2w`` (a bare number is days) in seconds."""
    match = _AGE_RE.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (e.g. 30m, 12h, 3d, 2w)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("quarantine", help="review held mail: list, show, release, "
                                   "delete, expire")
    sub = parser.add_subparsers(dest="quarantine_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML config file (as for `mailwarden run`)")
    common.add_argument("--mta", choices=("postfix", "sendmail"), help="override [quarantine] mta")
    common.add_argument("--postfix-config", metavar="DIR", help="Postfix config directory (-c)")
    common.add_argument("--sendmail-config", metavar="FILE", help="Sendmail config file (-C)")

    p = sub.add_parser("list", parents=[common], help="held messages and why they were held")
    p.add_argument("--state", choices=STATES, default="held")
    p.add_argument("--older-than", type=age, metavar="AGE", help="e.g. 12h, 3d")
    p.add_argument("--newer-than", type=age, metavar="AGE")
    p.add_argument("--detector", help="only messages this detector flagged")
    p.add_argument("--sender-domain", metavar="DOMAIN")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=[common], help="record, findings and headers")
    p.add_argument("id", metavar="QUEUE_ID|REF")
    p.add_argument("--body", action="store_true", help="also print the message body")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("release", parents=[common], help="deliver held messages")
    p.add_argument("ids", nargs="+", metavar="QUEUE_ID|REF")
    p.add_argument("--false-positive", action="store_true",
                   help="keep features and scores as feedback for training")
    p.add_argument("--allow", choices=("pair", "domain"),
                   help="with --false-positive: let this sender mail these recipients (pair) or "
                        "their domains (domain) from now on")
    p.add_argument("--any-sender", action="store_true",
                   help="with --allow domain: for every sender, not only this one")
    p.add_argument("--note", default="", help="kept in the audit trail")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("delete", parents=[common], help="delete held messages")
    p.add_argument("ids", nargs="+", metavar="QUEUE_ID|REF")
    p.add_argument("--confirmed", action="store_true",
                   help="a confirmed leak: keep features and scores as feedback")
    p.add_argument("--note", default="")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("expire", parents=[common],
                       help="apply the expiry policy to unreviewed messages (timer/cron)")
    p.add_argument("--dry-run", action="store_true", help="say what would expire")
    p.set_defaults(func=cmd_expire)

    p = sub.add_parser("reconcile", parents=[common],
                       help="mark records whose message left the hold queue outside mailwarden")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("allowlist", parents=[common], help="reviewer allow-list entries")
    p.add_argument("--remove", type=int, metavar="ENTRY_ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_allowlist)

    p = sub.add_parser("feedback", parents=[common],
                       help="reviewed messages' features and labels, as JSON lines")
    p.set_defaults(func=cmd_feedback)


@dataclasses.dataclass
class Context:
    settings: QuarantineSettings
    store: QuarantineStore
    queue: MailQueue


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[Context]:
    from mailwarden.cli import config_path
    from mailwarden.config import load_config

    config = load_config(config_path(args))
    settings = read_settings(config.sections["quarantine"], config)
    settings = dataclasses.replace(
        settings, mta=args.mta or settings.mta,
        postfix_config=args.postfix_config or settings.postfix_config,
        sendmail_config=args.sendmail_config or settings.sendmail_config)
    queue = make_queue(settings.mta, settings.postfix_config, settings.sendmail_config,
                       settings.sendmail_path)
    store = QuarantineStore(settings.database)
    try:
        yield Context(settings, store, queue)
    finally:
        store.close()


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Store, MTA and review errors become one clear line on stderr and exit status 1."""

    def inner(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (StoreError, MtaError, review.ReviewError) as exc:
            print(f"mailwarden: {exc}", file=sys.stderr)
            return 1

    return inner


@guarded
def cmd_list(args: argparse.Namespace) -> int:
    from mailwarden.quarantine.format import entry_json, entry_line, header_line

    status = 0
    with opened(args) as ctx:
        state = None if args.state == "all" else args.state
        now = time.time()
        try:
            joined = review.entries(ctx.store, ctx.queue, state)
        except MtaError as exc:  # still show what the store knows, and say why the MTA is not
            print(f"mailwarden: {exc}; showing mailwarden's records only", file=sys.stderr)
            joined, status = review.entries(ctx.store, None, state), 1
        items = review.select(joined, now, args.older_than, args.newer_than, args.detector,
                              args.sender_domain)
    if args.json:
        for item in items:
            print(json.dumps(entry_json(item, now), sort_keys=True))
        return status
    print(header_line())
    for item in items:
        print(entry_line(item, now))
    print(f"{len(items)} message(s)")
    return status


@guarded
def cmd_show(args: argparse.Namespace) -> int:
    from mailwarden.quarantine.format import show_json, show_text

    with opened(args) as ctx:
        record = ctx.store.find(args.id)
        queue_id = record.queue_id if record else args.id
        queued = ctx.queue.messages().get(queue_id)
        if record is None and (queued is None or args.id.upper().startswith("MW-")):
            raise review.ReviewError(f"{args.id}: no record and not in the MTA's queue")
        content = None
        if queued is not None:
            content = ctx.queue.content(queue_id) if args.body else ctx.queue.headers(queue_id)
    entry = review.Entry(record, queued)
    if args.json:
        print(json.dumps(show_json(entry, content, args.body, time.time()), sort_keys=True))
    else:
        sys.stdout.write(show_text(entry, content, args.body, time.time()))
    return 0


def _each(args: argparse.Namespace, act: Callable[[Context, str], str]) -> int:
    status = 0
    with opened(args) as ctx:
        for key in args.ids:
            try:
                print(act(ctx, key))
            except (MtaError, review.ReviewError) as exc:
                print(f"mailwarden: {key}: {exc}", file=sys.stderr)
                status = 1
    return status


@guarded
def cmd_release(args: argparse.Namespace) -> int:
    if args.allow and not args.false_positive:
        raise review.ReviewError("--allow needs --false-positive")
    if args.any_sender and args.allow != "domain":
        raise review.ReviewError("--any-sender needs --allow domain")
    who = review.actor()

    def act(ctx: Context, key: str) -> str:
        done = review.release(ctx.store, ctx.queue, key, who, args.false_positive, args.allow,
                              args.any_sender, args.note)
        extra = " as a false positive" if args.false_positive else ""
        extra += f", allow list: {args.allow}" if args.allow else ""
        return f"released {done.queue_id} ({done.ref}){extra}"

    return _each(args, act)


@guarded
def cmd_delete(args: argparse.Namespace) -> int:
    who = review.actor()

    def act(ctx: Context, key: str) -> str:
        done = review.delete(ctx.store, ctx.queue, key, who, args.confirmed, args.note)
        return f"deleted {done.queue_id} ({done.ref})" + (" as a confirmed leak"
                                                          if args.confirmed else "")

    return _each(args, act)


@guarded
def cmd_expire(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        if ctx.settings.expire_after_days <= 0:  # records still follow the hold queue
            for found in review.reconcile(ctx.store, ctx.queue.messages()):
                print(f"{found.record.queue_id} ({found.record.ref}): {found.state}")
            print("expiry disabled ([quarantine] expire_after_days = 0)")
            return 0
        done = review.expire(ctx.store, ctx.queue, ctx.settings, review.actor(),
                             dry_run=args.dry_run)
    verb = "would expire" if args.dry_run else "expired"
    for item in done:
        print(f"{verb} {item.record.queue_id} ({item.record.ref}): {item.outcome}")
    print(f"{len(done)} record(s) past {ctx.settings.expire_after_days:g} days")
    return 0


@guarded
def cmd_reconcile(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        done = review.reconcile(ctx.store, ctx.queue.messages())
    for item in done:
        print(f"{item.record.queue_id} ({item.record.ref}): {item.state} (now {item.where})")
    print(f"{len(done)} record(s) reconciled with the {ctx.settings.mta} queue")
    return 0


@guarded
def cmd_allowlist(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        if args.remove is not None:
            if not ctx.store.remove_allow(args.remove, review.actor()):
                raise review.ReviewError(f"no allow-list entry #{args.remove}")
            print(f"removed allow-list entry #{args.remove}")
            return 0
        items = ctx.store.allow_entries()
    for entry in items:
        if args.json:
            print(json.dumps(dataclasses.asdict(entry), sort_keys=True))
        else:
            sender = "any sender" if entry.sender_hash == "*" else f"sender {entry.sender_hash}"
            print(f"#{entry.id} {entry.kind}: {sender} -> {entry.target} (from {entry.ref}, "
                  f"by {entry.actor} {time.strftime('%Y-%m-%d', time.localtime(entry.created))})")
    return 0


@guarded
def cmd_feedback(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        rows = ctx.store.feedback_rows()
    for row in rows:
        print(json.dumps(row, sort_keys=True))
    return 0


def make_queue(mta: str, postfix_config: str = "", sendmail_config: str = "",
               sendmail_path: str = "sendmail", runner: Runner = run_command) -> MailQueue:
    if mta == "postfix":
        return PostfixQueue(postfix_config, runner)
    if mta == "sendmail":
        return SendmailQueue(sendmail_config, sendmail_path, runner)
    raise MtaError(f"unknown MTA {mta!r} (expected postfix or sendmail)")
