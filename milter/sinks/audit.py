"""The audit log: one JSON line per scored message, for long-term analysis and `mailwarden report`.

A decision sink (section ``[audit]``, on by default): after every final decision of the daemon it
appends one JSON object: queue ID, reference, time, direction, mode, verdict and applied action,
scores, finding types with counts and confidence, sender and recipient *domains*, the sender
identity as a keyed hash (or in clear, or not at all, as configured), and the versions of the
loaded models. Never a subject, content, evidence fragment or recipient address. Lines are written
with one ``write()`` on an ``O_APPEND`` descriptor under a lock, so concurrent scanner threads and
a reloaded engine's second sink never interleave; the file is reopened when its inode changes, so
logrotate may move it away (``create``) or truncate it (``copytruncate``). Default path:
``<state_dir>/audit.jsonl`` (``/var/lib/mailwarden/audit.jsonl`` when packaged).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailwarden.explain import contributions
from mailwarden.message import Message, domain_of
from mailwarden.metrics import ANOMALY_TYPE, Metrics, ModelInfo, anomaly_reasons
from mailwarden.options import Options
from mailwarden.sinks.base import register_sink
from mailwarden.sinks.keyfile import InstallSecret, keyed_hash
from mailwarden.verdict import Decision, Finding

if TYPE_CHECKING:
    from mailwarden.config import Config

log = logging.getLogger("mailwarden.sinks.audit")

SCHEMA = 1
SENDER_MODES = ("hashed", "clear", "none")
MAX_DOMAINS = 50
LOG_EVERY_SECONDS = 60.0


class AuditFile:
    """Append-only JSON-lines file, safe under threads, reopened after rotation."""

    def __init__(self, path: Path, mode: int = 0o640):
        self.path = path
        self._mode = mode
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        check_writable(path)  # opened on the first line: `check` must not create the file

    def _open(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self._mode)
        st = os.fstat(fd)
        self._fd, self._ident = fd, (st.st_dev, st.st_ino)

    def _rotated(self) -> bool:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=True,
                           sort_keys=False) + "\n").encode("ascii")
        with self._lock:
            if self._fd is None or self._rotated():
                self._open()
            assert self._fd is not None
            written = os.write(self._fd, line)
            if written != len(line):  # only on a full disk; never leave half a line behind
                raise OSError(f"short write to {self.path} ({written} of {len(line)} bytes)")

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def check_writable(path: Path) -> None:
    """OSError unless ``path`` can be appended to, or created (without creating anything)."""
    if path.exists():
        if path.is_dir() or not os.access(path, os.W_OK):
            raise OSError(f"audit log {path} is not a writable file")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OSError(f"audit log {path} cannot be created ({parent} is not writable)")


def finding_rows(findings: tuple[Finding, ...]) -> list[dict[str, Any]]:
    """Findings grouped by detector and type: counts and the highest confidence, no evidence."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for f in findings:
        row = rows.setdefault((f.detector, f.type), {
            "detector": f.detector, "type": f.type, "count": 0, "confidence": f.confidence.value,
            "score": 0.0})
        row["count"] += f.count
        row["score"] = round(row["score"] + f.score, 4)
        if f.confidence.rank > ("low", "medium", "high").index(row["confidence"]):
            row["confidence"] = f.confidence.value
        if f.type == ANOMALY_TYPE:
            row["reasons"] = list(anomaly_reasons(f))
    return list(rows.values())


def audit_record(message: Message, decision: Decision, sender: str | None,
                 models: dict[str, ModelInfo], now: float | None = None) -> dict[str, Any]:
    env = message.envelope
    at = env.received_at or (time.time() if now is None else now)
    domains = sorted({d for d in (domain_of(r) for r in env.recipients) if d})
    record: dict[str, Any] = {
        "v": SCHEMA,
        "time": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
        "queue_id": env.queue_id, "ref": decision.ref, "direction": env.direction.value,
        "mode": decision.mode, "verdict": decision.verdict.value,
        "action": decision.action.value, "score": round(decision.score, 4),
        "scores": {k: round(v, 4) for k, v in sorted(decision.scores.items())},
        "findings": finding_rows(decision.findings),
        # What the total is made of, per detector (scores add up across detectors).
        "contributions": contributions(decision.findings),
        "sender_domain": domain_of(env.mail_from),
        "authenticated": bool(env.auth_user),
        "recipients": len(env.recipients),
        "recipient_domains": domains[:MAX_DOMAINS],
        "size": message.size, "truncated": message.truncated,
        "seconds": round(decision.seconds, 4),
        "reasons": list(decision.reasons), "errors": list(decision.errors),
        "models": {name: {"model": m.model, "version": m.version, "trained": m.trained}
                   for name, m in sorted(models.items())},
    }
    if sender is not None:
        record["sender"] = sender
    return record


class AuditSink:
    name = "audit"

    def __init__(self, file: AuditFile, sender_mode: str, secret: InstallSecret | None,
                 metrics: Metrics):
        self.file = file
        self._sender_mode = sender_mode
        self._secret = secret
        self._metrics = metrics
        self._last_error = -LOG_EVERY_SECONDS
        self._error_lock = threading.Lock()

    def sender(self, message: Message) -> str | None:
        identity = message.envelope.sender_identity
        if self._sender_mode == "none" or not identity:
            return None
        if self._sender_mode == "clear" or self._secret is None:
            return identity
        return keyed_hash(self._secret.derive("audit-sender"), identity)

    def handle(self, message: Message, decision: Decision) -> None:
        record = audit_record(message, decision, self.sender(message), self._metrics.models())
        try:
            self.file.append(record)
        except OSError as exc:
            self._metrics.audit_records.labels("failed").inc()
            self._log_failure(exc)
            return
        self._metrics.audit_records.labels("written").inc()

    def _log_failure(self, exc: OSError) -> None:
        now = time.monotonic()
        with self._error_lock:
            if now - self._last_error < LOG_EVERY_SECONDS:
                return
            self._last_error = now
        log.error("audit log %s not written: %s", self.file.path, exc)

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True, slots=True)
class Settings:
    enabled: bool
    path: Path
    senders: str
    key_file: Path


def read_settings(options: Options, state_dir: Path) -> Settings:
    settings = Settings(
        enabled=options.get_bool("enabled", True),
        path=Path(options.get_str("path", "") or state_dir / "audit.jsonl"),
        senders=options.get_str("senders", "hashed", SENDER_MODES),
        key_file=Path(options.get_str("key_file", "") or state_dir / "mailwarden.key"),
    )
    options.finish()
    return settings


@register_sink("audit")
def build(options: Options, config: Config, metrics: Metrics) -> AuditSink | None:
    settings = read_settings(options, config.state_dir)
    if not settings.enabled:
        return None
    secret = InstallSecret(settings.key_file) if settings.senders == "hashed" else None
    return AuditSink(AuditFile(settings.path), settings.senders, secret, metrics)
