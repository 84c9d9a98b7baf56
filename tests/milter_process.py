"""Start ``mailwarden run`` as a real daemon process for end-to-end tests, and stop it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from postfix_instance import PostfixInstance, free_port


class MilterProcess:
    def __init__(self, config: Path, socket_path: Path, mode: str = "enforce"):
        self.config = config
        self.socket_path = socket_path
        self.metrics_port = free_port()
        self.log_path = socket_path.parent / "milter.log"
        self.mode = mode
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def spec(self) -> str:
        return f"unix:{self.socket_path}"

    def start(self, timeout: float = 30.0) -> MilterProcess:
        if self.socket_path.exists():
            self.socket_path.unlink()
        cmd = [sys.executable, "-m", "mailwarden", "run", "--config", str(self.config),
               "--socket", self.spec, "--mode", self.mode,
               "--metrics-port", str(self.metrics_port)]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.config.parent)
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"milter did not start: {self.log()}")
            time.sleep(0.05)
        while not self._accepts():  # the file exists from bind(), before listen()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"milter socket never accepted: {self.log()}")
            time.sleep(0.05)
        # The daemon runs as root here; Postfix's smtpd (user postfix) must reach the socket.
        # (Packaged, the unit's group and umask do this: see packaging/.)
        self.socket_path.chmod(0o666)
        return self

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                return False
            return True

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample from the live /metrics endpoint (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


M = TypeVar("M", bound="MilterProcess")


class PreforkMilter(MilterProcess):
    processes = 2

    def start(self, timeout: float = 60.0) -> PreforkMilter:
        if self.socket_path.exists():
            self.socket_path.unlink()
        cmd = [sys.executable, "-m", "mailwarden", "run", "--processes", str(self.processes),
               "--config", str(self.config), "--socket", self.spec, "--mode", self.mode,
               "--metrics-port", str(self.metrics_port)]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.config.parent)
        deadline = time.monotonic() + timeout
        while len(self.workers()) < self.processes or "worker processes" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"milter did not start: {self.log()}")
            time.sleep(0.05)
        self.socket_path.chmod(0o666)
        return self

    def workers(self) -> list[int]:
        if self.proc is None:
            return []
        out = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    stat = (proc / "stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rindex(")") + 2:].split()[1]) == self.proc.pid:
                    out.append(int(proc.name))
        return sorted(out)



@contextmanager
def with_postfix(milter: M, root: Path) -> Iterator[tuple[PostfixInstance, M]]:
    """Start ``milter``, then a throwaway Postfix using it; stop both and remove ``root``."""
    postfix = PostfixInstance(milter.spec)
    try:
        milter.start()
        postfix.start()
        yield postfix, milter
    finally:
        postfix.remove()
        milter.stop()
        shutil.rmtree(root, ignore_errors=True)
