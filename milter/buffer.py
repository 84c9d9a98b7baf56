"""Bounded accumulation of one message as the MTA streams it to the milter.

The adapter feeds header fields and body chunks into a :class:`MessageBuffer`. Up to
``spool_bytes`` stay in memory, beyond that the data spools to an anonymous temporary file, and
nothing past ``max_scan_bytes`` is kept at all (the message is then scored on its headers and a
prefix, and marked truncated). Header values arrive as raw bytes, so 8-bit and invalid-charset
headers are kept exactly as sent. The buffer knows nothing about the milter protocol.
"""

from __future__ import annotations

import tempfile


class MessageBuffer:
    def __init__(self, max_scan_bytes: int, spool_bytes: int):
        self._max = max_scan_bytes
        self._file = tempfile.SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115
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
        piece = data[:room]
        self._file.write(piece)
        self._kept += len(piece)

    def getvalue(self) -> bytes:
        self.end_headers()
        self._file.seek(0)
        data = self._file.read()
        self._file.seek(0, 2)
        return data

    def close(self) -> None:
        self._file.close()
