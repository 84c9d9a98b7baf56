"""Detectors: everything that scores a message, registered by name (see :mod:`.base`).

The built-in detector modules are listed in :data:`BUILTIN` and imported on first use of the
registry; an optional third-party library missing makes the detector report itself unavailable at
build time, never an import error here.
"""

from __future__ import annotations

import importlib

# Module names under mailwarden.detectors that register detectors when imported.
BUILTIN: tuple[str, ...] = (
    "testmarker", "content.detector", "leak.detector", "sending.detector", "allowlist")


def load_builtin() -> None:
    for name in BUILTIN:
        importlib.import_module(f"mailwarden.detectors.{name}")
