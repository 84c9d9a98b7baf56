"""Commands of the review interface: ``web``, ``web-helper``, ``web-link`` and ``user``.

Registered through ``COMMAND_MODULES`` in :mod:`mailwarden.cli`. ``web`` serves the interface
with waitress (``[web] listen`` or ``--listen``, loopback by default); ``web-helper`` runs the
privileged helper on ``[web] helper_socket``; ``web-link REF`` prints a signed single-use link for
a notification mail; ``user add|list|remove|passwd`` manages accounts in ``<state_dir>/web.sqlite``
and reads passwords from standard input (one line), never from the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailwarden.config import Config, validate_listen
from mailwarden.options import ConfigError
from mailwarden.web.links import KEY_FILE

if TYPE_CHECKING:
    from mailwarden.web.accounts import Accounts

log = logging.getLogger("mailwarden.web")
ROLES = ("reviewer", "approver", "admin")  # mailwarden.web.accounts.ROLES (not imported here)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("web", help="serve the review web interface")
    p.add_argument("--config", help="TOML config file (as for `mailwarden run`)")
    p.add_argument("--listen", metavar="HOST:PORT", type=_listen,
                   help="override [web] listen (default 127.0.0.1:8025)")
    p.add_argument("--helper-socket", metavar="PATH", help="override [web] helper_socket")
    p.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    p.set_defaults(func=cmd_web)
    p = subparsers.add_parser("web-helper", help="privileged helper for the web interface")
    p.add_argument("--config")
    p.add_argument("--socket", help="override [web] helper_socket")
    p.set_defaults(func=cmd_helper)
    p = subparsers.add_parser("web-link", help="print a signed single-use link to a held message")
    p.add_argument("--config")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--action", choices=("open", "release", "delete"), default="open")
    p.set_defaults(func=cmd_link)
    p = subparsers.add_parser("user", help="review interface accounts")
    sub = p.add_subparsers(dest="user_command", required=True)
    for name, text in (("add", "add a user (password on stdin)"), ("list", "list users"),
                       ("remove", "remove a user"), ("passwd", "set a password (stdin)")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--config")
        if name != "list":
            q.add_argument("name", metavar="NAME")
        if name == "add":
            q.add_argument("--role", choices=ROLES, required=True)
        q.set_defaults(func=cmd_user)


def _listen(value: str) -> str:
    try:
        validate_listen(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.reason) from None
    return value


def _config(args: argparse.Namespace) -> Config:
    from mailwarden.cli import config_path
    from mailwarden.config import load_config

    return load_config(config_path(args))


def accounts_for(config: Config) -> Accounts:
    from mailwarden.web.accounts import FILENAME, Accounts

    return Accounts(Path(config.state_dir) / FILENAME)


def backend_for(config: Config) -> Any:
    from mailwarden.quarantine.cli import make_queue
    from mailwarden.quarantine.sink import read_settings
    from mailwarden.web.backend import Direct, HelperClient

    assert config.web is not None
    if config.web.helper_socket:
        return HelperClient(config.web.helper_socket)
    s = read_settings(config.sections["quarantine"], config)
    return Direct(s, make_queue(s.mta, s.postfix_config, s.sendmail_config, s.sendmail_path))


def cmd_web(args: argparse.Namespace) -> int:
    import waitress

    from mailwarden.web.app import create_app
    from mailwarden.web.links import secret_key

    config = _config(args)
    assert config.web is not None
    changes = {k: v for k, v in (("listen", args.listen),
                                  ("helper_socket", args.helper_socket)) if v}
    config = dataclasses.replace(config, web=dataclasses.replace(config.web, **changes))
    assert config.web is not None
    host, port = validate_listen(config.web.listen)
    key = secret_key(Path(config.state_dir) / KEY_FILE)
    app = create_app(config, backend_for(config), accounts_for(config), key)
    log.info("web: serving the review interface on http://%s:%d/", host, port)
    waitress.serve(app, host=host, port=port, threads=max(2, args.threads), ident="mailwarden",
                   channel_timeout=120, clear_untrusted_proxy_headers=True)
    return 0


def cmd_helper(args: argparse.Namespace) -> int:
    from mailwarden.web.backend import Direct
    from mailwarden.web.helper import serve

    config = _config(args)
    assert config.web is not None
    path = args.socket or config.web.helper_socket
    if not path:
        raise ConfigError("web.helper_socket", "set it (or --socket) to run the helper")
    backend = backend_for(dataclasses.replace(
        config, web=dataclasses.replace(config.web, helper_socket="")))
    assert isinstance(backend, Direct)
    serve(Path(path), backend, config.web.helper_users)
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    from mailwarden.web.links import LinkError, make_url, secret_key

    config = _config(args)
    assert config.web is not None
    try:
        key = secret_key(Path(config.state_dir) / KEY_FILE)
        print(make_url(key, config.web.base_url, args.ref, args.action))
    except LinkError as exc:
        print(f"mailwarden: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    from mailwarden.web.accounts import AccountError

    accounts = accounts_for(_config(args))
    try:
        if args.user_command == "list":
            for name, role, _created in accounts.users():
                print(f"{name}\t{role}")
        elif args.user_command == "remove":
            accounts.remove(args.name)
            print(f"removed user {args.name}")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
            if args.user_command == "add":
                accounts.add(args.name, args.role, password)
                print(f"added user {args.name} ({args.role})")
            else:
                accounts.passwd(args.name, password)
                print(f"password of {args.name} changed")
    except AccountError as exc:
        print(f"mailwarden: {exc}", file=sys.stderr)
        return 1
    finally:
        accounts.close()
    return 0
