"""The daemon: owns the one current engine, swaps it on SIGHUP and drains on SIGTERM.

``mailwarden run`` builds a :class:`Runtime` from the config, starts the metrics endpoint, and
runs libmilter's loop on a background thread while the main thread waits for signals (libmilter
blocks SIGHUP/SIGTERM in its own threads; the kernel hands a process signal to the main thread,
which does not block them). A reload builds a complete new engine first and swaps it in only if it
loads; a failed reload keeps the old engine and is logged and counted. Connections in flight keep
the engine they started with; the old engine is closed once its grace period has passed. With
``processes`` above 1 the same loop runs in each worker of a pre-fork supervisor
(:mod:`mailwarden.mta.prefork`), which owns the socket and the metrics port.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from mailwarden.config import Config, apply_overrides, load_config
from mailwarden.engine import Engine
from mailwarden.metrics import Metrics
from mailwarden.mta import adapter
from mailwarden.options import ConfigError

log = logging.getLogger("mailwarden.mta.daemon")


class Runtime:
    """Holds the current engine; the only mutable process-wide state."""

    def __init__(self, config_path: str | None, overrides: dict[str, object], metrics: Metrics):
        self._config_path = config_path
        self._overrides = overrides
        self.metrics = metrics
        self._lock = threading.Lock()
        self._sessions = 0
        freeze_long_lived()  # the imports; the engine stays collectable (reloads replace it)
        self._engine = Engine(self.load(), metrics)

    @property
    def engine(self) -> Engine:
        return self._engine

    def load(self) -> Config:
        config = load_config(self._config_path)
        return apply_overrides(config, self._overrides)

    def reload(self) -> bool:
        try:
            new = Engine(self.load(), self.metrics)
        except (ConfigError, OSError) as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.metrics.reloads.labels("failure").inc()
            return False
        with self._lock:
            old, self._engine = self._engine, new
        grace = old.config.milter.timeout_seconds * 2 + 1
        threading.Timer(grace, old.close).start()
        self.metrics.reloads.labels("success").inc()
        log.info("configuration and models reloaded (%d detectors)", len(new.detectors))
        return True

    def session_started(self) -> None:
        with self._lock:
            self._sessions += 1

    def session_ended(self) -> None:
        with self._lock:
            self._sessions -= 1

    @property
    def sessions(self) -> int:
        with self._lock:
            return self._sessions


def freeze_long_lived() -> None:
    """Move every object alive now (the imported modules: nltk, SciPy and scikit-learn among
    them) out of the cyclic garbage collector's reach. A full collection otherwise walks them
    all, holding the interpreter lock for about 0.1 s while every message of the process waits.
    Called before an engine is built, so engines are never frozen and a reload's old engine is
    reclaimed as usual; in pre-fork mode the supervisor calls it before forking, so collections
    in the workers never write to (and copy) the pages they share with it."""
    gc.collect()
    gc.freeze()


def listen(config: Config) -> bool:
    try:
        adapter.listen(config.milter.name, config.milter.socket, config.milter.on_error)
    except Exception:  # pymilter's milter.error: bad spec, path, port in use
        log.exception("cannot listen on %s", config.milter.socket)
        return False
    return True


def serve_until_stopped(runtime: Runtime,
                        parent_alive: Callable[[], bool] | None = None) -> int:
    """libmilter's loop (on the socket :func:`adapter.listen` opened) on a background thread
    until SIGTERM/SIGINT, then drain; the single-process daemon and each pre-fork worker."""
    stopping = threading.Event()
    done = threading.Event()
    thread = threading.Thread(target=_serve, args=(runtime, done), name="libmilter", daemon=True)
    _install_signals(runtime, stopping)
    thread.start()
    while not stopping.is_set() and not done.is_set():
        stopping.wait(0.5)
        if parent_alive is not None and not parent_alive():
            log.error("supervisor process is gone: stopping")
            stopping.set()
    return _drain(runtime, thread, done)


def _serve(runtime: Runtime, done: threading.Event) -> None:
    try:
        adapter.serve_listener(runtime)
    except Exception:
        log.exception("milter loop failed")
    finally:
        done.set()


def _install_signals(runtime: Runtime, stopping: threading.Event) -> None:
    def on_hup(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=runtime.reload, name="reload", daemon=True).start()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)


def _drain(runtime: Runtime, thread: threading.Thread, done: threading.Event) -> int:
    failed = done.is_set()  # the loop ended by itself: it could not start or crashed
    if not failed:
        log.info("stopping: no new connections, draining %d session(s)", runtime.sessions)
        adapter.stop()
    deadline = time.monotonic() + runtime.engine.config.milter.timeout_seconds + 5
    while runtime.sessions > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    thread.join(timeout=2)
    runtime.engine.close()
    return 1 if failed else 0
