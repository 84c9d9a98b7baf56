"""Start and stop milter processes for the bench harness and its tests.

``run_bench.py``, ``postfix_bench.py`` and ``tests/test_bench_miltergen.py`` start the milters they
measure (the no-op ceiling, the slow dummy, ``mailwarden run``) as child processes on a fresh
socket, wait until the socket accepts connections, and always stop them (SIGTERM, then SIGKILL)
and remove unix socket files, whatever happened in between. Commands are argument lists in
which ``{socket}`` becomes the socket spec in pymilter's spelling (``unix:/p``, ``inet:PORT@HOST``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from milterproto import parse_socket

BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def socket_spec(transport: str, workdir: Path, name: str) -> str:
    """A fresh socket spec: ``unix:<workdir>/<name>.sock`` or ``inet:<free port>@127.0.0.1``."""
    if transport == "unix":
        return f"unix:{workdir / (name + '.sock')}"
    if transport == "inet":
        return f"inet:{free_port()}@127.0.0.1"
    raise ValueError(f"unknown transport {transport!r}")


def postfix_spec(spec: str) -> str:
    """The same socket in Postfix's spelling (``inet:HOST:PORT``)."""
    _, address = parse_socket(spec)
    if isinstance(address, str):
        return f"unix:{address}"
    return f"inet:{address[0]}:{address[1]}"


def builtin_command(name: str, extra: Sequence[str] = ()) -> list[str]:
    """Command line of a milter that lives in bench/ (``noop_milter`` or ``dummy_milter``)."""
    return [PYTHON, str(BENCH_DIR / f"{name}.py"), "--socket", "{socket}", *extra]


def wait_ready(spec: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once ``spec`` accepts a connection; raise if the process dies or time runs out."""
    family, address = parse_socket(spec)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"milter exited with status {proc.returncode} before listening")
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            if probe.connect_ex(address) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"milter not listening on {spec} after {timeout:.0f} s")


def start(command: Sequence[str], spec: str, log: Path | None = None,
          ready_timeout: float = 60.0) -> subprocess.Popen[bytes]:
    """Start ``command`` (``{socket}`` replaced by ``spec``) and wait until it listens."""
    argv = [part.replace("{socket}", spec) for part in command]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    try:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    try:
        wait_ready(spec, proc, ready_timeout)
    except BaseException as exc:
        stop(proc, spec)
        tail = log.read_text(errors="replace").splitlines()[-5:] if log else []
        if tail and isinstance(exc, RuntimeError | TimeoutError):
            raise type(exc)(f"{exc}; {log} ends with:\n" + "\n".join(tail)) from exc
        raise
    return proc


def stop(proc: subprocess.Popen[bytes], spec: str | None = None, grace: float = 10.0) -> None:
    """SIGTERM the process (only this one), SIGKILL it after ``grace`` seconds, clean the socket."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if spec:
        _, address = parse_socket(spec)
        if isinstance(address, str):
            with contextlib.suppress(OSError):
                os.unlink(address)


@contextlib.contextmanager
def running(command: Sequence[str], spec: str, log: Path | None = None,
            ready_timeout: float = 60.0, grace: float = 10.0,
            ) -> Iterator[subprocess.Popen[bytes]]:
    """The started milter; stopped on exit (libmilter takes up to 5 s to notice SIGTERM)."""
    proc = start(command, spec, log, ready_timeout)
    try:
        yield proc
    finally:
        stop(proc, spec, grace)
