"""Account settings (table `account_settings`, migration 0014): the account's default Stripe API
version and default currency, and the history of that version (`account_api_versions`, migration 0015:
an event renders at the version its account had when the event was created, as Stripe does). Written
by the CLI when a key is created; read by the service through a short-lived cache (the same lifetime as
the API key cache), so a change takes effect within seconds."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class AccountSettings:
    api_version: str | None = None
    default_currency: str | None = None
    # (first second it applies to, version), oldest first; the first entry also covers anything earlier.
    version_history: tuple[tuple[float, str], ...] = ()

    def version_at(self, created: int) -> str | None:
        """The account's default version for an event created at `created` (Unix seconds)."""
        if not self.version_history:
            return self.api_version
        index = max(bisect.bisect_right(self.version_history, float(created), key=lambda entry: entry[0]) - 1, 0)
        return self.version_history[index][1]


NO_SETTINGS = AccountSettings()


async def save_settings(
    conn: asyncpg.Connection, account: str, *, api_version: str | None, default_currency: str | None
) -> None:
    """Set the settings given (None leaves a setting as it is); a new default version is appended to
    the account's version history. Call it inside the transaction that makes the key."""
    if api_version is not None:
        await conn.execute(
            """
            INSERT INTO account_api_versions (account, api_version)
            SELECT $1, $2
            WHERE $2 IS DISTINCT FROM (SELECT api_version FROM account_settings WHERE account = $1)
            """,
            account,
            api_version,
        )
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


# An entry applies from the second it was made in ('-infinity', for what predates the history, sorts first).
SETTINGS = """
SELECT s.api_version, s.default_currency,
       ARRAY(SELECT greatest(floor(extract(epoch FROM h.effective_at)), -1e18)::float8
             FROM account_api_versions h WHERE h.account = s.account ORDER BY h.effective_at) AS starts,
       ARRAY(SELECT h.api_version
             FROM account_api_versions h WHERE h.account = s.account ORDER BY h.effective_at) AS versions
FROM account_settings s WHERE s.account = $1
"""


class SettingsCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[AccountSettings, float]] = {}

    async def get(self, pool: asyncpg.Pool, account: str) -> AccountSettings:
        entry = self._entries.get(account)
        if entry is not None and entry[1] >= time.monotonic():
            return entry[0]
        row = await pool.fetchrow(SETTINGS, account)
        settings = (
            NO_SETTINGS
            if row is None
            else AccountSettings(
                row["api_version"],
                row["default_currency"],
                tuple(zip(row["starts"], row["versions"], strict=True)),
            )
        )
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[account] = (settings, time.monotonic() + self.ttl_s)
        return settings
