"""Customer view projection (table `customers`)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from projections.sql import Rows, load_queries
from service.store.base import RecordedEvent

TABLES = ("customers",)
Q = load_queries("customers.sql")


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent], rows: Rows) -> None:
    for event in events:
        rows[("customers", event.stream_id)] = await apply_one(conn, event)


async def apply_one(conn: asyncpg.Connection, event: RecordedEvent) -> asyncpg.Record:
    data = event.data
    kind = event.event_type
    if kind == "CustomerCreated":
        return await conn.fetchrow(
            Q["created"],
            event.stream_id,
            data["account"],
            data["livemode"],
            event.position,
            event.stream_version,
            data["created"],
            msgspec.json.encode(data["profile"]).decode(),
            data.get("currency"),
        )
    elif kind == "CustomerUpdated":
        changes = msgspec.json.encode(data["changes"]).decode()
        return await conn.fetchrow(Q["updated"], event.stream_id, changes, event.stream_version)
    elif kind == "CustomerDeleted":
        return await conn.fetchrow(Q["deleted"], event.stream_id, event.stream_version)
    elif kind == "BalanceAdjusted":
        return await conn.fetchrow(
            Q["balance_adjusted"],
            event.stream_id,
            data["ending_balance"],
            data["currency"],
            event.stream_version,
        )
    else:
        return await conn.fetchrow(Q["touched"], event.stream_id, event.stream_version)
