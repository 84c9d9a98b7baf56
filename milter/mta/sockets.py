"""Descriptor-level helpers for the milter's listening socket (no pymilter here).

The adapter opens the listening socket through libmilter, which does not hand out its
descriptor; these find it (the one socket a call opened), switch off Nagle's algorithm on TCP
listeners, make a listener non-blocking for pre-fork workers (:mod:`mailwarden.mta.prefork`) and
remove the unix socket file at shutdown (the one this process created, not a successor's).
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from pathlib import Path


def open_sockets() -> set[int]:
    """Descriptors of this process that are sockets."""
    fds = [int(path.name) for path in Path("/proc/self/fd").iterdir()]
    return {fd for fd in fds if _is_socket(fd)}  # the listing's own descriptor is closed by now


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def no_delay(fd: int) -> None:
    """TCP_NODELAY on an inet listener; Linux copies it to every accepted connection.

    libmilter writes each end-of-message reply (added headers, then accept) as its own small
    packet with Nagle on, so the second waits for the MTA's delayed ACK: about 40 ms per
    message on TCP (docs/performance.md). Unix sockets are not affected."""
    with socket.socket(fileno=os.dup(fd)) as sock:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def set_nonblocking(fd: int) -> None:
    """O_NONBLOCK on the open file description (shared by every process that inherited it)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)


def socket_file(spec: str) -> Path | None:
    """The file of a ``unix:``/``local:`` milter socket spec (None for TCP)."""
    if spec.startswith(("unix:", "local:")):
        return Path(spec.split(":", 1)[1])
    return None


def file_identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of the socket file just created, to remove that file and no other."""
    try:
        info = path.stat() if path is not None else None
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if info is not None else None


def remove_socket_file(path: Path | None, identity: tuple[int, int] | None) -> bool:
    """Unlink the socket file this process created, unless another one has replaced it (a new
    daemon already started on the same path). libmilter only does it when not root, and only
    once its accept loop has noticed the stop (up to 5 s later)."""
    if path is None or identity is None or file_identity(path) != identity:
        return False
    try:
        path.unlink()
    except OSError:
        return False
    return True
