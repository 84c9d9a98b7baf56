"""Configuration of the ``sending`` detector: its options, model directory and state store.

The factory in :mod:`mailwarden.detectors.sending.detector` calls :func:`read_settings` on the
``[detectors.sending]`` table (every key is checked here, then ``options.finish()``), then
:func:`open_bundle` and :func:`open_store`. The run mode decides the store: ``score`` is stateless
(org prior only), ``replay`` gets fresh in-memory state, ``milter`` the configured SQLite file or
Redis server. A missing model, a missing redis-py or an unusable SQLite path make the detector
unavailable; a Redis server that is down at start is not fatal (the detector retries).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailwarden.detectors.base import DetectorContext, DetectorUnavailable
from mailwarden.detectors.sending.anomaly_models import MODEL_KINDS, Bundle, load_bundle
from mailwarden.detectors.sending.features import WEBMAIL_DOMAINS, FeatureConfig
from mailwarden.detectors.sending.hold import HoldPolicy
from mailwarden.detectors.sending.holds import HoldRegistry, MemoryHolds, RedisHolds, SqliteHolds
from mailwarden.detectors.sending.names import FEATURES
from mailwarden.detectors.sending.state import MemoryStore, NullStore, StateStore, StoreUnavailable
from mailwarden.options import Options

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# What a high-confidence anomaly or a sender hold asks the policy for ("none": headers only).
ACTIONS = ("none", "quarantine", "tempfail", "reject")


@dataclass(frozen=True)
class Settings:
    model: str
    model_dir: Path
    store: str
    sqlite_path: Path
    redis_url: str
    redis_prefix: str
    redis_timeout: float
    retention_days: float
    max_senders: int
    report_above: float
    high_above: float
    on_high_confidence: str
    on_sender_hold: str
    hold: HoldPolicy
    features: FeatureConfig
    retry_seconds: float
    retry_max_seconds: float
    log_every_seconds: float


def _timezone(options: Options, context: DetectorContext) -> str:
    name = options.get_opt_str("timezone") or context.timezone
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise options.error("timezone", f"unknown time zone {name!r}") from None
    return name


def read_settings(options: Options, context: DetectorContext) -> Settings:
    model_dir = options.get_opt_str("model_dir")
    sqlite_path = options.get_opt_str("sqlite_path")
    internal = [d.strip().lower() for d in options.get_str_list("internal_domains", [])]
    webmail = [d.strip().lower() for d in options.get_str_list("extra_webmail_domains", [])]
    features = FeatureConfig(timezone=_timezone(options, context),
                             internal_domains=frozenset(d for d in internal if d),
                             webmail_domains=WEBMAIL_DOMAINS + tuple(d for d in webmail if d))
    report_above = options.get_float("report_above", 0.6, minimum=0.0, maximum=1.0)
    settings = Settings(
        model=options.get_str("model", "isolation_forest", choices=MODEL_KINDS),
        model_dir=Path(model_dir) if model_dir else context.model_dir / "sending",
        store=options.get_str("store", "sqlite", choices=("sqlite", "redis")),
        sqlite_path=Path(sqlite_path) if sqlite_path else context.state_dir / "sending.sqlite",
        redis_url=options.get_str("redis_url", DEFAULT_REDIS_URL),
        redis_prefix=options.get_str("redis_prefix", "mailwarden:sending:"),
        redis_timeout=options.get_number("redis_timeout_seconds", 0.5, minimum=0.01),
        retention_days=options.get_number("retention_days", 90.0, minimum=1.0),
        max_senders=options.get_int("max_senders", 200_000, minimum=10),
        report_above=0.6 if report_above is None else report_above,
        high_above=_share(options, "high_confidence_above", 0.98),
        on_high_confidence=options.get_str("on_high_confidence", "quarantine", ACTIONS),
        on_sender_hold=options.get_str("on_sender_hold", "quarantine", ACTIONS),
        hold=_hold_policy(options),
        features=features,
        retry_seconds=options.get_number("store_retry_seconds", 1.0, minimum=0.0),
        retry_max_seconds=options.get_number("store_retry_max_seconds", 30.0, minimum=0.0),
        log_every_seconds=options.get_number("log_every_seconds", 60.0, minimum=0.0),
    )
    options.finish()
    return settings


def _hold_policy(options: Options) -> HoldPolicy:
    return HoldPolicy(
        enabled=options.get_bool("sender_hold", True),
        above=_share(options, "hold_above", 0.9),
        count=_hold_count(options),
        window=options.get_number("hold_window_seconds", 600.0, minimum=1.0),
        extreme=_share(options, "hold_extreme_above", 0.999),
    )


def _share(options: Options, key: str, default: float) -> float:
    value = options.get_float(key, default, minimum=0.0, maximum=1.0)
    return default if value is None else value


def _hold_count(options: Options) -> int:
    count = options.get_int("hold_count", 3, minimum=1)
    if count > 3:
        raise options.error("hold_count", "at most 3 (messages within hold_window_seconds)")
    return count


def open_holds(settings: Settings, context: DetectorContext) -> HoldRegistry | None:
    """Where sender holds are listed: next to the state (None when stateless)."""
    if context.run_mode == "score":
        return None
    if context.run_mode == "replay":
        return MemoryHolds()
    try:
        if settings.store == "redis":
            return RedisHolds(settings.redis_url, settings.redis_prefix, settings.redis_timeout)
        return SqliteHolds(settings.sqlite_path)
    except StoreUnavailable as exc:
        raise DetectorUnavailable(str(exc)) from exc


def open_bundle(settings: Settings) -> Bundle:
    try:
        bundle = load_bundle(settings.model_dir, (settings.model,))
    except (OSError, ValueError, KeyError) as exc:
        raise DetectorUnavailable(f"sending model in {settings.model_dir}: {exc}") from exc
    if settings.model not in bundle.scorers:
        raise DetectorUnavailable(f"{settings.model_dir} has no {settings.model} model")
    if tuple(bundle.manifest.get("features", ())) != FEATURES:
        raise DetectorUnavailable(f"{settings.model_dir}: model built for other features")
    return bundle


def open_store(settings: Settings, context: DetectorContext) -> StateStore:
    if context.run_mode == "score":
        return NullStore()
    if context.run_mode == "replay":
        return MemoryStore()
    retention = settings.retention_days * 86400.0
    try:
        if settings.store == "redis":
            from mailwarden.detectors.sending.state_redis import RedisStore

            return RedisStore(settings.redis_url, prefix=settings.redis_prefix,
                              ttl_seconds=int(retention), timeout_seconds=settings.redis_timeout)
        from mailwarden.detectors.sending.state_sqlite import SqliteStore

        return SqliteStore(settings.sqlite_path, retention_seconds=retention,
                           max_senders=settings.max_senders)
    except StoreUnavailable as exc:
        raise DetectorUnavailable(str(exc)) from exc
