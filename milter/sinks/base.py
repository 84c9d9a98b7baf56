"""Decision sinks: what happens after the policy has decided (audit log, notifications, quarantine).

The daemon's engine hands every final :class:`~mailwarden.verdict.Decision` (including fail-open
decisions after errors or timeouts) with its message snapshot to each enabled sink. Sinks are
registered by name like detectors, each configured by its own top-level TOML section (``[audit]``,
``[notify]``, ``[quarantine]``), and must return quickly: slow work (sending mail) belongs on the
sink's own background thread. A sink that raises is logged and counted, never fatal to the
message. ``score`` and ``replay`` run without sinks.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mailwarden.config import SINK_SECTIONS, Config
from mailwarden.message import Message
from mailwarden.options import Options
from mailwarden.verdict import Decision

if TYPE_CHECKING:
    from mailwarden.metrics import Metrics

log = logging.getLogger("mailwarden.sinks.base")

# Modules under mailwarden that register sinks when imported (each adds its section name).
BUILTIN_SINKS: tuple[str, ...] = ("sinks.audit", "notify.sink", "quarantine.sink")


class DecisionSink(Protocol):
    name: str

    def handle(self, message: Message, decision: Decision) -> None: ...

    def close(self) -> None: ...


# A factory reads its section (and calls ``options.finish()``); it returns None when the section
# leaves the sink disabled.
SinkFactory = Callable[[Options, "Config", "Metrics"], DecisionSink | None]


@dataclass(frozen=True, slots=True)
class SinkRegistration:
    name: str
    factory: SinkFactory


_SINKS: dict[str, SinkRegistration] = {}


def register_sink(name: str) -> Callable[[SinkFactory], SinkFactory]:
    if name not in SINK_SECTIONS:
        raise RuntimeError(f"sink {name!r} has no config section in SINK_SECTIONS")

    def wrap(factory: SinkFactory) -> SinkFactory:
        if name in _SINKS:
            raise RuntimeError(f"sink {name!r} registered twice")
        _SINKS[name] = SinkRegistration(name, factory)
        return factory

    return wrap


def sink_registrations() -> dict[str, SinkRegistration]:
    for module in BUILTIN_SINKS:
        importlib.import_module(f"mailwarden.{module}")
    return dict(_SINKS)


def build_sinks(config: Config, metrics: Metrics) -> tuple[DecisionSink, ...]:
    """Every sink whose section enables it, in registration order."""
    out = []
    registered = sink_registrations()
    for name in SINK_SECTIONS:
        if name not in registered:
            config.sections[name].finish()  # nothing reads this section: any key is unknown
            continue
        sink = registered[name].factory(config.sections[name], config, metrics)
        if sink is not None:
            out.append(sink)
    return tuple(out)


def deliver(sinks: tuple[DecisionSink, ...], message: Message, decision: Decision,
            on_error: Callable[[str], None]) -> None:
    for sink in sinks:
        try:
            sink.handle(message, decision)
        except Exception:
            log.exception("qid=%s sink %s failed", message.envelope.queue_id, sink.name)
            on_error(sink.name)
