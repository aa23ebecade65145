"""Balance ledger projection (table `balance_transactions`)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from projections.sql import Rows, load_queries
from service.store.base import RecordedEvent

TABLES = ("balance_transactions",)
Q = load_queries("balance_transactions.sql")


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent], rows: Rows) -> None:
    for event in events:
        if event.event_type == "BalanceAdjusted":
            data = event.data
            rows[("balance_transactions", data["transaction_id"])] = await conn.fetchrow(
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
            transaction_id = event.data["transaction_id"]
            rows[("balance_transactions", transaction_id)] = await conn.fetchrow(
                Q["updated"], transaction_id, changes
            )
