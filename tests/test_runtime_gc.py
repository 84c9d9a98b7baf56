"""The daemon keeps its imported modules out of the cyclic collector's walks; engines stay
collectable.

A full collection walks every container object: with nltk, SciPy and scikit-learn imported that
held the interpreter lock for about 0.1 s (``docs/performance.md``), a stall for every message of
the process. :class:`Runtime` freezes what is alive before it builds its engine, so a reload's
old engine is still reclaimed by the collector like any garbage.
"""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path

from mailwarden.metrics import Metrics
from mailwarden.mta.daemon import Runtime

from conftest import write_config


def test_runtime_freezes_the_imports_before_building_its_engine(tmp_path: Path) -> None:
    gc.unfreeze()
    try:
        runtime = Runtime(str(write_config(tmp_path)), {}, Metrics())
        assert gc.get_freeze_count() > 1000
        assert not gc.is_finalized(runtime.engine)
        assert any(o is runtime.engine for o in gc.get_objects(generation=0)
                   + gc.get_objects(generation=1) + gc.get_objects(generation=2))
        runtime.engine.close()
    finally:
        gc.unfreeze()


def test_a_reloaded_engine_is_reclaimed_by_the_collector(tmp_path: Path) -> None:
    gc.unfreeze()
    try:  # budget 0.05 s: the old engine is closed 1.1 s after the reload
        runtime = Runtime(str(write_config(tmp_path, timeout=0.05)), {}, Metrics())
        old = runtime.engine
        cycle: list[object] = [old]
        cycle.append(cycle)  # garbage only the cyclic collector can reclaim
        old.attached_cycle = cycle  # type: ignore[attr-defined]
        gone = weakref.ref(old)
        assert runtime.reload()
        assert runtime.engine is not old
        del old, cycle
        deadline = time.monotonic() + 10
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            gc.collect()
        assert gone() is None
        runtime.engine.close()
    finally:
        gc.unfreeze()
