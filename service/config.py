"""Service configuration, read from the environment once by the CLI and passed to create_app."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


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
    api_key_cache_ttl_s: float = 5.0
    log_level: str = "info"
    access_log: bool = True
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
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]
