"""Read models. Each module owns its tables and defines its row logic once, in Python, exposed as
`apply(conn, events, rows)` (live writes, and replays of a few events) and `fold(state, event)` (the
same logic on rows in memory, for bulk replays). `apply_all` is the entry point for live writes,
`Fold` for bulk replays (service/rebuild.py); both apply one command at a time."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any

import asyncpg

from ledgerd.projections import balance_transactions, customers, stripe_events
from ledgerd.projections.sql import Rows, columns_of
from ledgerd.service.store.base import RecordedEvent

# Order matters: the event feed renders objects from the rows the first two have just written.
INLINE_PROJECTIONS = (customers, balance_transactions, stripe_events)
PROJECTION_TABLES: tuple[str, ...] = (*customers.TABLES, *balance_transactions.TABLES, *stripe_events.TABLES)


def command_of(event: RecordedEvent) -> tuple[int, object]:
    """Which command wrote the event. One transaction usually holds one command; a group commit holds
    several, each from its own HTTP request: (transaction, request id) tells them apart, and the
    handler only groups commands whose request ids differ (service/handler.py)."""
    return event.tx_id, event.metadata.get("request_id")


class Deferred:
    """Rows a group commit inserts once, for all its commands, before it commits (BatchState.finish):
    new balance transactions and the event feed. Nothing in the batch reads them from the tables (a
    balance transaction's id is only known to clients once its command has committed)."""

    def __init__(self) -> None:
        self.transactions: dict[str, dict[str, Any]] = {}
        self.feed: list[tuple[Any, ...]] = []

    async def insert(self, conn: asyncpg.Connection) -> None:
        await balance_transactions.insert_many(conn, list(self.transactions.values()))
        await stripe_events.insert(conn, self.feed)
        self.transactions, self.feed = {}, []


async def apply_all(
    conn: asyncpg.Connection, events: Sequence[RecordedEvent], deferred: Deferred | None = None
) -> Rows:
    """Apply events in the order given, one command at a time, every projection in turn, exactly as
    the inline path did when the command committed. Returns the rows the last command's projections
    wrote, so its response needs no second read. With `deferred` (a group commit), new balance
    transactions and feed rows are kept there and inserted once for the whole batch."""
    rows: Rows = {}
    for _, group in groupby(events, key=command_of):
        batch = list(group)
        rows = {}
        if deferred is None:
            for projection in INLINE_PROJECTIONS:
                await projection.apply(conn, batch, rows)
            continue
        await customers.apply(conn, batch, rows)
        await balance_transactions.apply(conn, batch, rows, deferred.transactions)
        deferred.feed.extend(await stripe_events.feed_rows(conn, batch, rows))
    return rows


class Fold:
    """The in-memory counterpart of `apply_all`, for bulk replays: the same row logic (each module's
    `fold`, built on the definitions its live `apply` runs), one command at a time, every projection
    in turn. Keeps the customers and balance_transactions tables in memory (id -> row) and hands out
    the event feed rows as they are produced (`take_feed`), for COPY."""

    def __init__(self) -> None:
        self.customers: dict[str, dict[str, Any]] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        self.feed: list[tuple[Any, ...]] = []

    def row(self, table: str, key: str) -> Any:
        return (self.customers if table == customers.TABLE else self.transactions).get(key)

    def apply(self, events: Sequence[RecordedEvent]) -> None:
        """Whole commands only (see `command_of`)."""
        for _, group in groupby(events, key=command_of):
            batch = list(group)
            for event in batch:
                if event.event_type == "CustomerCreated" and event.stream_id in self.customers:
                    raise DuplicateRow(f"customers {event.stream_id}: created twice")
                customers.fold(self.customers, event)
                if (
                    event.event_type == "BalanceAdjusted"
                    and event.data["transaction_id"] in self.transactions
                ):
                    raise DuplicateRow(f"balance_transactions {event.data['transaction_id']}: created twice")
                balance_transactions.fold(self.transactions, event)
            for event in batch:
                self.feed.extend(stripe_events.records(event, self.row))

    def take_feed(self) -> list[tuple[Any, ...]]:
        feed, self.feed = self.feed, []
        return feed

    def tables(self) -> list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
        """(table, columns, records) of the folded tables, for COPY."""
        return [
            (
                customers.TABLE,
                customers.COLUMNS,
                columns_of(self.customers.values(), customers.COLUMNS, customers.JSONB_COLUMNS),
            ),
            (
                balance_transactions.TABLE,
                balance_transactions.COLUMNS,
                columns_of(
                    self.transactions.values(),
                    balance_transactions.COLUMNS,
                    balance_transactions.JSONB_COLUMNS,
                ),
            ),
        ]


class DuplicateRow(ValueError):
    """A replayed event creates a row that exists (the primary key the live path's INSERT hits)."""


FEED_TABLE = stripe_events.TABLES[0]
FEED_COLUMNS = stripe_events.COPY_COLUMNS
