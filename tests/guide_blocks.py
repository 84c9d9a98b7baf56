"""The command blocks of the deployment guides, as the package tests run them.

A guide marks a fenced ``sh`` block with an HTML comment on the line before it,
``<!-- guide: NAME -->``, and the output a block prints with ``<!-- guide-output: NAME -->``
before a plain fenced block. :func:`blocks` and :func:`outputs` return them by name, so a test
runs exactly the commands an operator reads, and a guide edited without its test fails.
"""

from __future__ import annotations

import re
from pathlib import Path

_BLOCK = re.compile(r"^<!-- guide: ([\w-]+) -->\n```sh\n(.*?)^```$", re.M | re.S)
_OUTPUT = re.compile(r"^<!-- guide-output: ([\w-]+) -->\n```\n(.*?)^```$", re.M | re.S)
_COMMENT = re.compile(r"\s+#\s.*$")


def _lines(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.strip()]


def blocks(path: Path) -> dict[str, list[str]]:
    """Command lines by block name (a trailing `` # comment`` is kept: sh ignores it)."""
    found: dict[str, list[str]] = {}
    for name, body in _BLOCK.findall(path.read_text()):
        assert name not in found, f"{path}: two blocks named {name}"
        found[name] = _lines(body)
    return found


def outputs(path: Path) -> dict[str, list[str]]:
    return {name: _lines(body) for name, body in _OUTPUT.findall(path.read_text())}


def commands(line: str) -> list[str]:
    """``a && b  # note`` -> ``["a", "b"]`` (the guides use ``&&`` only between commands)."""
    return [part.strip() for part in _COMMENT.sub("", line).split("&&")]


def matches(expected: list[str], actual: list[str]) -> bool:
    """Output lines equal, where an expected line ending in ``...`` matches any continuation."""
    if len(expected) != len(actual):
        return False
    return all(a.startswith(e[:-3]) if e.endswith("...") else a == e
               for e, a in zip(expected, actual, strict=True))
