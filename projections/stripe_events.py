"""Stripe event feed projection (table `stripe_events`).

It runs after the customer and ledger projections have applied the whole command (one transaction's
events), so `data.object` is the object as the API returned it after that command. Mapping:
  CustomerCreated            -> customer.created
  CustomerUpdated            -> customer.updated (previous_attributes = old values of changed fields)
  CustomerDeleted            -> customer.deleted (data.object = the customer as it was)
  BalanceAdjusted            -> customer.updated (previous_attributes.balance) and
                                customer_balance_transaction.created (an extension; Stripe has none)
  BalanceTransactionUpdated  -> customer_balance_transaction.updated (extension)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from projections.objects import customer_field_value, render_balance_transaction, render_customer
from projections.sql import Rows, load_queries
from service.store.base import RecordedEvent

TABLES = ("stripe_events",)
Q = load_queries("stripe_events.sql")
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def derived_event_id(event_id: str, kind: str) -> str:
    """A second Stripe event from one domain event gets a stable id derived from the first."""
    number = int.from_bytes(hashlib.sha256(f"{event_id}:{kind}".encode()).digest(), "big")
    chars = []
    for _ in range(24):
        number, index = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[index])
    return "evt_" + "".join(chars)


def metadata_previous(old: dict[str, str], new: dict[str, str]) -> dict[str, str | None]:
    keys = sorted(set(old) | set(new))
    return {key: old.get(key) for key in keys if old.get(key) != new.get(key)}


def previous_attributes(data: dict[str, Any]) -> dict[str, Any]:
    changes, previous = data["changes"], data["previous"]
    result: dict[str, Any] = {}
    for name, old in previous.items():
        if name == "metadata":
            result["metadata"] = metadata_previous(old, changes.get("metadata", {}))
        else:
            result[name] = customer_field_value(name, old)
    return result


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent], rows: Rows) -> None:
    columns: list[list[Any]] = [[] for _ in range(10)]
    for event in events:
        request = msgspec.json.encode(
            {"id": event.metadata.get("request_id"), "idempotency_key": event.metadata.get("idempotency_key")}
        ).decode()
        for seq, (event_id, kind, payload) in enumerate(await feed_entries(conn, event, rows)):
            values = (
                event_id,
                event.metadata["account"],
                event.metadata["livemode"],
                event.position,
                seq,
                kind,
                event.recorded_at_us // 1_000_000,
                event.stream_id,
                msgspec.json.encode(payload).decode(),
                request,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
    if columns[0]:
        await conn.execute(Q["insert"], *columns)


async def row_of(conn: asyncpg.Connection, rows: Rows, table: str, key: str) -> Any:
    """The row this command's projections wrote, else (e.g. a partial replay) the stored one."""
    row = rows.get((table, key))
    if row is None:
        row = await conn.fetchrow(Q[f"{table}_row"], key)
    return row


async def feed_entries(
    conn: asyncpg.Connection, event: RecordedEvent, rows: Rows
) -> list[tuple[str, str, dict[str, Any]]]:
    kind = event.event_type
    data = event.data
    if kind == "BalanceTransactionUpdated":
        txn = render_balance_transaction(
            await row_of(conn, rows, "balance_transactions", data["transaction_id"])
        )
        old = dict(data["previous"])
        if "metadata" in old:
            old["metadata"] = metadata_previous(old["metadata"], data["changes"].get("metadata", {}))
        payload = {"object": txn, "previous_attributes": old}
        return [(event.event_id, "customer_balance_transaction.updated", payload)]
    customer = render_customer(await row_of(conn, rows, "customers", event.stream_id))
    if kind == "CustomerCreated":
        return [(event.event_id, "customer.created", {"object": customer})]
    if kind == "CustomerUpdated":
        return [
            (
                event.event_id,
                "customer.updated",
                {"object": customer, "previous_attributes": previous_attributes(data)},
            )
        ]
    if kind == "CustomerDeleted":
        return [(event.event_id, "customer.deleted", {"object": customer})]
    if kind == "BalanceAdjusted":
        previous: dict[str, Any] = {"balance": data["ending_balance"] - data["amount"]}
        txn = render_balance_transaction(
            await row_of(conn, rows, "balance_transactions", data["transaction_id"])
        )
        entries = []
        if data["type"] != "initial":
            entries.append(
                (event.event_id, "customer.updated", {"object": customer, "previous_attributes": previous})
            )
        entries.append(
            (
                derived_event_id(event.event_id, "customer_balance_transaction.created"),
                "customer_balance_transaction.created",
                {"object": txn},
            )
        )
        return entries
    return []
