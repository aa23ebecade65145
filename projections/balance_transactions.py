"""Balance ledger projection (table `balance_transactions`)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from projections.sql import load_queries
from service.store.base import RecordedEvent

TABLES = ("balance_transactions",)
Q = load_queries("balance_transactions.sql")


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
    for event in events:
        if event.event_type == "BalanceAdjusted":
            data = event.data
            await conn.execute(
                Q["adjusted"],
                data["transaction_id"],
                event.stream_id,
                event.metadata["account"],
                event.metadata["livemode"],
                event.position,
                event.stream_version,
                data["type"],
                data["amount"],
                data["currency"],
                data["ending_balance"],
                data.get("description"),
                msgspec.json.encode(data.get("metadata", {})).decode(),
                data["created"],
            )
        elif event.event_type == "BalanceTransactionUpdated":
            changes = msgspec.json.encode(event.data["changes"]).decode()
            await conn.execute(Q["updated"], event.data["transaction_id"], changes)
