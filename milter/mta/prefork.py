"""Pre-fork mode: one listening socket, several worker processes, so scoring uses every core.

pymilter runs all callbacks of a process under one GIL, so one process tops out at one core. With
``processes = N`` (N > 1) ``mailwarden run`` becomes a small supervisor: it validates the
configuration, imports the detector modules (their pages are then shared copy-on-write), opens the
milter socket through libmilter (:func:`mailwarden.mta.adapter.listen`, non-blocking so that a
worker that loses the race for a connection goes back to waiting instead of hanging in ``accept``),
and forks N workers. Each worker builds its own engine and state-store connections after the fork
and runs libmilter's accept loop on the inherited socket, exactly like a single-process daemon
(:func:`mailwarden.mta.daemon.serve_until_stopped`). The parent stays single-threaded: it forwards
SIGHUP (reload) and SIGTERM/SIGINT (drain) to the workers, restarts a worker that dies, and serves
the one metrics port, merging the workers' metrics at each scrape
(:mod:`mailwarden.mta.prefork_metrics`). A worker stops when the parent goes away. Start, reload and
stop are logged once: by the parent, and by worker 0 for what each worker does (the others log
errors only), and worker 0 alone counts reloads. On SIGTERM the parent removes the unix socket file
before signalling the workers, so the MTA sees at once that nobody new will be served.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from http.server import HTTPServer
from types import FrameType

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import MetricsHandler
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from mailwarden.config import Config
from mailwarden.detectors import load_builtin
from mailwarden.metrics import NAMESPACE, Metrics
from mailwarden.mta import adapter
from mailwarden.mta.daemon import Runtime, freeze_long_lived, serve_until_stopped
from mailwarden.mta.prefork_metrics import (
    Carry,
    Channel,
    ChannelClosed,
    merge,
    recv_frame,
    send_frame,
    start_answering,
)
from mailwarden.mta.sockets import file_identity, remove_socket_file, set_nonblocking, socket_file

log = logging.getLogger("mailwarden.mta.prefork")
READY_TIMEOUT = 300.0  # model loading on a slow disk
SCRAPE_TIMEOUT = 5.0
RESTART_MAX_DELAY = 30.0


@dataclass
class Worker:
    index: int
    pid: int
    channel: Channel
    started: float = field(default_factory=time.monotonic)
    last_own: str = ""  # its own metrics at the last scrape (carried over when it dies)


class Supervisor:
    """The parent: forks, watches and signals the workers; serves their merged metrics."""

    def __init__(self, config: Config, config_path: str | None, overrides: dict[str, object],
                 processes: int):
        self.config, self._path, self._overrides = config, config_path, overrides
        self.processes = processes
        self.workers: dict[int, Worker] = {}
        self._stopping = False
        self._hup = False
        self._delay = 1.0
        self._pending: dict[int, float] = {}  # worker index -> monotonic time to respawn
        self._carry = Carry()
        self.registry = CollectorRegistry()
        self._restarts = Counter("worker_restarts", "Worker processes restarted after dying",
                                 namespace=NAMESPACE, registry=self.registry)
        self._alive = Gauge("worker_processes", "Worker processes running (pre-fork mode)",
                            namespace=NAMESPACE, registry=self.registry)
        self.registry.register(_Merged(self))
        self._http: HTTPServer | None = None
        self._socket_file = socket_file(config.milter.socket)
        self._socket_identity = file_identity(self._socket_file)

    # --- workers -------------------------------------------------------------------------
    def spawn(self, index: int) -> Worker:
        parent_end, child_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            parent_end.close()
            self._in_child()
            overrides = {**self._overrides, "workers": self.processes, "worker_index": index}
            os._exit(_worker_main(index, child_end, self._path, overrides))
        child_end.close()
        worker = Worker(index, pid, Channel(parent_end))
        self.workers[pid] = worker
        return worker

    def _in_child(self) -> None:
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        if self._http is not None:
            self._http.socket.close()
        for other in self.workers.values():
            other.channel.sock.close()

    def wait_ready(self, worker: Worker, timeout: float = READY_TIMEOUT) -> str | None:
        """None once the worker serves, else why not (``ConfigError`` for a bad config)."""
        try:
            frame = recv_frame(worker.channel.sock, timeout)
        except ChannelClosed as exc:
            log.error("worker %d (pid %d) did not start: %s", worker.index, worker.pid, exc)
            return str(exc)
        return None if frame.get("ready") else str(frame.get("error") or "failed")

    def start(self) -> int:
        """Fork every worker and wait until each has built its engine and serves: 0, else the
        exit status (2 for a configuration error, as the single-process daemon)."""
        started = [self.spawn(i) for i in range(self.processes)]
        failures = [self.wait_ready(w) for w in started]  # every one, even after a failure
        self._alive.set(len(self.workers))
        if "ConfigError" in failures:
            return 2
        return 1 if any(failures) else 0

    def reap(self) -> None:
        """Collect dead workers; schedule a restart (backing off) unless stopping."""
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            worker.channel.sock.close()
            if worker.last_own:
                self._carry.add(worker.last_own)
            if not self._stopping:
                log.error("worker %d (pid %d) died (%s); restarting in %.0fs", worker.index, pid,
                          _describe(status), self._delay)
                self._pending[worker.index] = time.monotonic() + self._delay
                self._delay = min(self._delay * 2, RESTART_MAX_DELAY)
        self._alive.set(len(self.workers))

    def respawn_due(self) -> None:
        now = time.monotonic()
        for index, due in list(self._pending.items()):
            if due <= now and not self._stopping:
                del self._pending[index]
                worker = self.spawn(index)
                self._restarts.inc()
                if self.wait_ready(worker, READY_TIMEOUT) is None:
                    log.info("worker %d restarted (pid %d)", index, worker.pid)
                    self._delay = max(1.0, self._delay / 2)
        self._alive.set(len(self.workers))

    def signal_all(self, signum: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                continue

    # --- signals and main loop -----------------------------------------------------------
    def install_signals(self) -> None:
        def on_hup(signum: int, frame: FrameType | None) -> None:
            self._hup = True

        def on_term(signum: int, frame: FrameType | None) -> None:
            self._stopping = True

        signal.signal(signal.SIGHUP, on_hup)
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)

    def serve_metrics(self) -> None:
        metrics = self.config.metrics
        if metrics.enabled:
            handler = MetricsHandler.factory(self.registry)
            self._http = HTTPServer((metrics.address, metrics.port), handler)
            self._http.timeout = 0.2

    def loop(self) -> None:
        while not self._stopping:
            if self._http is not None:
                self._http.handle_request()
            else:
                time.sleep(0.2)
            if self._hup:
                self._hup = False
                log.info("SIGHUP: reloading %d worker(s) (worker 0 reports the result)",
                         len(self.workers))
                self.signal_all(signal.SIGHUP)
            self.reap()
            self.respawn_due()

    def drain(self) -> int:
        """SIGTERM every worker, wait for their drains, kill stragglers; exit status."""
        self._stopping = True
        remove_socket_file(self._socket_file, self._socket_identity)
        log.info("stopping: draining %d worker(s)", len(self.workers))
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.config.milter.timeout_seconds + 15
        failed = False
        while self.workers and time.monotonic() < deadline:
            for pid in list(self.workers):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    failed |= status != 0
                    self.workers.pop(pid).channel.sock.close()
            time.sleep(0.05)
        if self.workers:
            log.error("killing %d worker(s) that did not drain in time", len(self.workers))
            self.signal_all(signal.SIGKILL)
            for pid in list(self.workers):
                os.waitpid(pid, 0)
            failed = True
        if self._http is not None:
            self._http.server_close()
        return 1 if failed else 0

    def scrape(self) -> list[Metric]:
        answers = []
        for worker in sorted(self.workers.values(), key=lambda w: w.index):
            frame = worker.channel.scrape(SCRAPE_TIMEOUT)
            if frame is not None:
                worker.last_own = str(frame.get("own", ""))
                answers.append(frame)
        own = [str(a.get("own", "")) for a in answers]
        return merge(own, str(answers[0].get("shared", "")) if answers else None, self._carry)


class _Merged(Collector):  # type: ignore[misc]
    """The workers' merged metrics, collected at each scrape of the parent's registry."""

    def __init__(self, supervisor: Supervisor):
        self._supervisor = supervisor

    def collect(self) -> list[Metric]:
        return self._supervisor.scrape()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def run_prefork(config: Config, config_path: str | None, overrides: dict[str, object],
                processes: int) -> int:
    """The supervisor's life: listen, fork, watch, drain. Returns the exit status."""
    load_builtin()  # imported once here: the workers share these pages
    freeze_long_lived()  # and their collectors never walk (and so never copy) them
    try:
        listener = adapter.listen(config.milter.name, config.milter.socket,
                                  config.milter.on_error)
    except Exception:  # pymilter's milter.error: bad spec, path, port in use
        log.exception("cannot listen on %s", config.milter.socket)
        return 1
    if listener is None:
        log.error("could not identify the listening socket; refusing pre-fork mode")
        return 1
    set_nonblocking(listener)  # a worker that loses the accept() race must not block in it
    supervisor = Supervisor(config, config_path, overrides, processes)
    supervisor.install_signals()
    supervisor.serve_metrics()  # bound before the fork: a busy port fails the start at once
    status = supervisor.start()
    if status:
        supervisor.drain()
        return status
    log.info("listening on %s with %d worker processes, mode=%s", config.milter.socket,
             processes, config.milter.mode)
    supervisor.loop()
    return supervisor.drain()


def _worker_main(index: int, sock: socket.socket, config_path: str | None,
                 overrides: dict[str, object]) -> int:
    parent = os.getppid()
    try:
        runtime = Runtime(config_path, overrides, Metrics())
    except Exception as exc:  # reported to the parent, which refuses to start
        log.exception("worker %d could not build its engine", index)
        send_frame(sock, {"ready": False, "error": type(exc).__name__})
        return 1
    runtime.metrics.watch(runtime)
    stopped = False
    start_answering(sock, runtime.metrics, lambda: stopped)
    send_frame(sock, {"ready": True})
    status = serve_until_stopped(runtime, parent_alive=lambda: os.getppid() == parent)
    stopped = True
    return status
