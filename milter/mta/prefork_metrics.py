"""Metrics of a pre-forked daemon: each worker keeps its own registry, the parent serves one sum.

In pre-fork mode (:mod:`mailwarden.mta.prefork`) every worker process records into its own
:class:`~mailwarden.metrics.Metrics`, exactly as a single process does. The parent owns the one
metrics port: at each scrape it asks every worker over a private socket pair (:class:`Channel`,
no port, no file) for its exposition text and merges them (:func:`merge`). Families of the
worker's own instruments (the counters, histograms and gauges defined in ``Metrics``) are
combined across workers: counters and histograms summed, gauges (the same value in every worker,
such as detector and model info) by maximum, ``_created`` timestamps by minimum. Families read at
scrape time by custom collectors (current engine's scan budget, anomalous senders, state-store
health, quarantine counts) describe shared state, so they are taken from one worker, not summed.
When a worker dies, the counts it last reported are carried over (:class:`Carry`), so a merged
counter never goes down when a replacement starts from zero (which Prometheus would read as a
reset); what it counted after the last scrape is lost.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from mailwarden.metrics import Metrics

log = logging.getLogger("mailwarden.mta.prefork")
_LENGTH = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024
SUMMED_TYPES = ("counter", "histogram", "summary")
Key = tuple[str, tuple[tuple[str, str], ...]]


class ChannelClosed(Exception):
    """The other end went away or sent something unreadable."""


def send_frame(sock: socket.socket, payload: dict[str, object]) -> None:
    data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    sock.sendall(_LENGTH.pack(len(data)) + data)


def recv_frame(sock: socket.socket, timeout: float | None) -> dict[str, object]:
    """One length-prefixed JSON frame; :class:`ChannelClosed` on EOF, error or timeout."""
    head = _recv_exact(sock, _LENGTH.size, timeout)
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME:
        raise ChannelClosed(f"frame of {length} bytes")
    try:
        value = json.loads(_recv_exact(sock, length, timeout))
    except ValueError as exc:
        raise ChannelClosed(f"bad frame: {exc}") from exc
    if not isinstance(value, dict):
        raise ChannelClosed("frame is not an object")
    return value


def _recv_exact(sock: socket.socket, size: int, timeout: float | None) -> bytes:
    chunks, got = [], 0
    while got < size:
        if timeout is not None and not select.select([sock], [], [], timeout)[0]:
            raise ChannelClosed("timed out")
        try:
            chunk = sock.recv(size - got)
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc
        if not chunk:
            raise ChannelClosed("closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def exposition(metrics: Metrics) -> dict[str, object]:
    """A worker's answer to a scrape: its own instruments and its scrape-time families apart."""
    own = {family.name for obj in vars(metrics).values() if isinstance(obj, MetricWrapperBase)
           for family in obj.describe()}
    families = list(metrics.registry.collect())
    return {"own": _text(f for f in families if f.name in own),
            "shared": _text(f for f in families if f.name not in own)}


def _text(families: Iterable[Metric]) -> str:
    collected = list(families)

    class _Fixed:
        @staticmethod
        def collect() -> Iterator[Metric]:
            return iter(collected)

    return generate_latest(_Fixed()).decode("utf-8")  # type: ignore[arg-type]


def answer_scrapes(sock: socket.socket, metrics: Metrics, stopped: Callable[[], bool]) -> None:
    """Worker side: answer each request (a sequence number and a newline) with a frame."""
    reader = sock.makefile("rb")
    while not stopped():
        line = reader.readline()
        if not line:
            return  # the parent went away
        try:
            seq = int(line)
        except ValueError:
            continue
        send_frame(sock, {"seq": seq, **exposition(metrics)})


def start_answering(sock: socket.socket, metrics: Metrics, stopped: Callable[[], bool]) -> None:
    def run() -> None:
        try:
            answer_scrapes(sock, metrics, stopped)
        except (OSError, ChannelClosed):
            return

    threading.Thread(target=run, name="metrics-channel", daemon=True).start()


@dataclass
class Channel:
    """Parent side of one worker's socket pair (used from the parent's single thread)."""

    sock: socket.socket
    seq: int = 0
    broken: bool = False

    def scrape(self, timeout: float) -> dict[str, object] | None:
        if self.broken:
            return None
        self.seq += 1
        try:
            self.sock.sendall(b"%d\n" % self.seq)
            while True:  # a frame answering an earlier, timed-out request is skipped
                frame = recv_frame(self.sock, timeout)
                if frame.get("seq") == self.seq:
                    return frame
        except (OSError, ChannelClosed) as exc:
            log.warning("metrics of a worker unavailable: %s", exc)
            if not isinstance(exc, ChannelClosed) or str(exc) != "timed out":
                self.broken = True
            return None


@dataclass
class _Family:
    template: Metric
    samples: dict[Key, float] = field(default_factory=dict)


class Carry:
    """The counter and histogram totals of workers that have died, kept for every later merge."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}

    def add(self, own_text: str) -> None:
        _fold(self.families, own_text, counts_only=True)


def merge(own_texts: Iterable[str], shared_text: str | None,
          carry: Carry | None = None) -> list[Metric]:
    """Combine the workers' own families (sum / max / min by kind), the totals carried over
    from dead workers, and one copy of the shared families."""
    families: dict[str, _Family] = {}
    for text in own_texts:
        _fold(families, text)
    for name, dead in (carry.families if carry else {}).items():
        family = families.setdefault(name, _Family(dead.template))
        for key, value in dead.samples.items():
            family.samples[key] = family.samples.get(key, 0.0) + value
    out = [_rebuild(f) for f in families.values()]
    if shared_text:
        out.extend(text_string_to_metric_families(shared_text))  # type: ignore[no-untyped-call]
    return out


def _fold(families: dict[str, _Family], text: str, counts_only: bool = False) -> None:
    for metric in text_string_to_metric_families(text):  # type: ignore[no-untyped-call]
        if counts_only and metric.type not in SUMMED_TYPES:
            continue
        family = families.setdefault(metric.name, _Family(metric))
        for sample in metric.samples:
            if counts_only and sample.name.endswith("_created"):
                continue
            key = (sample.name, tuple(sorted(sample.labels.items())))
            old = family.samples.get(key)
            family.samples[key] = (sample.value if old is None
                                   else _combine(metric.type, sample.name, old, sample.value))


def _combine(kind: str, sample: str, old: float, new: float) -> float:
    if sample.endswith("_created"):
        return min(old, new)
    if kind in SUMMED_TYPES:
        return old + new
    return max(old, new)


def _rebuild(family: _Family) -> Metric:
    t = family.template
    metric = Metric(t.name, t.documentation, t.type, t.unit)
    for (name, labels), value in family.samples.items():
        metric.add_sample(name, dict(labels), value)
    return metric
