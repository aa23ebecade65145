"""Service configuration, read from the environment once by the CLI and passed to create_app."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


SYNCHRONOUS_COMMIT_LEVELS = ("on", "remote_write", "remote_apply", "local")


@dataclass(frozen=True)
class Config:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    pool_min_size: int = 2
    pool_max_size: int = 20
    pool_acquire_timeout_s: float = 5.0
    statement_timeout_ms: int = 5000
    lock_timeout_ms: int = 2000
    max_body_bytes: int = 1024 * 1024
    idempotency_retention_hours: int = 24
    api_key_cache_ttl_s: float = 1.0  # a revoked key keeps working at most this long
    migrate_on_start: bool = False  # `ledgerd serve` without --no-migrate: as soon as the database answers
    body_timeout_s: float = 30.0  # a request body must arrive within this (408)
    log_level: str = "info"
    access_log: bool = True
    # PostgreSQL synchronous_commit for every connection: a 2xx means the command is flushed to the WAL.
    # Only levels that wait for the local flush are accepted ("off" would break that guarantee).
    synchronous_commit: str = "on"
    # Per API key token bucket (service/ratelimit.py); 0 = off (the default).
    rate_limit_rps: float = 0.0
    rate_limit_burst: int = 0
    # Group commit (service/commands/group_commit.py): lanes of shared transactions; 0 = one per command.
    group_commit_lanes: int = 16
    # `ledgerd serve --ephemeral` (service/testmode.py): any sk_test_ key is its own account, /_ledger/ control API.
    ephemeral: bool = False
    # Stripe's behaviour where ledgerd deliberately differs: extensions refused, case-sensitive list `email`.
    strict: bool = False
    # Search sees a write only this many seconds after it (Stripe's search is eventually consistent).
    search_lag_s: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, database_url: str | None = None, **overrides: object) -> Config:
        url = database_url or os.environ.get("DATABASE_URL", "")
        values: dict[str, object] = {
            "database_url": url,
            "pool_min_size": env_int("LEDGER_POOL_MIN", 2),
            "pool_max_size": env_int("LEDGER_POOL_MAX", 20),
            "pool_acquire_timeout_s": env_float("LEDGER_POOL_TIMEOUT_S", 5.0),
            "statement_timeout_ms": env_int("LEDGER_STATEMENT_TIMEOUT_MS", 5000),
            "lock_timeout_ms": env_int("LEDGER_LOCK_TIMEOUT_MS", 2000),
            "idempotency_retention_hours": env_int("LEDGER_IDEMPOTENCY_HOURS", 24),
            "log_level": os.environ.get("LEDGER_LOG_LEVEL", "info"),
            "body_timeout_s": env_float("LEDGER_BODY_TIMEOUT_SECONDS", 30.0),
            "synchronous_commit": os.environ.get("LEDGER_SYNCHRONOUS_COMMIT") or "on",
            "rate_limit_rps": env_float("LEDGER_RATE_LIMIT_RPS", 0.0),
            "rate_limit_burst": env_int("LEDGER_RATE_LIMIT_BURST", 0),
            "group_commit_lanes": env_int("LEDGER_GROUP_COMMIT_LANES", 16),
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.synchronous_commit not in SYNCHRONOUS_COMMIT_LEVELS:
            raise ValueError(
                f"LEDGER_SYNCHRONOUS_COMMIT={self.synchronous_commit!r}: use one of "
                f"{', '.join(SYNCHRONOUS_COMMIT_LEVELS)} (a 2xx promises the command is flushed)"
            )
        if self.rate_limit_rps < 0 or self.rate_limit_burst < 0:
            raise ValueError("LEDGER_RATE_LIMIT_RPS and LEDGER_RATE_LIMIT_BURST must not be negative")
        if self.group_commit_lanes < 0:
            raise ValueError("LEDGER_GROUP_COMMIT_LANES must not be negative (0 turns group commit off)")
        if self.search_lag_s < 0:
            raise ValueError("--search-lag must not be negative")
        if self.body_timeout_s <= 0:
            raise ValueError("LEDGER_BODY_TIMEOUT_SECONDS must be positive")
        if self.pool_acquire_timeout_s <= 0:
            raise ValueError("LEDGER_POOL_TIMEOUT_S must be positive")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The servers' event loop: uvloop, unless LEDGER_UVLOOP=0."""
    if os.environ.get("LEDGER_UVLOOP", "1") != "0":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
