"""Webhook settings, read from the environment by `create_app` (never at import)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Delays (seconds) before each retry. Live: 75.6 h, about 3 days (Standard Webhooks' table after the first
# attempt); test: 3 retries over about 2 hours (Stripe's sandbox: "3 retries over a few hours").
LIVE_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
TEST_SCHEDULE: tuple[float, ...] = (600, 1800, 4800)
# `ledgerd serve --ephemeral` (a ledger inside someone's test suite): a receiver the test runs on this machine
# is allowed, and a failed delivery is retried within seconds, not hours. Only the defaults: the
# LEDGER_WEBHOOK_ALLOW_CIDRS / LEDGER_WEBHOOK_RETRY_SCHEDULE the user sets win.
LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
EPHEMERAL_SCHEDULE: tuple[float, ...] = (1, 2, 4)


def parse_schedule(raw: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"LEDGER_WEBHOOK_RETRY_SCHEDULE={raw!r}: comma-separated seconds, e.g. 1,2,4") from error
    if not delays or any(delay < 0 for delay in delays):
        raise ValueError(f"LEDGER_WEBHOOK_RETRY_SCHEDULE={raw!r}: comma-separated seconds, e.g. 1,2,4")
    return delays


def parse_cidrs(raw: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"LEDGER_WEBHOOK_ALLOW_CIDRS={raw!r}: {error}") from error


@dataclass(frozen=True)
class WebhookConfig:
    enabled: bool = True
    allow_cidrs: tuple[IPNetwork, ...] = ()
    timeout_s: float = 30.0
    live_schedule: tuple[float, ...] = LIVE_SCHEDULE
    test_schedule: tuple[float, ...] = TEST_SCHEDULE
    disable_after_hours: float = 72.0
    concurrency: int = 16
    # Retry-After is honoured within [1x, 2x] the scheduled delay (Svix's bounds).
    jitter: float = 0.2
    poll_min_s: float = 0.05
    poll_max_s: float = 1.0
    dispatch_batch: int = 500
    # `ledgerd listen`: deliver this endpoint's deliveries only (None: every endpoint but listeners').
    only_endpoint: str | None = None
    worker_id: str = field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery is ours: the request timeout plus a margin to record it."""
        return self.timeout_s + 10.0

    def schedule(self, livemode: bool) -> tuple[float, ...]:
        return self.live_schedule if livemode else self.test_schedule

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, ephemeral: bool = False) -> WebhookConfig:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if ephemeral:
            values.update(allow_cidrs=LOOPBACK, live_schedule=EPHEMERAL_SCHEDULE, test_schedule=EPHEMERAL_SCHEDULE)
        if env.get("LEDGER_WEBHOOKS", "").strip().lower() in ("0", "off", "false", "no"):
            values["enabled"] = False
        if raw := env.get("LEDGER_WEBHOOK_ALLOW_CIDRS", "").strip():
            values["allow_cidrs"] = parse_cidrs(raw)
        if raw := env.get("LEDGER_WEBHOOK_RETRY_SCHEDULE", "").strip():
            values["live_schedule"] = values["test_schedule"] = parse_schedule(raw)
        if raw := env.get("LEDGER_WEBHOOK_TIMEOUT_S", "").strip():
            values["timeout_s"] = float(raw)
        if raw := env.get("LEDGER_WEBHOOK_DISABLE_AFTER_HOURS", "").strip():
            values["disable_after_hours"] = float(raw)
        if raw := env.get("LEDGER_WEBHOOK_CONCURRENCY", "").strip():
            values["concurrency"] = int(raw)
        config = cls(**values)  # type: ignore[arg-type]
        if config.timeout_s <= 0 or config.concurrency < 1 or config.disable_after_hours <= 0:
            raise ValueError(
                "LEDGER_WEBHOOK_TIMEOUT_S, LEDGER_WEBHOOK_CONCURRENCY and LEDGER_WEBHOOK_DISABLE_AFTER_HOURS "
                "must be positive"
            )
        return config
