"""``mailwarden postfix-setup``: add mailwarden to the milters a Postfix already has.

Appending the example main.cf to ``/etc/postfix/main.cf`` replaces an existing ``smtpd_milters``
(opendkim, opendmarc, ...): Postfix keeps the last definition and only warns "overriding earlier
entry". This command reads the parameters as they are (``postconf -h``, unexpanded), puts
mailwarden's milter in front of the ones already listed (``--last`` appends it), leaves a
``non_smtpd_milters`` that follows ``$smtpd_milters`` alone, extends master.cf services that set
their own non-empty ``smtpd_milters``, and adds a copy of the shipped ``smtp_header_checks``
table (in Postfix's configuration directory) that keeps ``X-Mailwarden-*`` headers from leaving
over SMTP. It writes with ``postconf -e`` (and ``-P -e``), only what changes, so running it
twice changes nothing. Registered through ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailwarden.quarantine.mta import Runner, check, run_command

HEADER_CHECKS = "/usr/share/mailwarden/postfix/smtp_header_checks"
# The copy Postfix reads, in its own configuration directory: it belongs to the administrator and
# outlives the package (smtp(8) stops delivering when a table in smtp_header_checks is missing).
HEADER_CHECKS_COPY = "mailwarden_smtp_header_checks"
SPOOL = "/var/spool/postfix"
TIMEOUTS = "connect_timeout=10s, command_timeout=30s, content_timeout=60s"


class SetupError(Exception):
    """Postfix cannot be configured as asked; the message is safe to print."""


def split_list(value: str) -> list[str]:
    """A Postfix list (whitespace or commas) whose ``{ ... }`` groups stay one item."""
    items, current, depth = [], "", 0
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(0, depth - 1)
        if depth == 0 and (char.isspace() or char == ","):
            if current.strip():
                items.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        items.append(current.strip())
    return items


def milter_address(item: str) -> str:
    """``{ unix:/x.sock, default_action=accept }`` -> ``unix:/x.sock``."""
    if item.startswith("{"):
        inner = split_list(item.strip("{} \t"))
        return inner[0] if inner else ""
    return item


def postfix_address(socket: str) -> str:
    """mailwarden's ``[milter] socket`` as Postfix names it from its chroot (Debian default)."""
    if socket.startswith("inet:"):
        port, _, host = socket[5:].partition("@")
        return f"inet:{host or '127.0.0.1'}:{port}"
    path = socket.removeprefix("unix:").removeprefix("local:")
    if path.startswith(SPOOL + "/"):
        return "unix:" + path[len(SPOOL):]
    return "unix:" + path


def milter_entry(address: str, default_action: str) -> str:
    return f"{{ {address}, default_action={default_action}, {TIMEOUTS} }}"


def with_milter(value: str, address: str, entry: str, last: bool) -> str | None:
    """The new list, or None when ``entry`` is already in it as it is. An entry for ``address``
    with other settings (``default_action=accept`` on the switch to enforce) is replaced in place,
    so the other milters and the order stay as they are."""
    items = split_list(value)
    mine = [i for i, item in enumerate(items) if milter_address(item) == address]
    if mine:
        if all(_bare(items[i]) == _bare(entry) for i in mine):  # master.cf has no spaces
            return None
        items = [entry if i in mine else item for i, item in enumerate(items)]
        return ", ".join(dict.fromkeys(items))
    items = [*items, entry] if last else [entry, *items]
    return ", ".join(items)


def _bare(item: str) -> str:
    return "".join(item.split())


def follows_smtpd(value: str) -> bool:
    return "$smtpd_milters" in value or "${smtpd_milters}" in value or \
        "$(smtpd_milters)" in value


@dataclass(frozen=True, slots=True)
class Change:
    parameter: str  # main.cf name, or "service/type/name" for master.cf
    old: str
    new: str


class Postconf:
    def __init__(self, config_dir: str = "", runner: Runner = run_command):
        self._conf = ["-c", config_dir] if config_dir else []
        self._run = runner

    def get(self, name: str) -> str:
        argv = ["postconf", *self._conf, "-h", name]
        return check(self._run(argv), argv, f"reading {name}").stdout.decode().strip()

    def service_params(self) -> dict[str, str]:
        """master.cf ``-o`` overrides: ``service/type/name`` -> value."""
        argv = ["postconf", *self._conf, "-P"]
        out: dict[str, str] = {}
        for line in check(self._run(argv), argv, "reading master.cf").stdout.decode().splitlines():
            key, sep, value = line.partition(" = ")
            if sep:
                out[key.strip()] = value.strip()
            elif line.rstrip().endswith(" ="):
                out[line.rstrip()[:-2].strip()] = ""
        return out

    def set(self, change: Change) -> None:
        flag = ["-P"] if change.parameter.count("/") == 2 else []
        argv = ["postconf", *self._conf, *flag, "-e", f"{change.parameter}={change.new}"]
        check(self._run(argv), argv, f"setting {change.parameter}")


