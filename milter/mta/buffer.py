"""Bounded accumulation of one message as the MTA streams it to the milter.

The adapter feeds header fields and body chunks into a :class:`MessageBuffer`. Up to
``spool_bytes`` stay in memory (as a list of the pieces received, joined once at the end),
beyond that the data spools to an anonymous temporary file, and nothing past ``max_scan_bytes``
is kept at all (the message is then scored on its headers and a prefix, and marked truncated).
Header values arrive as raw bytes, so 8-bit and invalid-charset headers are kept exactly as
sent. The buffer knows nothing about the milter protocol.
"""

from __future__ import annotations

import tempfile
from typing import IO


class MessageBuffer:
    def __init__(self, max_scan_bytes: int, spool_bytes: int):
        self._max = max_scan_bytes
        self._spool = spool_bytes
        self._pieces: list[bytes] = []
        self._file: IO[bytes] | None = None
        self._kept = 0
        self.size = 0
        self.header_counts: dict[str, int] = {}
        self._in_headers = True

    @property
    def truncated(self) -> bool:
        return self.size > self._kept

    def add_header(self, name: str, value: bytes) -> None:
        key = name.lower()
        self.header_counts[key] = self.header_counts.get(key, 0) + 1
        self._write(name.encode("ascii", "replace") + b": " + value + b"\r\n")

    def end_headers(self) -> None:
        if self._in_headers:
            self._write(b"\r\n")
            self._in_headers = False

    def add_body(self, chunk: bytes) -> None:
        self.end_headers()
        self._write(chunk)

    def _write(self, data: bytes) -> None:
        self.size += len(data)
        room = self._max - self._kept
        if room <= 0:
            return
        piece = data if len(data) <= room else data[:room]
        self._kept += len(piece)
        if self._file is not None:
            self._file.write(piece)
            return
        self._pieces.append(piece)
        if self._kept > self._spool:  # from here on the message lives in a temporary file
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            self._file.writelines(self._pieces)
            self._pieces = []

    def getvalue(self) -> bytes:
        self.end_headers()
        if self._file is None:
            return b"".join(self._pieces)
        self._file.seek(0)
        data = self._file.read()
        self._file.seek(0, 2)
        return data

    def close(self) -> None:
        self._pieces = []
        if self._file is not None:
            self._file.close()
            self._file = None
