"""Account settings (table `account_settings`, migration 0014): the account's default Stripe API
version and default currency. Written by the CLI when a key is created; read by the service through a
short-lived cache (the same lifetime as the API key cache), so a change takes effect within seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class AccountSettings:
    api_version: str | None = None
    default_currency: str | None = None


NO_SETTINGS = AccountSettings()


async def save_settings(
    conn: asyncpg.Connection, account: str, *, api_version: str | None, default_currency: str | None
) -> None:
    """Set the settings given (None leaves a setting as it is)."""
    await conn.execute(
        """
        INSERT INTO account_settings (account, api_version, default_currency) VALUES ($1, $2, $3)
        ON CONFLICT (account) DO UPDATE SET
            api_version = coalesce(EXCLUDED.api_version, account_settings.api_version),
            default_currency = coalesce(EXCLUDED.default_currency, account_settings.default_currency),
            updated_at = now()
        """,
        account,
        api_version,
        default_currency,
    )


class SettingsCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[AccountSettings, float]] = {}

    async def get(self, pool: asyncpg.Pool, account: str) -> AccountSettings:
        entry = self._entries.get(account)
        if entry is not None and entry[1] >= time.monotonic():
            return entry[0]
        row = await pool.fetchrow(
            "SELECT api_version, default_currency FROM account_settings WHERE account = $1", account
        )
        settings = (
            NO_SETTINGS if row is None else AccountSettings(row["api_version"], row["default_currency"])
        )
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[account] = (settings, time.monotonic() + self.ttl_s)
        return settings
