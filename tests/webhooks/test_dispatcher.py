"""The dispatcher's fan-out: gap-safe (an event that commits after a later-numbered one is never skipped),
exactly one delivery per (event, endpoint) with several dispatchers at once, and the checkpoint moves only
with the deliveries it covers."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time

import asyncpg

from ledgerd.service.webhooks.dispatcher import dispatch_all
from tests.support.webhooks import serving


async def append_feed_row(conn: asyncpg.Connection, customer_id: str) -> None:
    """A customer.created event and its feed row, written by hand (this test is about ordering only)."""
    now = dt.datetime.now(dt.UTC)
    await conn.execute(
        """INSERT INTO streams (stream_id, stream_type, account, livemode, version, head_hash)
           VALUES ($1, 'customer', 'acct_a', false, 1, $2)""",
        customer_id, hashlib.sha256(customer_id.encode()).digest(),
    )
    position = await conn.fetchval(
        """INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, data, metadata,
                               recorded_at, hash)
           VALUES ($1, 1, $2, 'CustomerCreated', 1, '{}', '{}', $3, $4) RETURNING position""",
        customer_id, f"evt_{customer_id}", now, hashlib.sha256(customer_id.encode()).digest(),
    )
    await conn.execute(
        """INSERT INTO stripe_events (id, account, livemode, position, seq, type, created, customer_id, data, request)
           VALUES ($1, 'acct_a', false, $2, 0, 'customer.created', $3, $4, '{}', '{}')""",
        f"evt_{customer_id}", position, int(now.timestamp()), customer_id,
    )


async def dispatch_until(pool: asyncpg.Pool, events: int, within: float = 60.0) -> tuple[int, int]:
    """Dispatch rounds until `events` feed rows were fanned out (sessions elsewhere on a shared server, e.g. a
    CREATE DATABASE, hold the cluster-wide horizon back for a while: a stall is allowed, a skip is not)."""
    seen = created = 0
    deadline = time.monotonic() + within
    while seen < events and time.monotonic() < deadline:
        done = await dispatch_all(pool, 100)
        seen, created = seen + done.events, created + done.deliveries
        await asyncio.sleep(0.02)
    return seen, created


async def test_a_transaction_that_commits_late_is_waited_for_not_skipped(db_url: str, pool: asyncpg.Pool) -> None:
    async with serving(db_url, LEDGER_WEBHOOKS="off") as api:
        endpoint = await api.endpoint("https://hooks.example.com/")
    slow = await asyncpg.connect(db_url)
    try:
        transaction = slow.transaction()
        await transaction.start()
        await slow.fetchval("SELECT pg_current_xact_id()")  # the older transaction id ...
        await append_feed_row(slow, "cus_slow")  # ... and the lower position
        async with pool.acquire() as fast:
            await append_feed_row(fast, "cus_fast")  # committed first
        stalled = await dispatch_all(pool, 100)
        assert stalled.events == 0  # below the horizon there is nothing yet: it waits
        await transaction.commit()
    finally:
        await slow.close()
    events, deliveries = await dispatch_until(pool, 2)
    assert (events, deliveries) == (2, 2)
    rows = await pool.fetch("SELECT event_id, endpoint_id FROM webhook_deliveries")
    assert {(row["event_id"], row["endpoint_id"]) for row in rows} == {
        ("evt_cus_slow", endpoint["id"]), ("evt_cus_fast", endpoint["id"])
    }
    # The checkpoint is the fast event's: committed later in transaction-id order, it comes last.
    checkpoint = await pool.fetchrow("SELECT tx_id, position FROM webhook_dispatch_checkpoint")
    fast = await pool.fetchrow("SELECT tx_id, position FROM events WHERE event_id = 'evt_cus_fast'")
    assert tuple(checkpoint) == tuple(fast)
    again = await dispatch_all(pool, 100)
    assert again.events == 0


async def test_concurrent_dispatchers_fan_out_each_event_once(db_url: str, pool: asyncpg.Pool) -> None:
    async with serving(db_url, LEDGER_WEBHOOKS="off") as api:
        endpoints = [await api.endpoint(f"https://hooks.example.com/{n}") for n in range(3)]
        writers = [asyncio.create_task(api.customer(name=f"c{n}")) for n in range(40)]
        other = await asyncpg.create_pool(db_url, min_size=1, max_size=3)
        try:
            seen = 0
            deadline = time.monotonic() + 60
            while seen < 40 and time.monotonic() < deadline:  # another session may hold the horizon for a while
                results = await asyncio.gather(dispatch_all(pool, 7), dispatch_all(other, 7), dispatch_all(pool, 7))
                seen += sum(result.events for result in results)
                await asyncio.sleep(0.01)
            await asyncio.gather(*writers)
        finally:
            await other.close()
    final = await dispatch_all(pool, 7)
    count = await pool.fetchval("SELECT count(*) FROM stripe_events")
    assert count == 40 == seen and final.events == 0
    pairs = await pool.fetch("SELECT event_id, endpoint_id FROM webhook_deliveries")
    assert len(pairs) == 40 * len(endpoints) == len({tuple(pair) for pair in pairs})


async def test_a_rebuild_leaves_the_feed_identical_and_the_deliveries_intact(db_url: str, pool: asyncpg.Pool) -> None:
    from ledgerd.service.audit import check_drift
    from ledgerd.service.rebuild import rebuild
    from tests.support.webhooks import receiving

    env = {"LEDGER_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8"}
    async with receiving() as receiver, serving(db_url, **env) as api:
        await api.endpoint(receiver.url(), ("customer.created",))
        for n in range(5):
            await api.customer(name=f"c{n}")
        await receiver.wait_for(lambda got: len(got) >= 5)
        before = await pool.fetch("SELECT * FROM stripe_events ORDER BY id")
        await rebuild(pool)
        assert (await check_drift(pool)).problems == []
        assert await pool.fetch("SELECT * FROM stripe_events ORDER BY id") == before  # byte-identical feed
        listed = await api.ok("GET", "/v1/events", {"limit": 100})
        assert [event["pending_webhooks"] for event in listed["data"]] == [0] * 5
        await api.customer(name="after the rebuild")  # fanned out once, after the swap, nothing twice
        await receiver.wait_for(lambda got: len(got) >= 6)
        await asyncio.sleep(0.5)
        assert len(receiver.received) == 6
        assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 6
