"""Merging the workers' metrics in pre-fork mode: sums, maxima, one copy of shared families."""

from __future__ import annotations

import socket
import threading

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from mailwarden.metrics import Metrics
from mailwarden.mta.prefork_metrics import Carry, Channel, exposition, merge, start_answering
from mailwarden.verdict import Action, Decision, Direction


class _Shared:
    """A scrape-time collector reading shared state (like the anomalous-senders gauge)."""

    def __init__(self, value: float):
        self.value = value

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily("mailwarden_shared_thing", "shared state")
        family.add_metric([], self.value)
        yield family


def worker_metrics(messages: int, shared: float) -> Metrics:
    metrics = Metrics()
    metrics.detectors_loaded([("content", {"model": "m", "version": "1"})], [])
    decision = Decision(verdict=Action.ACCEPT, action=Action.ACCEPT, score=0.0, scores={},
                        findings=(), reasons=(), ref="MW-1", mode="observe")
    for _ in range(messages):
        metrics.record(decision, Direction.OUTBOUND, 2048)
        metrics.scan_seconds.labels("total").observe(0.003)
    metrics.registry.register(_Shared(shared))
    return metrics


def samples(families) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_counters_and_histograms_are_summed_gauges_and_shared_families_are_not() -> None:
    parts = [exposition(worker_metrics(3, 7.0)), exposition(worker_metrics(5, 7.0))]
    merged = samples(merge([str(p["own"]) for p in parts], str(parts[0]["shared"])))
    accept = (("action", "accept"), ("direction", "outbound"), ("mode", "observe"),
              ("verdict", "accept"))
    assert merged[("mailwarden_messages_total", accept)] == 8
    assert merged[("mailwarden_scan_duration_seconds_count", (("stage", "total"),))] == 8
    assert merged[("mailwarden_scan_duration_seconds_bucket",
                   (("le", "0.005"), ("stage", "total")))] == 8
    assert merged[("mailwarden_message_size_bytes_sum", ())] == 8 * 2048
    enabled = (("detector", "content"), ("state", "enabled"))
    assert merged[("mailwarden_detector_enabled", enabled)] == 1  # a gauge: not 2
    assert merged[("mailwarden_shared_thing", ())] == 7  # read from shared state: once


def test_merged_families_render_as_valid_exposition() -> None:
    parts = [exposition(worker_metrics(2, 1.0)) for _ in range(3)]
    merged = merge([str(p["own"]) for p in parts], str(parts[0]["shared"]))
    registry = CollectorRegistry()

    class Fixed:
        def collect(self):  # type: ignore[no-untyped-def]
            return merged

    registry.register(Fixed())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    again = samples(text_string_to_metric_families(text))
    assert again[("mailwarden_messages_total", (("action", "accept"), ("direction", "outbound"),
                                                ("mode", "observe"), ("verdict", "accept")))] == 6
    assert "# TYPE mailwarden_messages_total counter" in text


def test_a_worker_answers_scrapes_over_its_socket_pair() -> None:
    parent, child = socket.socketpair()
    metrics = worker_metrics(4, 2.0)
    stop = threading.Event()
    start_answering(child, metrics, stop.is_set)
    channel = Channel(parent)
    for _ in range(2):  # sequence numbers keep request and answer paired
        frame = channel.scrape(timeout=5.0)
        assert frame is not None and "mailwarden_messages_total" in str(frame["own"])
        assert "mailwarden_shared_thing" in str(frame["shared"])
    stop.set()
    parent.close()
    child.close()
    assert channel.scrape(timeout=1.0) is None and channel.broken


def test_counts_of_a_dead_worker_are_carried_over_but_not_its_gauges() -> None:
    old = exposition(worker_metrics(5, 1.0))
    carry = Carry()
    carry.add(str(old["own"]))
    replacement = exposition(worker_metrics(2, 1.0))  # a new worker counts from zero
    merged = samples(merge([str(replacement["own"])], str(replacement["shared"]), carry))
    accept = (("action", "accept"), ("direction", "outbound"), ("mode", "observe"),
              ("verdict", "accept"))
    assert merged[("mailwarden_messages_total", accept)] == 7  # never below the 5 seen before
    assert merged[("mailwarden_scan_duration_seconds_count", (("stage", "total"),))] == 7
    enabled = (("detector", "content"), ("state", "enabled"))
    assert merged[("mailwarden_detector_enabled", enabled)] == 1
