"""Stripe event feed projection (table `stripe_events`).

Rendered from the rows the customer and ledger projections hold after the whole command, so
`data.object` is the object as the API returned it after that command. Mapping (typed, upcast events):
  CustomerCreated            -> customer.created
  CustomerUpdated            -> customer.updated (previous_attributes = old values of changed fields)
  CustomerDeleted            -> customer.deleted (data.object = the customer as it was)
  BalanceAdjusted            -> customer.updated (previous_attributes.balance; not for an entry in another
                                currency than the customer's) and
                                customer_balance_transaction.created (an extension; Stripe has none)
  BalanceTransactionUpdated  -> customer_balance_transaction.updated (extension)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
from msgspec import UNSET

from ledgerd.domain.customer import (
    AnyEvent,
    BalanceAdjusted,
    BalanceTransactionUpdated,
    CustomerChanges,
    CustomerCreated,
    CustomerDeleted,
    CustomerUpdated,
    TransactionChanges,
)
from ledgerd.projections.objects import customer_field_value, render_balance_transaction, render_customer

TABLE = "stripe_events"
TABLES = (TABLE,)
COLUMNS = ("id", "account", "livemode", "position", "seq", "type", "created", "customer_id", "data", "request")
JSONB_COLUMNS = frozenset({"data", "request"})
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


def metadata_previous(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str | None]:
    keys = sorted(set(old) | set(new))
    return {key: old.get(key) for key in keys if old.get(key) != new.get(key)}


def previous_attributes(event: CustomerUpdated) -> dict[str, Any]:
    result: dict[str, Any] = {}
    new = event.changes.metadata
    for name, old in as_documents(event.previous).items():
        if name == "metadata":
            result["metadata"] = metadata_previous(old, {} if new is UNSET else new)
        else:
            result[name] = customer_field_value(name, old)
    return result


def as_documents(changes: CustomerChanges | TransactionChanges) -> dict[str, Any]:
    """A sparse set of changes as the JSON document it is stored as (only the fields present)."""
    document: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(changes))
    return document


class Source(NamedTuple):
    """Where a domain event sits in the log: what a feed row needs besides the event itself."""

    event_id: str
    stream_id: str
    stream_version: int
    position: int | None  # None on the live path until the event is appended
    recorded_at_us: int
    metadata: Mapping[str, Any]


def feed_rows(
    events: Sequence[tuple[Source, AnyEvent]],
    customer: Mapping[str, Any],
    transactions: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """The feed rows of one command's events, rendered from the customer row and the balance
    transaction rows as the whole command left them. Each row also carries `stream_version` (of its
    source event), which the live path uses to find the event's position."""
    rows: list[dict[str, Any]] = []
    for source, event in events:
        request = {
            "id": source.metadata.get("request_id"),
            "idempotency_key": source.metadata.get("idempotency_key"),
        }
        for seq, (event_id, kind, payload) in enumerate(entries(source, event, customer, transactions)):
            rows.append(
                {
                    "id": event_id,
                    "account": source.metadata["account"],
                    "livemode": source.metadata["livemode"],
                    "position": source.position,
                    "seq": seq,
                    "type": kind,
                    "created": source.recorded_at_us // 1_000_000,
                    "customer_id": source.stream_id,
                    "data": payload,
                    "request": request,
                    "stream_version": source.stream_version,
                }
            )
    return rows


def entries(
    source: Source,
    event: AnyEvent,
    customer: Mapping[str, Any],
    transactions: Mapping[str, Mapping[str, Any]],
) -> list[tuple[str, str, dict[str, Any]]]:
    match event:
        case BalanceTransactionUpdated():
            txn = render_balance_transaction(transactions[event.transaction_id])
            old = as_documents(event.previous)
            if "metadata" in old:
                new = event.changes.metadata
                old["metadata"] = metadata_previous(old["metadata"], {} if new is UNSET else new)
            return [
                (source.event_id, "customer_balance_transaction.updated", {"object": txn, "previous_attributes": old})
            ]
        case CustomerCreated():
            return [(source.event_id, "customer.created", {"object": render_customer(customer)})]
        case CustomerUpdated():
            payload = {"object": render_customer(customer), "previous_attributes": previous_attributes(event)}
            return [(source.event_id, "customer.updated", payload)]
        case CustomerDeleted():
            return [(source.event_id, "customer.deleted", {"object": render_customer(customer)})]
        case BalanceAdjusted():
            txn = render_balance_transaction(transactions[event.transaction_id])
            found: list[tuple[str, str, dict[str, Any]]] = []
            # An entry in another currency than the customer's leaves `balance` as it was.
            if event.type != "initial" and event.currency == customer["currency"]:
                previous = {"balance": event.ending_balance - event.amount}
                found.append(
                    (
                        source.event_id,
                        "customer.updated",
                        {"object": render_customer(customer), "previous_attributes": previous},
                    )
                )
            created_id = derived_event_id(source.event_id, "customer_balance_transaction.created")
            found.append((created_id, "customer_balance_transaction.created", {"object": txn}))
            return found
    return []


# Every type the feed above can emit: what a webhook endpoint may subscribe to (besides '*').
EVENT_TYPES = (
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer_balance_transaction.created",
    "customer_balance_transaction.updated",
)