def plan(postconf: Postconf, address: str, entry: str, last: bool,
         header_checks: str | None) -> tuple[list[Change], list[str]]:
    """What to change, and notes for the operator (nothing is written here)."""
    changes, notes = [], []
    smtpd = postconf.get("smtpd_milters")
    new = with_milter(smtpd, address, entry, last)
    if new is not None:
        changes.append(Change("smtpd_milters", smtpd, new))
    non_smtpd = postconf.get("non_smtpd_milters")
    if not follows_smtpd(non_smtpd):
        new = with_milter(non_smtpd, address, entry, last)
        if new is not None:
            changes.append(Change("non_smtpd_milters", non_smtpd, new))
    for key, value in sorted(postconf.service_params().items()):
        if not key.endswith("/smtpd_milters") or follows_smtpd(value):
            continue
        if not value:
            notes.append(f"{key.rsplit('/', 1)[0]} opts out of milters (-o smtpd_milters=): "
                         "its mail is not scanned")
            continue
        new = with_milter(value, address, entry, last)
        if new is not None:  # postconf -P -e takes no whitespace (master.cf -o syntax)
            changes.append(Change(key, value, ",".join(
                "".join(item.split()) for item in split_list(new))))
    if header_checks is not None:
        changes += _header_change(postconf, header_checks)
    return changes, notes


def _header_change(postconf: Postconf, path: str) -> list[Change]:
    table = f"regexp:{path}"
    current = postconf.get("smtp_header_checks")
    if table in split_list(current):
        return []
    return [Change("smtp_header_checks", current, ", ".join([*split_list(current), table]))]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "postfix-setup", help="add mailwarden to Postfix's milters, keeping the others")
    p.add_argument("--config", help="mailwarden's TOML config (its [milter] socket)")
    p.add_argument("--milter", metavar="ADDRESS",
                   help="the address as Postfix writes it (default: from the socket, relative "
                        "to Postfix's chroot, e.g. unix:/mailwarden/mailwarden.sock)")
    p.add_argument("--postfix-config", metavar="DIR", default="", help="postconf -c DIR")
    p.add_argument("--last", action="store_true",
                   help="after the milters already listed (default: first, so a refused "
                        "message is not signed for nothing)")
    p.add_argument("--default-action", default="accept", choices=("accept", "tempfail"),
                   help="what Postfix does when mailwarden does not answer (see "
                        "docs/deployment.md, \"Fail-open and fail-closed\")")
    p.add_argument("--header-checks", default=HEADER_CHECKS, metavar="FILE",
                   help="the table that strips X-Mailwarden-* on SMTP delivery, copied to "
                        f"Postfix's config directory as {HEADER_CHECKS_COPY} if not there yet")
    p.add_argument("--keep-headers", action="store_true",
                   help="let X-Mailwarden-* headers leave with outbound mail")
    p.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    p.set_defaults(func=cmd_postfix_setup)


def _header_table(postconf: Postconf, source: Path | None, dry_run: bool) -> str | None:
    """The copy of ``source`` in Postfix's configuration directory (made when missing; an
    existing one is the administrator's and stays as it is)."""
    if source is None:
        return None
    copy = Path(postconf.get("config_directory")) / HEADER_CHECKS_COPY
    if not copy.exists() and not dry_run:
        copy.write_bytes(source.read_bytes())
        copy.chmod(0o644)
        print(f"copied {source} to {copy}")
    return str(copy)


def cmd_postfix_setup(args: argparse.Namespace) -> int:
    from mailwarden.cli import config_path
    from mailwarden.config import load_config
    from mailwarden.quarantine.mta import MtaError

    address = args.milter or postfix_address(load_config(config_path(args)).milter.socket)
    source = None if args.keep_headers else Path(args.header_checks)
    if source is not None and not source.is_file():
        print(f"mailwarden: {source} missing (or use --keep-headers)", file=sys.stderr)
        return 2
    postconf = Postconf(args.postfix_config)
    try:
        header_checks = _header_table(postconf, source, args.dry_run)
        changes, notes = plan(postconf, address, milter_entry(address, args.default_action),
                              args.last, header_checks)
        for change in changes:
            if not args.dry_run:
                postconf.set(change)
            print(f"{change.parameter} = {change.new}    (was: {change.old or 'empty'})")
    except MtaError as exc:
        print(f"mailwarden: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}")
    if not changes:
        print(f"nothing to change: Postfix already uses {address}")
    elif not args.dry_run:
        print("now run: postfix check && postfix reload")
    return 0
