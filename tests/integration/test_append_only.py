"""The event log is append-only, enforced by the database: every statement that would change or remove
an event raises, and nothing changes."""

from __future__ import annotations

import asyncpg
import pytest

from ledgerd.domain.customer import AdjustBalance, CreateCustomer
from ledgerd.domain.values import Profile
from ledgerd.service.commands.handle import execute
from ledgerd.service.commands.requests import RequestContext
from ledgerd.service.store.postgres import PostgresEventStore

T0 = 1_700_000_000_000_000
CONTEXT = RequestContext(account="acct_ao", livemode=False, occurred_at_us=T0)

FORBIDDEN = [
    "UPDATE events SET data = '{}'::jsonb",
    "UPDATE events SET stream_version = stream_version + 100 WHERE stream_id = 'cus_ao'",
    "UPDATE events SET hash = hash",
    "UPDATE events SET metadata = metadata WHERE false",  # statement-level: even a no-op update raises
    "DELETE FROM events",
    "DELETE FROM events WHERE position = (SELECT max(position) FROM events)",
    "TRUNCATE events",
    "TRUNCATE streams, events",
    "TRUNCATE streams CASCADE",
    """INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, metadata,
                          recorded_at, hash)
       SELECT stream_id, stream_version + 1000, event_id, event_type, schema_version, data, metadata,
              recorded_at, hash FROM events
       ON CONFLICT (event_id) DO UPDATE SET data = '{}'::jsonb""",
    """MERGE INTO events e USING (SELECT 1 AS position) s ON e.position = s.position
       WHEN MATCHED THEN DELETE""",
]


async def snapshot(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT e::text AS row FROM events e ORDER BY position")
    return [row["row"] for row in rows]


@pytest.mark.slow
async def test_changing_or_removing_events_raises_and_changes_nothing(pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pool)
    profile = Profile(invoice_prefix="AO")
    create = CreateCustomer(
        customer_id="cus_ao", occurred_at=T0, account="acct_ao", livemode=False, profile=profile
    )
    await execute(store, create, CONTEXT)
    for n in range(1, 4):
        adjust = AdjustBalance(
            customer_id="cus_ao", occurred_at=T0, transaction_id=f"t{n}", amount=n, currency="usd"
        )
        await execute(store, adjust, CONTEXT)
    before = await snapshot(pool)
    assert len(before) == 4
    for statement in FORBIDDEN:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pool.execute(statement)
        assert await snapshot(pool) == before, statement
    # appending still works afterwards
    adjust = AdjustBalance(
        customer_id="cus_ao", occurred_at=T0, transaction_id="t9", amount=9, currency="usd"
    )
    await execute(store, adjust, CONTEXT)
    after = await snapshot(pool)
    assert after[:4] == before and len(after) == 5
