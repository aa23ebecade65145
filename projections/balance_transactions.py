"""Balance ledger projection (table `balance_transactions`): one row per BalanceAdjusted, with later
description/metadata updates applied. Row logic in Python, defined once (`new_row`, `assignments`)
and used by the live path (`apply`) and by bulk replays (`fold`); see projections/customers.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from ledgerd.projections.sql import JSON_NULL, Rows, assign, json_text, statement
from ledgerd.service.store.base import RecordedEvent

TABLES = ("balance_transactions",)
TABLE = "balance_transactions"
COLUMNS = (
    "id",
    "customer_id",
    "account",
    "livemode",
    "position",
    "version",
    "type",
    "amount",
    "currency",
    "ending_balance",
    "description",
    "metadata",
    "created",
)
JSONB_COLUMNS = frozenset({"metadata"})
KINDS = frozenset({"BalanceAdjusted", "BalanceTransactionUpdated"})


def new_row(event: RecordedEvent) -> dict[str, Any]:
    """The row a BalanceAdjusted event inserts."""
    data = event.data
    return {
        "id": data["transaction_id"],
        "customer_id": event.stream_id,
        "account": event.metadata["account"],
        "livemode": event.metadata["livemode"],
        "position": event.position,
        "version": event.stream_version,
        "type": data["type"],
        "amount": data["amount"],
        "currency": data["currency"],
        "ending_balance": data["ending_balance"],
        "description": data.get("description"),
        "metadata": data.get("metadata", {}),
        "created": data["created"],
    }


def assignments(event: RecordedEvent) -> dict[str, Any]:
    """What a BalanceTransactionUpdated event changes in its transaction's row."""
    changes = event.data["changes"]
    values: dict[str, Any] = {}
    if "description" in changes:
        values["description"] = changes["description"]
    if "metadata" in changes:
        metadata = changes["metadata"]
        values["metadata"] = JSON_NULL if metadata is None else metadata
    return values


def fold(state: dict[str, dict[str, Any]], event: RecordedEvent) -> tuple[str, dict[str, Any] | None] | None:
    """Apply one event to the in-memory table `state` (id -> row): (transaction id, its row or None
    when there is no such row), or None for events this projection ignores."""
    if event.event_type == "BalanceAdjusted":
        row = new_row(event)
        state[row["id"]] = row
        return row["id"], row
    if event.event_type == "BalanceTransactionUpdated":
        transaction_id = event.data["transaction_id"]
        previous = state.get(transaction_id)
        if previous is None:
            return transaction_id, None
        state[transaction_id] = assign(previous, assignments(event))
        return transaction_id, state[transaction_id]
    return None


async def apply(
    conn: asyncpg.Connection,
    events: Sequence[RecordedEvent],
    rows: Rows,
    pending: dict[str, dict[str, Any]] | None = None,
) -> None:
    """With `pending` (a group commit), new rows are kept there, in memory, and inserted by
    `insert_many` with the rest of the batch's before it commits; an update of a pending row is
    applied to it in memory (fold's logic). No other statement of the batch reads these rows."""
    for event in events:
        if event.event_type == "BalanceAdjusted":
            row = new_row(event)
            if pending is not None:
                pending[row["id"]] = rows[(TABLE, row["id"])] = row
                continue
            sql, values = statement.insert(TABLE, row, JSONB_COLUMNS)
            rows[(TABLE, row["id"])] = await conn.fetchrow(sql, *values)
        elif event.event_type == "BalanceTransactionUpdated":
            transaction_id = event.data["transaction_id"]
            if pending is not None and transaction_id in pending:
                updated = assign(pending[transaction_id], assignments(event))
                pending[transaction_id] = rows[(TABLE, transaction_id)] = updated
                continue
            sql, values = statement.update(TABLE, assignments(event), JSONB_COLUMNS)
            rows[(TABLE, transaction_id)] = await conn.fetchrow(sql, transaction_id, *values)


INSERT_MANY = f"""
INSERT INTO {TABLE} ({", ".join(COLUMNS)})
SELECT id, customer_id, account, livemode, position, version, type, amount, currency, ending_balance,
       description, metadata::jsonb, created
FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bigint[], $6::bigint[], $7::text[],
            $8::bigint[], $9::text[], $10::bigint[], $11::text[], $12::text[], $13::bigint[])
     AS u({", ".join(COLUMNS)})
"""


async def insert_many(conn: asyncpg.Connection, new_rows: Sequence[dict[str, Any]]) -> None:
    """New rows (those a group commit kept in memory) in one INSERT."""
    if not new_rows:
        return
    columns = [[row[name] for row in new_rows] for name in COLUMNS]
    columns[COLUMNS.index("metadata")] = [json_text(row["metadata"]) for row in new_rows]
    await conn.execute(INSERT_MANY, *columns)
