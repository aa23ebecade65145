"""Customer view projection (table `customers`): one row per customer with every Stripe field, its
balance and stream version.

The row logic is defined once, in Python: `new_row(event)` for the event that creates the row and
`assignments(event)` (column -> value, `Coalesce` = only where the column is NULL) for every later event.
The live path turns them into one `INSERT ... RETURNING *` / `UPDATE ... SET ... RETURNING *` per event
(`apply`); a bulk replay folds them in memory (`fold`) and copies the final rows (service/rebuild.py).
Values are Python values: jsonb columns hold the decoded document (`JSON_NULL` for a JSON null, None for
SQL NULL), encoded at the database boundary (projections.sql); rendering accepts both these and the
JSON text asyncpg returns (projections.objects.as_json)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from ledgerd.projections.sql import JSON_NULL, Coalesce, Rows, assign, statement
from ledgerd.service.store.base import RecordedEvent

TABLES = ("customers",)
TABLE = "customers"
COLUMNS = (
    "id",
    "account",
    "livemode",
    "position",
    "version",
    "created",
    "deleted",
    "email",
    "name",
    "phone",
    "description",
    "business_name",
    "individual_name",
    "address",
    "shipping",
    "invoice_prefix",
    "invoice_settings",
    "next_invoice_sequence",
    "preferred_locales",
    "tax_exempt",
    "metadata",
    "external_id",
    "balance",
    "currency",
)
TEXT_FIELDS = (
    "email",
    "name",
    "phone",
    "description",
    "business_name",
    "individual_name",
    "invoice_prefix",
    "tax_exempt",
    "external_id",
    "currency",
)
NULLABLE_JSON_FIELDS = ("address", "shipping")  # a JSON null is SQL NULL
JSON_FIELDS = ("invoice_settings", "preferred_locales", "metadata")  # a JSON null is jsonb 'null'
JSONB_COLUMNS = frozenset((*NULLABLE_JSON_FIELDS, *JSON_FIELDS))


def fields(document: dict[str, Any], *, with_text: bool = True) -> dict[str, Any]:
    """The profile columns present in a profile or a sparse set of changes."""
    values: dict[str, Any] = {}
    for name in TEXT_FIELDS if with_text else ():
        if name in document:
            values[name] = document[name]
    for name in NULLABLE_JSON_FIELDS:
        if name in document:
            value = document[name]
            values[name] = value
    for name in JSON_FIELDS:
        if name in document:
            value = document[name]
            values[name] = JSON_NULL if value is None else value
    if "next_invoice_sequence" in document:
        sequence = document["next_invoice_sequence"]
        values["next_invoice_sequence"] = None if sequence is None else int(sequence)
    return values


def new_row(event: RecordedEvent) -> dict[str, Any]:
    """The row a CustomerCreated event inserts."""
    data = event.data
    profile = data["profile"]
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(fields(profile))
    row.update(
        id=event.stream_id,
        account=data["account"],
        livemode=data["livemode"],
        position=event.position,
        version=event.stream_version,
        created=data["created"],
        deleted=False,
        balance=0,
        currency=data.get("currency"),
    )
    return row


def assignments(event: RecordedEvent) -> dict[str, Any]:
    """What any other event of the stream changes in its row."""
    kind = event.event_type
    data = event.data
    if kind == "CustomerUpdated":
        return {**fields(data["changes"]), "version": event.stream_version}
    if kind == "CustomerDeleted":
        return {"deleted": True, "version": event.stream_version}
    if kind == "BalanceAdjusted":
        return {
            "balance": data["ending_balance"],
            "currency": Coalesce(data["currency"]),
            "version": event.stream_version,
        }
    return {"version": event.stream_version}


def fold(state: dict[str, dict[str, Any]], event: RecordedEvent) -> dict[str, Any] | None:
    """Apply one event to the in-memory table `state` (id -> row); returns the row, None if the
    event's customer has no row (as `UPDATE ... RETURNING *` returns nothing)."""
    if event.event_type == "CustomerCreated":
        row = new_row(event)
    else:
        previous = state.get(event.stream_id)
        if previous is None:
            return None
        row = assign(previous, assignments(event))
    state[event.stream_id] = row
    return row


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent], rows: Rows) -> None:
    for event in events:
        rows[(TABLE, event.stream_id)] = await apply_one(conn, event)


async def apply_one(conn: asyncpg.Connection, event: RecordedEvent) -> asyncpg.Record:
    if event.event_type == "CustomerCreated":
        sql, values = statement.insert(TABLE, new_row(event), JSONB_COLUMNS)
        return await conn.fetchrow(sql, *values)
    sql, values = statement.update(TABLE, assignments(event), JSONB_COLUMNS)
    return await conn.fetchrow(sql, event.stream_id, *values)
