"""The ``quarantine`` decision sink: records, per queue ID, why the MTA was told to hold a message.

It sits after the policy in the daemon: for every final decision whose applied action is
quarantine, it writes a :class:`~mailwarden.quarantine.store.HeldRecord` (verdict, scores,
finding types and masked evidence, model versions, reference, time, sender domain and hashed
addresses) to the quarantine store, keyed by the queue ID the MTA gave the message (macro ``i``),
which is what joins the record with the MTA's hold queue in ``mailwarden quarantine``. Settings
come from the ``[quarantine]`` section (:func:`read_settings`, shared with the review CLI). The
sink also exports the store's counts as Prometheus metrics (held messages, expiries and reviews,
including those run from a timer by the CLI) through a collector that reads the store on scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailwarden.message import Message, domain_of
from mailwarden.options import Options
from mailwarden.quarantine.records import HeldRecord
from mailwarden.quarantine.store import FILENAME, QuarantineStore, StoreError
from mailwarden.sinks.base import register_sink
from mailwarden.verdict import Action, Decision

if TYPE_CHECKING:
    from mailwarden.config import Config
    from mailwarden.metrics import Metrics

log = logging.getLogger("mailwarden.quarantine.sink")

MTAS = ("postfix", "sendmail")
EXPIRE_ACTIONS = ("delete", "release")


@dataclass(frozen=True, slots=True)
class QuarantineSettings:
    enabled: bool
    database: Path
    mta: str
    postfix_config: str
    sendmail_config: str
    sendmail_path: str
    expire_after_days: float  # 0: held messages never expire
    expire_action: str
    retention_days: float


def read_settings(options: Options, config: Config) -> QuarantineSettings:
    """The ``[quarantine]`` section (every key has a default; unknown keys are refused)."""
    settings = QuarantineSettings(
        enabled=options.get_bool("enabled", True),
        database=Path(config.state_dir) / FILENAME,
        mta=options.get_str("mta", "postfix", MTAS),
        postfix_config=options.get_str("postfix_config", ""),
        sendmail_config=options.get_str("sendmail_config", ""),
        sendmail_path=options.get_str("sendmail_path", "sendmail"),
        expire_after_days=options.get_number("expire_after_days", 14.0, minimum=0.0),
        expire_action=options.get_str("expire_action", "delete", EXPIRE_ACTIONS),
        retention_days=options.get_number("retention_days", 180.0, minimum=1.0),
    )
    options.finish()
    return settings


def build_record(message: Message, decision: Decision, store: QuarantineStore,
                 models: dict[str, str]) -> HeldRecord:
    env = message.envelope
    recipients = tuple(r.strip().lower() for r in env.recipients)
    return HeldRecord(
        queue_id=env.queue_id or "NOQUEUE",
        ref=decision.ref,
        created=env.received_at or time.time(),
        verdict=decision.verdict.value,
        mode=decision.mode,
        score=round(decision.score, 6),
        scores={k: round(float(v), 6) for k, v in decision.scores.items()},
        findings=tuple(f.as_dict() for f in decision.findings),
        reasons=decision.reasons,
        models=models,
        direction=env.direction.value,
        sender_domain=domain_of(env.mail_from),
        sender_hash=store.hash(env.mail_from),
        recipient_hashes=tuple(store.hash(r) for r in recipients),
        recipient_domains=tuple(sorted({domain_of(r) for r in recipients} - {""})),
        size=message.size,
    )


def model_versions(metrics: Metrics) -> dict[str, str]:
    """Model name, version and training date of each detector the current engine loaded (as
    the engine reported them to the metrics, ``mailwarden_model_info``)."""
    return {name: " ".join(p for p in (m.model, m.version, m.trained) if p)
            for name, m in sorted(metrics.models().items())}


class QuarantineSink:
    name = "quarantine"

    def __init__(self, settings: QuarantineSettings, metrics: Metrics):
        self._settings = settings
        self._metrics = metrics
        self._lock = threading.Lock()
        self._store: QuarantineStore | None = None

    def _open(self) -> QuarantineStore:
        # Opened on first use, so `mailwarden check` never creates files in the state directory.
        with self._lock:
            if self._store is None:
                self._store = QuarantineStore(self._settings.database)
            return self._store

    def handle(self, message: Message, decision: Decision) -> None:
        if decision.action is not Action.QUARANTINE:
            return
        store = self._open()
        record = build_record(message, decision, store, model_versions(self._metrics))
        store.add(record)
        log.info("qid=%s quarantine record written ref=%s findings=%s", record.queue_id,
                 record.ref, decision.finding_summary or "none")

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


class QuarantineCollector(Collector):
    """Store counts as metrics, read on each scrape (so expiries run by the CLI count too)."""

    def __init__(self, database: Path):
        self._database = database

    def describe(self) -> list[Metric]:
        return list(_families({}, 0, 0))

    def collect(self) -> Iterator[Metric]:
        if not self._database.exists():
            yield from _families({}, 0, 0)
            return
        try:
            store = QuarantineStore(self._database, create=False, busy_timeout_ms=1000)
        except StoreError as exc:
            log.warning("quarantine metrics unavailable: %s", exc)
            return
        try:
            yield from _families(store.counters(), store.held_count(), len(store.allow_entries()))
        finally:
            store.close()


def _families(counts: dict[tuple[str, str], int], held: int, allowed: int) -> Iterator[Metric]:
    gauge = GaugeMetricFamily("mailwarden_quarantine_held",
                              "Messages held by mailwarden and not yet reviewed or expired")
    gauge.add_metric([], held)
    yield gauge
    for name, text, label, values in (
        ("expired", "Held messages expired unreviewed, by the action taken", "action",
         ("delete", "release")),
        ("reviewed", "Held messages released or deleted by a reviewer", "action",
         ("release", "delete")),
        ("feedback", "Reviews marked as a false positive or a confirmed leak", "label",
         ("false_positive", "confirmed_leak")),
        ("reconciled", "Held messages that left the hold queue outside mailwarden (released "
         "or deleted with the MTA's own tools), as found by reconciliation", "state",
         ("released_externally", "gone")),
    ):
        family = CounterMetricFamily(f"mailwarden_quarantine_{name}", text, labels=[label])
        for value in values:
            family.add_metric([value], counts.get((name, value), 0))
        yield family
    entries = GaugeMetricFamily("mailwarden_quarantine_allowlist_entries",
                                "Active allow-list entries added by reviewers")
    entries.add_metric([], allowed)
    yield entries


def register_metrics(metrics: Metrics, database: Path) -> None:
    """Export the store's counts once per process (a reload builds a new sink, same metrics)."""
    with suppress(ValueError):  # already registered by the engine this one replaces
        metrics.registry.register(QuarantineCollector(database))


@register_sink("quarantine")
def build(options: Options, config: Config, metrics: Metrics) -> QuarantineSink | None:
    settings = read_settings(options, config)
    if not settings.enabled:
        return None
    register_metrics(metrics, settings.database)
    return QuarantineSink(settings, metrics)
