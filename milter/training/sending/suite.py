"""The fixed evaluation suites behind ``docs/sending-evaluation.md`` (tuning and report sets).

Tuning and reporting use different data: the ``tune`` suite (Enron, EU-core department 3, one
synthetic organisation, scenario seed 101) was used to choose features, model sizes and the
range term; the ``report`` suite (manufacturing, DNC, EU-core first 150 days, another synthetic
organisation, scenario seed 202) was run once those were fixed. :func:`run_suite` evaluates a
suite, writes the JSON results, Markdown tables and, on request, the figures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailwarden.training.sending.evaluate import evaluate_run, write_report
from mailwarden.training.sending.runs import Run, prepare
from mailwarden.training.sending.scenarios import KINDS, NEGATIVE_KINDS

SUITES: dict[str, tuple[int, tuple[tuple[str, str], ...]]] = {
    "tune": (101, (("enron_perry_wolfe.csv.gz", "America/Los_Angeles"),
                   ("eu_core_dept3_reltime.csv.gz", "UTC"), ("synthetic:7", "UTC"))),
    "report": (202, (("manufacturing_radoslaw.csv.gz", "Europe/Warsaw"),
                     ("dnc_konect.csv.gz", "America/New_York"),
                     ("eu_core_first150d_reltime.csv.gz", "UTC"), ("synthetic:8", "UTC"))),
}
MODELS = ("isolation_forest", "ocsvm", "lof", "autoencoder")
PER_KIND_ROWS = ("isolation_forest + tails", "isolation_forest", "tails alone",
                 "shipped/isolation_forest + tails")


def _run(name: str, timezone: str, corpora: Path, seed: int) -> Run:
    from mailwarden.training.sending.data import load_events, synthetic_history

    if name.startswith("synthetic:"):
        events = synthetic_history(int(name.partition(":")[2]), senders=40, days=60)
    else:
        events = load_events([corpora / name], seed)
    return prepare(name, events, timezone, seed)


def run_suite(suite: str, corpora: Path, models: Path, report_dir: Path,
              figures: bool = False) -> dict[str, Any]:
    seed, datasets = SUITES[suite]
    results: dict[str, Any] = {}
    for index, (name, timezone) in enumerate(datasets):
        run = _run(name, timezone, corpora, seed)
        results[name], scores = evaluate_run(run, MODELS, seed, models)
        results[name]["_data"] = {"messages": int(run.x.shape[0]),
                                  "train_messages": int(run.train.sum()), "timezone": timezone}
        if figures and index == 0:
            from mailwarden.training.sending.figures import draw_all

            draw_all(run, scores, report_dir / "figures" / "sending")
    write_report(report_dir, results)
    (report_dir / f"sending-{suite}-tables.md").write_text(tables(results), "utf-8")
    return {name: {m: round(r["roc_auc"], 4) for m, r in res.items() if m != "_data"}
            for name, res in results.items()}


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}%" if pct else f"{value:.4f}"


def tables(results: dict[str, Any]) -> str:
    lines = []
    for name, res in results.items():
        data = res.get("_data", {})
        lines += [f"### {name} ({data.get('messages', '?')} messages, "
                  f"{data.get('train_messages', '?')} for training, tz {data.get('timezone')})",
                  "", "| model | ROC-AUC | accuracy | balanced acc. | FP rate | recall (msgs) "
                  "| scenarios flagged ≤10 msgs | median delay |",
                  "|---|---|---|---|---|---|---|---|"]
        for model, r in res.items():
            if model == "_data":
                continue
            delay = "–" if r["median_delay"] is None else f"{r['median_delay']:.0f}"
            lines.append(f"| {model} | {_fmt(r['roc_auc'])} | {_fmt(r['accuracy'], True)} | "
                         f"{_fmt(r['balanced_accuracy'], True)} | {_fmt(r['fp_rate'], True)} | "
                         f"{_fmt(r['recall'], True)} | {_fmt(r['detected_within_10'], True)} | "
                         f"{delay} |")
        lines += ["", "Per scenario kind: flagged within 10 messages / median delay; new senders' "
                  "ordinary bursts: scenarios with any message flagged (must be 0)", ""]
        lines += _per_kind(res)
    return "\n".join(lines) + "\n"


def _per_kind(res: dict[str, Any]) -> list[str]:
    kinds = [k for k in KINDS if k not in NEGATIVE_KINDS]
    lines = ["| model | " + " | ".join(kinds) + " | new_sender_burst flagged |",
             "|---|" + "---|" * (len(kinds) + 1)]
    for model in PER_KIND_ROWS:
        if model not in res:
            continue
        per, neg = res[model]["per_kind"], res[model]["negatives"].get("new_sender_burst", {})
        cells = [f"{_fmt(per[k]['detected_within_10'], True)} / "
                 f"{'–' if per[k]['median_delay'] is None else int(per[k]['median_delay'])}"
                 for k in kinds if k in per]
        lines.append(f"| {model} | " + " | ".join(cells) +
                     f" | {neg.get('scenarios_flagged', 0)}/{neg.get('scenarios', 0)} |")
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailwarden.training.sending.suite")
    parser.add_argument("--suite", choices=("tune", "report"), required=True)
    parser.add_argument("--corpora", type=Path, default=Path("../shared/corpora/sending"))
    parser.add_argument("--models", type=Path, default=Path("models/sending"))
    parser.add_argument("--report-dir", type=Path, required=True)
    parser.add_argument("--figures", action="store_true")
    args = parser.parse_args(argv)
    summary = run_suite(args.suite, args.corpora, args.models, args.report_dir, args.figures)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
