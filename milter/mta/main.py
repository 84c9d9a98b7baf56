"""``mailwarden run``: the entry point that serves as one process or as a pre-fork supervisor.

It reads the configuration, prepares the socket's folder and hands over either to the
single-process daemon (:mod:`mailwarden.mta.daemon`) or to the pre-fork supervisor
(:mod:`mailwarden.mta.prefork`), which runs the same daemon loop in each worker.
"""

from __future__ import annotations

import logging
import os

from mailwarden.config import apply_overrides, load_config, worker_processes
from mailwarden.metrics import Metrics
from mailwarden.mta.daemon import Runtime, listen, serve_until_stopped
from mailwarden.mta.prefork import run_prefork
from mailwarden.mta.sockets import file_identity, remove_socket_file, socket_file

log = logging.getLogger("mailwarden.mta.main")


def run(config_path: str | None, overrides: dict[str, object], umask: int = 0o007) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit status."""
    config = apply_overrides(load_config(config_path), overrides)
    processes = worker_processes(config, overrides)
    _prepare_socket(config.milter.socket)
    if processes > 1:
        os.umask(umask)  # libmilter creates the socket in the parent
        return run_prefork(config, config_path, overrides, processes)
    runtime = Runtime(config_path, overrides, Metrics())
    runtime.metrics.watch(runtime)  # scrape-time gauges of the current engine's detectors
    config = runtime.engine.config
    if config.metrics.enabled:
        runtime.metrics.serve(config.metrics.address, config.metrics.port)
    os.umask(umask)
    if not listen(config):
        runtime.engine.close()
        return 1
    log.info("listening on %s, mode=%s, detectors=%s", config.milter.socket, config.milter.mode,
             ",".join(d.name for d in runtime.engine.detectors) or "none")
    path = socket_file(config.milter.socket)
    identity = file_identity(path)
    return serve_until_stopped(runtime, on_stop=lambda: remove_socket_file(path, identity))


def _prepare_socket(spec: str) -> None:
    path = socket_file(spec)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
