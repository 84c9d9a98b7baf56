"""The daemon keeps its long-lived objects out of the cyclic collector's walks, and a reload's
old engine is still reclaimed.

A full collection walks every container object: with a warm engine that held the interpreter
lock for about 120 ms (``docs/performance.md``), a stall for every message of the process.
:class:`Runtime` freezes what is alive once its engine is built; after a reload,
:func:`retire` closes the old engine, unfreezes, collects it and freezes again.
"""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path

from mailwarden.metrics import Metrics
from mailwarden.runtime import Runtime, retire

from conftest import write_config


def test_runtime_freezes_the_engine_and_its_imports(tmp_path: Path) -> None:
    gc.unfreeze()
    try:
        runtime = Runtime(str(write_config(tmp_path)), {}, Metrics())
        assert gc.get_freeze_count() > 1000
        assert gc.get_referents(runtime.engine)  # alive and reachable
    finally:
        gc.unfreeze()


def test_a_retired_engine_is_reclaimed_even_though_it_was_frozen(tmp_path: Path) -> None:
    gc.unfreeze()
    try:  # budget 0.05 s: the old engine is retired 1.1 s after the reload
        runtime = Runtime(str(write_config(tmp_path, timeout=0.05)), {}, Metrics())
        old = runtime.engine
        cycle: list[object] = [old]
        cycle.append(cycle)  # garbage only the cyclic collector can reclaim
        old.attached_cycle = cycle  # type: ignore[attr-defined]
        gone = weakref.ref(old)
        assert runtime.reload()
        assert runtime.engine is not old
        del old, cycle
        gc.collect()
        assert gone() is not None  # frozen (and held by the reload's timer) until retired
        deadline = time.monotonic() + 10
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone() is None
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # the collection that reclaimed it runs just before the freeze
        assert gc.get_freeze_count() > 1000  # what is alive was frozen again
    finally:
        gc.unfreeze()


def test_retire_takes_the_engine_out_of_its_holder(tmp_path: Path) -> None:
    gc.unfreeze()
    try:
        runtime = Runtime(str(write_config(tmp_path)), {}, Metrics())
        holder = [runtime.engine]
        retire(holder)
        assert holder == []
    finally:
        gc.unfreeze()
