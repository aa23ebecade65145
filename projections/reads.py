"""The API's reads of the projections: one object by id, and the lists' named statements (each
projection's queries are in its .sql file beside it: customers.sql, balance_transactions.sql,
stripe_events.sql). The paging over a `Listing` is service/routes/paging.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from ledgerd.projections.sql import queries_of


@dataclass(frozen=True)
class Listing:
    """A list's statements, by name in `statements()`: `cursor` reads the sort key of the object a cursor
    names ($1 id, $2 account, $3 livemode, then the list's scope); `page` reads a page on either side of a
    sort key (account, livemode, the filters, the key, newer, the page size); `count` counts what the
    filters match. `noun` names the objects in errors."""

    noun: str
    statements: Callable[[], Mapping[str, str]]
    cursor: str
    page: str
    count: str = ""
    key_width: int = 1  # columns of the sort key


customer_queries = partial(queries_of, "customers")
transaction_queries = partial(queries_of, "balance_transactions")
event_queries = partial(queries_of, "stripe_events")

CUSTOMERS = Listing("customer", customer_queries, "customer_cursor", "customers_page", "customers_count")
BALANCE_TRANSACTIONS = Listing(
    "customer balance transaction",
    transaction_queries,
    "balance_transaction_cursor",
    "balance_transactions_page",
    "balance_transactions_count",
)
EVENTS = Listing("event", event_queries, "event_cursor", "events_page", key_width=2)


async def find_customer(conn: Any, account: str, livemode: bool, customer_id: str) -> Any:
    """The account's (and mode's) `customers` row, deleted or not; None if there is none."""
    return await conn.fetchrow(customer_queries()["customer"], customer_id, account, livemode)


async def find_balance_transaction(conn: Any, customer_id: str, transaction_id: str) -> Any:
    return await conn.fetchrow(transaction_queries()["balance_transaction"], transaction_id, customer_id)


async def find_event(conn: Any, account: str, livemode: bool, event_id: str) -> Any:
    return await conn.fetchrow(event_queries()["event"], event_id, account, livemode)
