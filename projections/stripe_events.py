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
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import msgspec

from ledgerd.projections.objects import customer_field_value, render_balance_transaction, render_customer
from ledgerd.projections.sql import Rows, load_queries
from ledgerd.service.store.base import RecordedEvent

TABLES = ("stripe_events",)
Q = load_queries("stripe_events.sql")
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


PAIRS = [a + b for b in ALPHABET for a in ALPHABET]  # PAIRS[i] = digits i % 62, i // 62 (low first)
ID_RANGE, CHUNK = 62**24, 62**5  # CHUNK < 2**30: one machine digit, CPython's fast division


def derived_event_id(event_id: str, kind: str) -> str:
    """A second Stripe event from one domain event gets a stable id derived from the first: the low 24
    base-62 digits of sha256(f"{event_id}:{kind}"), least significant first."""
    number = int.from_bytes(hashlib.sha256(f"{event_id}:{kind}".encode()).digest(), "big") % ID_RANGE
    chars: list[str] = []
    append = chars.append
    for _ in range(4):  # 4 x 5 digits, then the last 4
        number, chunk = divmod(number, CHUNK)
        high, low = divmod(chunk, 3844)
        top, middle = divmod(high, 3844)
        append(PAIRS[low])
        append(PAIRS[middle])
        append(ALPHABET[top])
    high, low = divmod(number, 3844)
    append(PAIRS[low])
    append(PAIRS[high])
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


Lookup = Callable[[str, str], Any]  # (table, id) -> the row after the command, or None


def records(event: RecordedEvent, row: Lookup) -> list[tuple[Any, ...]]:
    """The feed rows of one event (columns of Q["insert"] / COPY_COLUMNS), rendered from `row`."""
    request = json_text(
        {"id": event.metadata.get("request_id"), "idempotency_key": event.metadata.get("idempotency_key")}
    )
    return [
        (
            event_id,
            event.metadata["account"],
            event.metadata["livemode"],
            event.position,
            seq,
            kind,
            event.recorded_at_us // 1_000_000,
            event.stream_id,
            json_text(payload),
            request,
        )
        for seq, (event_id, kind, payload) in enumerate(feed_entries(event, row))
    ]


COPY_COLUMNS = (
    "id",
    "account",
    "livemode",
    "position",
    "seq",
    "type",
    "created",
    "customer_id",
    "data",
    "request",
)


def json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def rows_needed(event: RecordedEvent) -> list[tuple[str, str]]:
    """The projection rows `feed_entries` renders for an event."""
    kind = event.event_type
    if kind == "BalanceTransactionUpdated":
        return [("balance_transactions", event.data["transaction_id"])]
    if kind == "BalanceAdjusted":
        return [("customers", event.stream_id), ("balance_transactions", event.data["transaction_id"])]
    if kind in ("CustomerCreated", "CustomerUpdated", "CustomerDeleted"):
        return [("customers", event.stream_id)]
    return []


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent], rows: Rows) -> None:
    await insert(conn, await feed_rows(conn, events, rows))


async def feed_rows(
    conn: asyncpg.Connection, events: Sequence[RecordedEvent], rows: Rows
) -> list[tuple[Any, ...]]:
    """The feed rows of a command's events, rendered from the rows this command's projections wrote,
    else (e.g. a partial replay) the stored ones."""
    found: Rows = {}
    for event in events:
        for table, key in rows_needed(event):
            if (table, key) not in found:
                row = rows.get((table, key))
                found[(table, key)] = row if row is not None else await conn.fetchrow(Q[f"{table}_row"], key)
    return [record for event in events for record in records(event, lambda t, k: found[(t, k)])]


async def insert(conn: asyncpg.Connection, values: Sequence[tuple[Any, ...]]) -> None:
    """Feed rows (of one command, or of every command of a group-commit transaction) in one INSERT."""
    if values:
        await conn.execute(Q["insert"], *(list(column) for column in zip(*values, strict=True)))


def feed_entries(event: RecordedEvent, row: Lookup) -> list[tuple[str, str, dict[str, Any]]]:
    kind = event.event_type
    data = event.data
    if kind == "BalanceTransactionUpdated":
        txn = render_balance_transaction(row("balance_transactions", data["transaction_id"]))
        old = dict(data["previous"])
        if "metadata" in old:
            old["metadata"] = metadata_previous(old["metadata"], data["changes"].get("metadata", {}))
        payload = {"object": txn, "previous_attributes": old}
        return [(event.event_id, "customer_balance_transaction.updated", payload)]
    if kind not in ("CustomerCreated", "CustomerUpdated", "CustomerDeleted", "BalanceAdjusted"):
        return []
    customer = render_customer(row("customers", event.stream_id))
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
    previous: dict[str, Any] = {"balance": data["ending_balance"] - data["amount"]}
    txn = render_balance_transaction(row("balance_transactions", data["transaction_id"]))
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
