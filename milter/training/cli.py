"""``mailwarden train`` and ``mailwarden evaluate``: one front door for every model family.

Each model family (content classifiers, sending-pattern models) contributes its own flags and
does its work only when its flags were given; this module only gathers them, so an operator can
rebuild everything in one command, e.g. ``mailwarden train --ham H --spam S --sending LOG --out
DIR``. Training writes versioned, version-independent artefacts plus manifests into ``--out``;
evaluation writes JSON, Markdown and PNG figures into ``--report``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mailwarden.training.content import evaluate as content_eval
from mailwarden.training.content import train as content_train
from mailwarden.training.sending import evaluate as sending_eval
from mailwarden.training.sending import train as sending_train

# (key in the printed summary, module, sub-directory of --out it writes into; the sending trainer
# adds "sending" itself)
TRAINERS = (("content_train", content_train, "content"), ("sending_train", sending_train, ""))
EVALUATORS = (("content_eval", content_eval), ("sending_eval", sending_eval))


def add_parser(sub: Any) -> None:
    train = sub.add_parser("train", help="train models from corpora (writes portable artefacts)")
    train.add_argument("--out", type=Path, default=Path("models"), help="model directory")
    for _, module, _ in TRAINERS:
        module.add_train_arguments(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="measure models; write JSON, Markdown and plots")
    evaluate.add_argument("--models", type=Path, default=Path("models"), help="model directory")
    evaluate.add_argument("--report", type=Path, default=Path("docs/evaluation"),
                          help="report directory")
    for _, module in EVALUATORS:
        module.add_evaluate_arguments(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)


def cmd_train(args: argparse.Namespace) -> int:
    summary = {key: m.train_from_args(args, args.out / sub) for key, m, sub in TRAINERS}
    return _finish(summary, "nothing to train: give corpora (--ham/--spam/... or --sending)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    summary = {key: m.evaluate_from_args(args, args.models, args.report)
               for key, m in EVALUATORS}
    return _finish(summary, "nothing to evaluate: give corpora (--ham/--spam/... or --sending)")


def _finish(summary: dict[str, Any], empty: str) -> int:
    done = {k: v for k, v in summary.items() if v}
    if not done:
        print(f"mailwarden: {empty}", file=sys.stderr)
        return 2
    print(json.dumps(done, indent=2, sort_keys=True, default=str))
    return 0
