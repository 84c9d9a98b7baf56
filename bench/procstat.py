"""CPU time and memory of the milter process under test, read from ``/proc`` (Linux only).

The bench load generator (``miltergen.py``) reports the milter's CPU seconds per message and its
resident memory at start, end and peak during the run. The process is given by PID or found from
the socket it listens on: the socket's inode (``/proc/net/unix`` by path, ``/proc/net/tcp[6]`` by
listening port) is looked up among every process's open descriptors. A sampler thread polls RSS,
since ``VmHWM`` covers the process's whole life rather than the run. A pre-forked milter (a
supervisor whose workers inherit the listening socket) is measured as its whole process tree: CPU
and RSS are summed over the supervisor and its live descendants, and the proportional set size
(PSS, shared pages split between the processes sharing them) is reported beside the RSS sum.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from milterproto import parse_socket

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
_TCP_LISTEN = "0A"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of every thread of ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB


def pss_kib(pid: int) -> int:
    """Proportional set size (0 where ``smaps_rollup`` cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = _parent_of(int(proc.name))
            except (OSError, ValueError, IndexError):
                continue
    out, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        out += children
        frontier = children
    return out


def _summed(fn: Callable[[int], int | float], pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += fn(pid)
        except OSError:
            continue
    return total


def thread_count(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[17])


def _unix_inodes(path: str) -> set[str]:
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7] == path:
            inodes.add(parts[6])
    return inodes


def _tcp_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local_port = int(parts[1].rpartition(":")[2], 16)
            if local_port == port and parts[3] == _TCP_LISTEN:
                inodes.add(parts[9])
    return inodes


def find_pid(spec: str) -> int | None:
    """The process holding the listening socket ``spec`` (the topmost one when a supervisor and
    its forked workers all hold it), or None if it cannot be seen."""
    _, address = parse_socket(spec)
    inodes = _unix_inodes(str(address)) if isinstance(address, str) else _tcp_inodes(address[1])
    targets = {f"socket:[{inode}]" for inode in inodes}
    if not targets:
        return None
    holders = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if links & targets:
            holders.add(int(proc.name))
    tops = [pid for pid in holders if _safe_parent(pid) not in holders]
    return min(tops) if tops else None


def _safe_parent(pid: int) -> int:
    try:
        return _parent_of(pid)
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class ProcessReport:
    pid: int
    cpu_seconds: float
    rss_start_kib: int
    rss_end_kib: int
    rss_max_kib: int
    threads_max: int
    processes: int = 1
    pss_end_kib: int = 0


class ProcessSampler:
    """Polls one process tree's RSS and thread count between ``start()`` and ``stop()``."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procstat", daemon=True)
        self._pids = tree(pid)
        self.cpu_start = _summed(cpu_seconds, self._pids)
        self.rss_start = self.rss_max = int(_summed(rss_kib, self._pids))
        self.threads_max = int(_summed(thread_count, self._pids))

    def start(self) -> ProcessSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        if not Path(f"/proc/{self.pid}").exists():
            self._stop.set()
            return
        self.rss_max = max(self.rss_max, int(_summed(rss_kib, self._pids)))
        self.threads_max = max(self.threads_max, int(_summed(thread_count, self._pids)))

    def stop(self) -> ProcessReport:
        self._stop.set()
        self._thread.join()
        self._sample()
        return ProcessReport(self.pid, _summed(cpu_seconds, self._pids) - self.cpu_start,
                             self.rss_start, int(_summed(rss_kib, self._pids)), self.rss_max,
                             self.threads_max, len(self._pids), int(_summed(pss_kib, self._pids)))
