"""Recording proxy between an MTA and a milter: logs the protocol exchange, never the content.

A bench tool to check that the load generator talks like Postfix (and to see what a milter
negotiates): point Postfix's ``smtpd_milters`` (or ``miltergen.py``) at ``--listen`` and the proxy
forwards every byte to ``--upstream``, writing one line per packet to ``--log``: connection
number, direction, command or reply name, payload size, the negotiated flags for OPTNEG, and the
macro names (not values) for MACRO. Message content, addresses and macro values are not written.
Run: ``.venv/bin/python bench/milter_trace.py --listen unix:/tmp/t.sock --upstream
unix:/tmp/m.sock --log trace.txt``; compare two traces with ``--summary`` on each.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import socket
import struct
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import TextIO

from milterproto import COMMAND_NAMES, MACRO, OPTNEG, REPLY_NAMES, Actions, Proto, parse_socket


def describe(direction: str, command: bytes, payload: bytes) -> str:
    """One log line body for a packet: name, size and the non-content details."""
    names = COMMAND_NAMES if direction == ">" else REPLY_NAMES
    name = names.get(command, repr(command))
    detail = ""
    if command == MACRO and direction == ">" and payload:
        fields = payload[1:].split(b"\0")
        stage = COMMAND_NAMES.get(payload[:1], "?")
        detail = f" for {stage}: " + " ".join(f.decode("latin-1") for f in fields[0:-1:2])
    elif command == OPTNEG and len(payload) >= 12:
        version, actions, proto = struct.unpack(">III", payload[:12])
        detail = (f" v{version} actions={Actions(actions)!s} protocol={Proto(proto)!s}"
                  f" extra={len(payload) - 12}")
    return f"{direction} {name} {len(payload)}{detail}"


class Pump:
    """Copies one direction of a connection, logging each complete packet."""

    def __init__(self, conn_id: int, direction: str, src: socket.socket, dst: socket.socket,
                 log: TextIO, lock: threading.Lock) -> None:
        self.conn_id, self.direction, self.src, self.dst = conn_id, direction, src, dst
        self.log, self.lock = log, lock
        self.buffer = b""

    def run(self) -> None:
        try:
            while data := self.src.recv(65536):
                self.dst.sendall(data)
                self.buffer += data
                self._drain()
        except OSError:
            pass
        finally:
            for sock in (self.src, self.dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _drain(self) -> None:
        while len(self.buffer) >= 5:
            (length,) = struct.unpack(">I", self.buffer[:4])
            if len(self.buffer) < 4 + length:
                return
            command, payload = self.buffer[4:5], self.buffer[5:4 + length]
            self.buffer = self.buffer[4 + length:]
            with self.lock:
                self.log.write(f"{self.conn_id} {describe(self.direction, command, payload)}\n")
                self.log.flush()


def listen(spec: str) -> socket.socket:
    family, address = parse_socket(spec)
    server = socket.socket(family, socket.SOCK_STREAM)
    if isinstance(address, str):
        Path(address).unlink(missing_ok=True)
        old = os.umask(0)  # let an MTA running as another user connect
        try:
            server.bind(address)
        finally:
            os.umask(old)
    else:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(address)
    server.listen(64)
    return server


def serve(listen_spec: str, upstream: str, log: TextIO) -> None:
    server = listen(listen_spec)
    lock = threading.Lock()
    for conn_id in itertools.count(1):
        client, _ = server.accept()
        family, address = parse_socket(upstream)
        milter = socket.socket(family, socket.SOCK_STREAM)
        milter.connect(address)
        for direction, src, dst in ((">", client, milter), ("<", milter, client)):
            pump = Pump(conn_id, direction, src, dst, log, lock)
            threading.Thread(target=pump.run, daemon=True).start()


def summary(path: str) -> str:
    """Packet counts per direction and name over a trace, with per-connection averages."""
    counts: Counter[str] = Counter()
    connections = set()
    for line in Path(path).read_text().splitlines():
        conn, direction, name, *_ = line.split()
        connections.add(conn)
        counts[f"{direction} {name}"] += 1
    n = max(len(connections), 1)
    return "\n".join(f"{key:<16} {value:>8}  {value / n:8.2f}/connection"
                     for key, value in sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", help="socket to accept MTA connections on")
    p.add_argument("--upstream", help="the real milter's socket")
    p.add_argument("--log", default="-", help="trace file (default stdout)")
    p.add_argument("--summary", metavar="TRACE", help="summarise a trace file and exit")
    args = p.parse_args(argv)
    if args.summary:
        print(summary(args.summary))
        return 0
    if not (args.listen and args.upstream):
        p.error("--listen and --upstream are required")
    with (sys.stdout if args.log == "-" else open(args.log, "a")) as log:
        serve(args.listen, args.upstream, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
