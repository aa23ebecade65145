"""Fan-out from the log: one delivery row per (feed event, endpoint subscribed to it), exactly once.

Each round is one transaction: lock the checkpoint row (SKIP LOCKED: with several service processes,
one dispatches and the others skip the round), insert the deliveries of the next batch of feed rows
below the transaction-id horizon, advance the checkpoint. A crash anywhere rolls all of it back; the
unique (event, endpoint) key makes a replayed batch harmless anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ledgerd.service.webhooks.sql import statements


@dataclass(frozen=True)
class Round:
    locked: bool  # False: another dispatcher holds the checkpoint
    events: int = 0
    deliveries: int = 0


async def dispatch_once(pool: asyncpg.Pool, batch: int) -> Round:
    sql = statements()
    if not await pool.fetchval(sql["peek"]):
        return Round(locked=True)
    async with pool.acquire() as conn, conn.transaction():
        checkpoint = await conn.fetchrow(sql["lock_checkpoint"])
        if checkpoint is None:
            return Round(locked=False)
        row = await conn.fetchrow(
            sql["fan_out"], checkpoint["tx_id"], checkpoint["position"], checkpoint["seq"], batch
        )
        if row["events"]:
            await conn.execute(sql["advance_checkpoint"], row["tx_id"], row["position"], row["seq"])
        return Round(locked=True, events=row["events"], deliveries=row["deliveries"])


async def dispatch_all(pool: asyncpg.Pool, batch: int) -> Round:
    """Rounds until the feed below the horizon is fanned out (or another dispatcher has the lock)."""
    events = deliveries = 0
    while True:
        done = await dispatch_once(pool, batch)
        events += done.events
        deliveries += done.deliveries
        if not done.locked or done.events < batch:
            return Round(locked=done.locked, events=events, deliveries=deliveries)
