"""Evaluate the ``leak`` detector on the labelled set; print Markdown tables.

    python -m bench.leak_eval --split test --per-cell 120 [--timing] [--out FILE]

Counts are per value: for each message and type, the detector's findings at the expected
location (summed counts of distinct values) are compared with the number of values injected;
extra values and findings at any other location are false positives. The unmodified ham of the
split and each look-alike family (scanned on its own) are graded too: any finding is a false
positive. Each credential form is also scanned alone, for a per-form table. ``--timing`` adds
scan times (extraction included) for typical and large messages.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench.leak_eval.carriers import CARRIERS
from bench.leak_eval.credentials import FORMS, form_snippet
from bench.leak_eval.dataset import SEEDS, TYPES, cases, load_ham, lookalike_snippets
from bench.leak_eval.timing import timed, timing_rows
from mailwarden.detectors.leak.detector import LeakConfig, LeakDetector, scan_text
from mailwarden.message import Envelope, Message

UNSCANNABLE = "unscannable_attachment"


def message(raw: bytes) -> Message:
    return Message(Envelope("EVAL", "employee@corp.example", ("partner@external.example",)),
                   raw, len(raw), source="eval")


class Tally:
    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.confidence: dict[str, Counter[str]] = defaultdict(Counter)
        self.unscannable = 0
        self.messages = 0

    def add(self, carrier: str, location: str, expected: Counter[str], findings: tuple) -> None:
        self.messages += 1
        found: Counter[str] = Counter()
        for f in findings:
            if f.type == UNSCANNABLE:
                self.unscannable += 1
            elif f.location == location:
                found[f.type] += f.count
                self.confidence[f.type][f.confidence.value] += f.count
            else:
                self.cells[(f.type, carrier)]["fp"] += f.count
        for kind in set(expected) | set(found):
            cell = self.cells[(kind, carrier)]
            cell["tp"] += min(expected[kind], found[kind])
            cell["fp"] += max(0, found[kind] - expected[kind])
            cell["fn"] += max(0, expected[kind] - found[kind])


def ratio(num: int, den: int) -> str:
    return f"{num / den:.4f}" if den else "n/a"


def cell_text(c: Counter[str]) -> str:
    p, r = ratio(c["tp"], c["tp"] + c["fp"]), ratio(c["tp"], c["tp"] + c["fn"])
    return f"{p} / {r} ({c['tp']}/{c['fp']}/{c['fn']})"


def report(t: Tally, ham_fp: Counter[str], ham_n: int, families: dict[str, Counter[str]],
           per_family: int) -> list[str]:
    out = ["### Precision / recall by type and carrier (TP/FP/FN)", "",
           "| type | " + " | ".join(CARRIERS) + " | all carriers |",
           "|---" * (len(CARRIERS) + 2) + "|"]
    for kind in TYPES:
        row, total = [], Counter()
        for carrier in CARRIERS:
            c = t.cells[(kind, carrier)]
            total.update(c)
            row.append(f"{ratio(c['tp'], c['tp'] + c['fp'])} / {ratio(c['tp'], c['tp'] + c['fn'])}")
        out.append(f"| {kind} | " + " | ".join(row) + f" | {cell_text(total)} |")
    out += ["", f"Messages: {t.messages}; unscannable findings on generated messages: "
            f"{t.unscannable}.", "", "### Confidence of the reported values", "",
            "| type | high | medium | low |", "|---|---|---|---|"]
    for kind in TYPES:
        c = t.confidence[kind]
        out.append(f"| {kind} | {c['high']} | {c['medium']} | {c['low']} |")
    sensitive = {k: v for k, v in ham_fp.items() if k != UNSCANNABLE}
    out += ["", f"### Unmodified ham of the split ({ham_n} messages)", "",
            "Sensitive-type findings (all false positives): "
            + (", ".join(f"{k}={v}" for k, v in sorted(sensitive.items())) or "none")
            + f"; unscannable parts reported: {ham_fp[UNSCANNABLE]}.", "",
            f"### Look-alike families, each scanned alone ({per_family} per family)", "",
            "| family | findings (false positives) |", "|---|---|"]
    for family, counter in families.items():
        shown = ", ".join(f"{k}={v}" for k, v in sorted(counter.items())) or "0"
        out.append(f"| {family} | {shown} |")
    return out


def form_rows(detector: LeakDetector, per_form: int, seed: int) -> list[str]:
    """Each credential form scanned alone: distinct password values found against injected."""
    out = [f"### Credential forms, each scanned alone ({per_form} snippets per form)", "",
           "| form | precision / recall (TP/FP/FN) |", "|---|---|"]
    for form in sorted(FORMS):
        c: Counter[str] = Counter()
        for number in range(per_form):
            snippet = form_snippet(form, random.Random(f"{seed}:form:{form}:{number}"))
            matches = scan_text(snippet.text, detector.config.scan)
            found = len({m.key for m in matches if m.type == "password"})
            c["tp"] += min(found, snippet.count)
            c["fp"] += max(0, found - snippet.count) + sum(m.type != "password" for m in matches)
            c["fn"] += max(0, snippet.count - found)
        out.append(f"| {form} | {cell_text(c)} |")
    return out


def run(split: str, per_cell: int, per_family: int, timing: bool, seed: int | None) -> list[str]:
    detector = LeakDetector(LeakConfig())
    hams = load_ham(split)
    tally = Tally()
    for case in cases(split, hams, per_cell, seed):
        tally.add(case.carrier, case.location, case.expected,
                  detector.analyse(message(case.raw)).findings)
    ham_fp: Counter[str] = Counter()
    for ham in hams:
        for f in detector.analyse(message(ham.raw)).findings:
            ham_fp[f.type] += f.count
    families: dict[str, Counter[str]] = defaultdict(Counter)
    for snippet in lookalike_snippets(split, per_family, seed):
        families[snippet.family]
        for match in scan_text(snippet.text, detector.config.scan):
            families[snippet.family][match.type] += 1
    seed_text = f", generation seed {seed}" if seed is not None else ""
    lines = [f"## Split `{split}`{seed_text}: {len(hams)} ham messages, "
             f"~{per_cell} values per cell", ""]
    lines += report(tally, ham_fp, len(hams), families, per_family)
    lines += ["", *form_rows(detector, per_family, SEEDS[split] if seed is None else seed)]
    if timing:
        sizes = sorted(len(h.raw) for h in hams)
        ham_times = [timed(detector, h.raw, message) for h in hams]
        lines += ["", *timing_rows(detector, ham_times, sizes[len(sizes) // 2], message)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.leak_eval")
    parser.add_argument("--split", choices=("tune", "test"), default="test")
    parser.add_argument("--per-cell", type=int, default=120)
    parser.add_argument("--per-family", type=int, default=400)
    parser.add_argument("--seed", type=int, help="generation seed (default: the split's own)")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.monotonic()
    lines = run(args.split, args.per_cell, args.per_family, args.timing, args.seed)
    lines += ["", f"(evaluation took {time.monotonic() - started:.0f} s, "
              f"Python {sys.version.split()[0]})"]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
