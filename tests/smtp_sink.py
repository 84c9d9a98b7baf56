"""A loopback SMTP sink for tests: what a remote MX would receive from Postfix's smtp(8) client.

:class:`SmtpSink` listens on 127.0.0.1 (a free port), speaks just enough ESMTP for Postfix
(EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) and keeps every message it
accepted in memory, so a test can check what actually left the organisation.
"""

from __future__ import annotations

import socketserver
import threading
import time

from postfix_instance import free_port


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 sink.test ESMTP test sink")
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.reply("250-sink.test" if verb == b"EHLO" else "250 sink.test")
                if verb == b"EHLO":
                    self.reply("250 8BITMIME")
            elif verb == b"DATA":
                self.reply("354 go ahead")
                self.server.messages.append(self._data())
                self.reply("250 2.0.0 kept")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:  # MAIL, RCPT, RSET, NOOP
                self.reply("250 ok")

    def _data(self) -> bytes:
        lines = []
        while True:
            line = self.rfile.readline(1 << 20)
            if line in (b".\r\n", b".\n", b""):
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b"..") else line)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    messages: list[bytes]


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.messages = []
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def messages(self) -> list[bytes]:
        return list(self._server.messages)

    def wait_for(self, token: str, timeout: float = 60.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for data in self.messages:
                if token.encode() in data:
                    return data
            time.sleep(0.1)
        raise AssertionError(f"{token} never reached the sink ({len(self.messages)} messages)")
