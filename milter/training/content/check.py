"""Compare two content-model directories: the reproducibility check of ``scripts/build-models``.

``python -m mailwarden.training.content.check SHIPPED REBUILT`` reports, per type, whether the
``.npz`` and ``.json`` artefacts are byte-identical and, when they are not (another numpy,
scikit-learn or zlib build), whether the vocabularies are equal and every parameter agrees within a
tolerance, which makes the two models score-for-score equal. Exit status 0 when every type is
reproduced.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mailwarden.detectors.content.detector import TYPES
from mailwarden.detectors.content.portable import load

TOLERANCE = 1e-9


def compare(shipped: Path, rebuilt: Path, kind: str) -> tuple[bool, str]:
    """(reproduced, one-line explanation) for one type."""
    same = [(shipped / f"{kind}{ext}").read_bytes() == (rebuilt / f"{kind}{ext}").read_bytes()
            for ext in (".npz", ".json")]
    if all(same):
        return True, "byte-identical"
    a, b = load(shipped, kind), load(rebuilt, kind)
    if a.terms != b.terms:
        return False, "vocabularies differ"
    diff = max(float(np.max(np.abs(a.idf - b.idf), initial=0.0)),
               float(np.max(np.abs(a.weights - b.weights), initial=0.0)),
               abs(a.bias - b.bias), abs(a.slope - b.slope), abs(a.offset - b.offset))
    what = "npz identical, manifest differs" if same[0] else f"max parameter difference {diff:.3g}"
    return diff <= TOLERANCE, what


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m mailwarden.training.content.check SHIPPED_DIR REBUILT_DIR",
        file=sys.stderr)
        return 2
    ok = True
    for kind in TYPES:
        reproduced, what = compare(Path(args[0]), Path(args[1]), kind)
        ok &= reproduced
        print(f"{kind}: {'reproduced' if reproduced else 'NOT reproduced'} ({what})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
