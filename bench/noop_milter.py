"""A no-op pymilter milter: the throughput ceiling the benchmark harness compares mailwarden to.

It sits beside the real filter in ``bench/run_bench.py`` and in the end-to-end Postfix runs: same
framework (pymilter over libmilter), same socket kinds, no work. It declares the callbacks a
content filter needs the way a minimal pymilter milter does: ``envfrom``, ``envrcpt``, ``header``,
``eoh`` and ``body`` marked ``@Milter.noreply`` (the MTA does not wait for them), ``eom`` answering
ACCEPT, and no ``connect``/``hello``/``data``/``unknown`` callbacks, so libmilter negotiates those
steps away. ``--reply`` drops ``@noreply`` (every step is answered) to measure what the no-reply
negotiation saves. Run: ``.venv/bin/python bench/noop_milter.py --socket unix:/run/noop.sock``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import Milter


class NoopMilter(Milter.Base):  # type: ignore[misc]
    """Accepts every message; the envelope and content callbacks are declared but do nothing."""

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def envfrom(self, mailfrom: str, *params: str) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def envrcpt(self, rcpt: str, *params: str) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def header(self, name: str, value: str) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def eoh(self) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def body(self, chunk: bytes) -> int:
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        return int(Milter.ACCEPT)


class ReplyingNoopMilter(Milter.Base):  # type: ignore[misc]
    """The same callbacks without ``@noreply``: the MTA waits for a reply at every step."""

    def envfrom(self, mailfrom: str, *params: str) -> int:
        return int(Milter.CONTINUE)

    def envrcpt(self, rcpt: str, *params: str) -> int:
        return int(Milter.CONTINUE)

    def header(self, name: str, value: str) -> int:
        return int(Milter.CONTINUE)

    def eoh(self) -> int:
        return int(Milter.CONTINUE)

    def body(self, chunk: bytes) -> int:
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        return int(Milter.ACCEPT)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="unix:/path or inet:PORT@HOST")
    parser.add_argument("--reply", action="store_true", help="answer every step (no @noreply)")
    parser.add_argument("--timeout", type=int, default=600, help="libmilter I/O timeout, seconds")
    parser.add_argument("--umask", type=lambda s: int(s, 8), default=None,
                        help="umask while creating the socket (e.g. 000 so Postfix can connect)")
    return parser.parse_args(argv)


def serve(factory: Any, name: str, args: argparse.Namespace) -> None:
    """Run ``factory`` as the pymilter connection class until SIGTERM/SIGINT."""
    if args.umask is not None:
        os.umask(args.umask)
    Milter.factory = factory
    Milter.set_exception_policy(Milter.CONTINUE)
    sys.stdout.flush()
    Milter.runmilter(name, args.socket, args.timeout)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    serve(ReplyingNoopMilter if args.reply else NoopMilter, "noop-milter", args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
