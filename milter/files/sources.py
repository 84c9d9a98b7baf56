"""Read messages from files for the CLI (``score``, ``replay``) and for training and evaluation.

A path may be a single message (``.eml`` or any file), a directory (walked recursively in name
order, which covers maildirs and ``.eml`` folders), an mbox file (a file whose first line starts
with ``From ``; a single corpus message with an mbox envelope line is an mbox of one), or a
``.tar``/``.tar.gz``/``.tgz`` archive whose regular members are themselves any of those. Every
message comes out as a :class:`RawMessage` naming its source (``path`` or ``archive:member``), with
its bytes unchanged except the mbox ``From `` line and mbox ``>From`` quoting.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# Members of the SpamAssassin archives that are not messages.
SKIP_NAMES = frozenset({"cmds", "PROVENANCE.md", "README", "LICENSE"})
_FROM_LINE = re.compile(rb"^From \S+.*$")
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class RawMessage:
    source: str
    data: bytes


def iter_sources(paths: Iterable[str | os.PathLike[str]]) -> Iterator[RawMessage]:
    """Every message under ``paths``, in a stable order. Unreadable paths raise ``OSError``."""
    for path in paths:
        p = Path(path)
        if p.is_dir():
            yield from _iter_dir(p)
        elif _is_archive(p.name):
            yield from _iter_archive(p)
        else:
            yield from split_file(str(p), p.read_bytes())


def _iter_dir(root: Path) -> Iterator[RawMessage]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith(".") or name in SKIP_NAMES:
                continue
            full = Path(dirpath) / name
            if _is_archive(name):
                yield from _iter_archive(full)
            else:
                yield from split_file(str(full), full.read_bytes())


def _iter_archive(path: Path) -> Iterator[RawMessage]:
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile() or Path(member.name).name in SKIP_NAMES:
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            yield from split_file(f"{path}:{member.name}", handle.read())


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def split_file(source: str, data: bytes) -> Iterator[RawMessage]:
    """One message, or each message of an mbox (named ``source#N`` when there are several)."""
    if not data.startswith(b"From "):
        yield RawMessage(source, data)
        return
    chunks = _split_mbox(data)
    if len(chunks) == 1:
        yield RawMessage(source, chunks[0])
        return
    for number, chunk in enumerate(chunks, start=1):
        yield RawMessage(f"{source}#{number}", chunk)


def _split_mbox(data: bytes) -> list[bytes]:
    messages: list[bytes] = []
    current: list[bytes] = []
    previous_blank = True
    for line in data.splitlines(keepends=True):
        if previous_blank and _FROM_LINE.match(line.rstrip(b"\r\n")):
            if current:
                messages.append(_unquote(b"".join(current)))
            current = []
            previous_blank = False
            continue
        current.append(line)
        previous_blank = line in (b"\n", b"\r\n")
    if current:
        messages.append(_unquote(b"".join(current)))
    return messages


def _unquote(message: bytes) -> bytes:
    return _QUOTED_FROM.sub(rb"\1", message)
