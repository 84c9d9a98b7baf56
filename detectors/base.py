"""The detector interface and its registry.

A detector sits between the message snapshot and the policy: it reads a
:class:`mailwarden.message.Message` and returns a :class:`mailwarden.verdict.DetectorResult` (raw
scores and findings), never an action. Detectors register a factory by name with :func:`register`;
the engine builds the ones the config enables. A factory that cannot work (model file missing,
backend down, optional library absent) raises :class:`DetectorUnavailable`: the engine then
disables and reports that detector, or refuses to start if the config marks it ``required``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mailwarden.message import Message
from mailwarden.options import Options
from mailwarden.verdict import DetectorResult


class DetectorUnavailable(Exception):
    """The detector cannot run here; the reason is shown by ``mailwarden check`` and in logs."""


@dataclass(frozen=True, slots=True)
class DetectorContext:
    """What a factory may use besides its own options."""

    model_dir: Path
    state_dir: Path
    # "milter": long-lived state; "score": stateless; "replay": fresh in-memory state.
    run_mode: str = "milter"
    timezone: str = "UTC"


class Detector(Protocol):
    name: str

    def analyse(self, message: Message) -> DetectorResult: ...

    def describe(self) -> dict[str, str]:
        """Model name, version, training date etc. for ``check`` and the model-info metric."""
        ...

    def close(self) -> None: ...


# A factory reads its own options (and must call ``options.finish()``), then returns a detector.
DetectorFactory = Callable[[Options, DetectorContext], Detector]


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    factory: DetectorFactory
    default_enabled: bool
    summary: str


_REGISTRY: dict[str, Registration] = {}


def register(
    name: str, *, summary: str, default_enabled: bool = True
) -> Callable[[DetectorFactory], DetectorFactory]:
    """Class or function decorator: ``@register("leak", summary="...")``. Import time only."""

    def wrap(factory: DetectorFactory) -> DetectorFactory:
        if name in _REGISTRY:
            raise RuntimeError(f"detector {name!r} registered twice")
        _REGISTRY[name] = Registration(name, factory, default_enabled, summary)
        return factory

    return wrap


def registrations() -> dict[str, Registration]:
    """All known detectors (importing the built-in detector modules first)."""
    from mailwarden.detectors import load_builtin
    load_builtin()
    return dict(_REGISTRY)


class BaseDetector:
    """Convenience base with no-op ``describe`` and ``close``."""

    name = "base"

    def describe(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        return None
