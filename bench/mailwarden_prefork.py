"""``mailwarden run`` with a worker-process count, for benches and tests of pre-fork mode.

The daemon reads the count from ``--processes`` / ``[milter] processes`` once the command line and
the config schema carry it (:func:`mailwarden.runtime.worker_processes` already honours both);
until then this wrapper passes it as a run override. Same options and logging as ``mailwarden
run``: ``python bench/mailwarden_prefork.py --processes 2 --config mw.toml --socket unix:/p``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mailwarden.runtime import run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config")
    p.add_argument("--socket")
    p.add_argument("--mode", choices=("observe", "enforce"))
    p.add_argument("--metrics-port", type=int)
    p.add_argument("--processes", type=int, default=2, help="0: one per CPU (2)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, object] = {"socket": args.socket, "mode": args.mode,
                                    "metrics_port": args.metrics_port,
                                    "processes": args.processes}
    return run(args.config, overrides)


if __name__ == "__main__":
    sys.exit(main())
