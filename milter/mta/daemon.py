"""The daemon: owns the one current engine, swaps it on SIGHUP and drains on SIGTERM.

``mailwarden run`` builds a :class:`Runtime` from the config, starts the metrics endpoint, and runs
libmilter's loop on a background thread while the main thread waits for signals (libmilter blocks
SIGHUP/SIGTERM in its own threads; the kernel hands a process signal to the main thread, which does
not block them). A reload builds a complete new engine first and swaps it in only if it loads; a
failed reload keeps the old engine and is logged and counted. Connections in flight keep the engine
they started with; the old engine is closed once its grace period has passed. With ``processes``
above 1 the same loop runs in each worker of a pre-fork supervisor (:mod:`mailwarden.mta.prefork`),
which owns the socket and the metrics port; there worker 0 speaks for all at start, reload and stop
(one log line, one ``config_reloads_total`` count per SIGHUP) and the other workers log only errors
then. SIGTERM removes the unix socket file and returns as soon as no session is in flight
(libmilter's accept loop is not waited for: ``smfi_stop`` takes effect only at its next poll
timeout, up to 5 s later).
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
_lifecycle = threading.local()  # .quiet: this thread builds an engine in a silent worker


class _QuietLifecycle(logging.Filter):
    """Drops records below ERROR logged while this thread builds an engine (start, reload) in a
    pre-fork worker other than worker 0: worker 0 logs the same lines once for all."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not getattr(_lifecycle, "quiet", False)


def _install_quiet_filter() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _QuietLifecycle) for f in handler.filters):
            handler.addFilter(_QuietLifecycle())


class Runtime:
    """Holds the current engine; the only mutable process-wide state."""

    def __init__(self, config_path: str | None, overrides: dict[str, object], metrics: Metrics):
        self._config_path = config_path
        self._overrides = overrides
        self.metrics = metrics
        self._lock = threading.Lock()
        self._sessions = 0
        freeze_long_lived()  # the imports; the engine stays collectable (reloads replace it)
        self.announces = int(str(overrides.get("worker_index") or 0)) == 0
        if not self.announces:
            _install_quiet_filter()
        _lifecycle.quiet = not self.announces
        try:
            self._engine = Engine(self.load(), metrics)
        finally:
            _lifecycle.quiet = False

    @property
    def engine(self) -> Engine:
        return self._engine

    def load(self) -> Config:
        config = load_config(self._config_path)
        return apply_overrides(config, self._overrides)

    def reload(self) -> bool:
        """Build a new engine and swap it in; in pre-fork mode only worker 0 counts the reload
        (``config_reloads_total`` is summed over the workers) and logs its success."""
        _lifecycle.quiet = not self.announces
        try:
            new = Engine(self.load(), self.metrics)
        except (ConfigError, OSError) as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            self._count_reload("failure")
            return False
        finally:
            _lifecycle.quiet = False
        with self._lock:
            old, self._engine = self._engine, new
        grace = old.config.milter.timeout_seconds * 2 + 1
        timer = threading.Timer(grace, old.close)
        timer.daemon = True  # a stop soon after a reload must not wait for it
        timer.start()
        self._count_reload("success")
        if self.announces:
            milter = new.config.milter
            log.info("configuration and models reloaded: mode=%s, on_error=%s, detectors=%s",
                     milter.mode, milter.on_error.value,
                     ",".join(d.name for d in new.detectors) or "none")
        return True

    def _count_reload(self, result: str) -> None:
        if self.announces:
            self.metrics.reloads.labels(result).inc()

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


def serve_until_stopped(runtime: Runtime, parent_alive: Callable[[], bool] | None = None,
                        on_stop: Callable[[], object] | None = None) -> int:
    """libmilter's loop (on the socket :func:`adapter.listen` opened) on a background thread
    until SIGTERM/SIGINT, then ``on_stop`` (remove the socket file) and drain; the
    single-process daemon and each pre-fork worker."""
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
    if on_stop is not None:
        on_stop()
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
        if runtime.announces or runtime.sessions:
            log.info("stopping: no new connections, draining %d session(s)", runtime.sessions)
        # smfi_stop() waits for libmilter's listener lock, held through each poll of up to 5 s
        threading.Thread(target=adapter.stop, name="milter-stop", daemon=True).start()
    deadline = time.monotonic() + runtime.engine.config.milter.timeout_seconds + 5
    while time.monotonic() < deadline:
        if runtime.sessions == 0:
            time.sleep(0.05)  # one accepted just before stop() may still be starting
            if runtime.sessions == 0:
                break
        time.sleep(0.05)
    thread.join(timeout=0.1)  # libmilter sees stop() at its next poll timeout (5 s): not awaited
    runtime.engine.close()
    return 1 if failed else 0
