"""Read models, as functions of the domain's typed (upcast) events and folded state.

`project(before, events, ...)` is what one command leaves in the read models: the customer's row after
the command (projections/customers.py), the rows of the ledger entries it created or changed
(projections/balance_transactions.py) and its event feed rows (projections/stripe_events.py). The live
path runs it on the state it decided on and writes its result in the command's one statement
(service/store/postgres.sql); `Fold` runs it over the log, one command at a time, for replays (rebuild,
import, drift) and point-in-time reads. Same function, same rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from ledgerd.domain.customer import (
    INITIAL_STATE,
    AnyEvent,
    BalanceAdjusted,
    BalanceTransactionState,
    BalanceTransactionUpdated,
    CustomerCreated,
    CustomerState,
    evolve,
    transaction_created,
    transaction_updated,
)
from ledgerd.domain.log import RecordedEvent
from ledgerd.projections import balance_transactions, customers, stripe_events
from ledgerd.projections.sql import columns_of
from ledgerd.projections.stripe_events import Source

PROJECTION_TABLES: tuple[str, ...] = (customers.TABLE, balance_transactions.TABLE, stripe_events.TABLE)
FEED_TABLE = stripe_events.TABLE
FEED_COLUMNS = stripe_events.COLUMNS


@dataclass
class Projected:
    """What one command leaves in the read models."""

    state: CustomerState  # the customer after the command
    customer: dict[str, Any]  # its `customers` row
    created: bool  # the command created the customer
    transactions: dict[str, BalanceTransactionState]  # ledger entries it created or changed
    transaction_rows: dict[str, dict[str, Any]]
    new_transactions: frozenset[str]  # which of them it created
    feed: list[dict[str, Any]]


def project(
    before: CustomerState,
    events: Sequence[tuple[Source, AnyEvent]],
    transactions: Mapping[str, BalanceTransactionState],
    *,
    customer_position: int | None = None,
    transaction_positions: Mapping[str, int] | None = None,
) -> Projected:
    """The read-model rows after one command's events. `transactions` holds the states of the ledger
    entries the events may change; positions are known on replays (None on the live path, where the
    store fills them in from the appended events)."""
    state = before
    changed: dict[str, BalanceTransactionState] = {}
    known = transaction_positions or {}  # a replay's positions of every entry so far: read, never copied
    positions: dict[str, int | None] = {}  # of the entries these events create
    created = False
    for source, event in events:
        state = evolve(state, event)
        if isinstance(event, CustomerCreated):
            created = True
            customer_position = source.position
        elif isinstance(event, BalanceAdjusted):
            changed[event.transaction_id] = transaction_created(state, event)
            positions[event.transaction_id] = source.position
        elif isinstance(event, BalanceTransactionUpdated):
            previous = changed.get(event.transaction_id) or transactions.get(event.transaction_id)
            if previous is not None:  # history is history: an update of an unknown entry changes no row
                changed[event.transaction_id] = transaction_updated(previous, event)
    customer_row = customers.row(state, customer_position)
    rows = {
        tid: balance_transactions.row(txn, positions[tid] if tid in positions else known.get(tid))
        for tid, txn in changed.items()
    }
    new = frozenset(e.transaction_id for _, e in events if isinstance(e, BalanceAdjusted))
    return Projected(
        state=state,
        customer=customer_row,
        created=created,
        transactions=changed,
        transaction_rows=rows,
        new_transactions=new,
        feed=stripe_events.feed_rows(events, customer_row, rows),
    )


def command_of(event: RecordedEvent) -> tuple[int, object]:
    """Which command wrote the event. One transaction usually holds one command; a group commit holds
    several, each from its own HTTP request: (transaction, request id) tells them apart, and commands
    share a transaction only when their request ids differ (service/commands/group_commit.py)."""
    return event.tx_id, event.metadata.get("request_id")


def source_of(event: RecordedEvent) -> Source:
    return Source(
        event_id=event.event_id,
        stream_id=event.stream_id,
        stream_version=event.stream_version,
        position=event.position,
        recorded_at_us=event.recorded_at_us,
        metadata=event.metadata,
    )


class DuplicateRow(ValueError):
    """A replayed event creates a row that exists (the primary key the live path's INSERT hits)."""


@dataclass
class Fold:
    """The log folded in memory, one command at a time, through `project`: every customer's state and
    every ledger entry's, their rows on demand, and the event feed rows as they are produced. Bulk
    replays copy `tables()` and `take_feed()`; incremental ones write `take_changes()`."""

    states: dict[str, CustomerState] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)  # customer -> position of its creation
    transactions: dict[str, BalanceTransactionState] = field(default_factory=dict)  # in ledger order
    transaction_positions: dict[str, int] = field(default_factory=dict)
    feed: list[dict[str, Any]] = field(default_factory=list)
    dirty_customers: dict[str, bool] = field(default_factory=dict)  # id -> created since the last take
    dirty_transactions: dict[str, bool] = field(default_factory=dict)

    def apply(self, events: Iterable[RecordedEvent]) -> None:
        """Whole commands only (see `command_of`), in the log's order."""
        for _, group in groupby(events, key=command_of):
            batch = list(group)
            typed = [(source_of(recorded), recorded.event) for recorded in batch]  # through the upcasters
            self.apply_command(batch[0].stream_id, typed)

    def apply_command(self, stream_id: str, events: Sequence[tuple[Source, AnyEvent]]) -> Projected:
        for source, event in events:
            if isinstance(event, CustomerCreated) and stream_id in self.states:
                raise DuplicateRow(f"customers {stream_id}: created twice")
            if isinstance(event, BalanceAdjusted) and event.transaction_id in self.transactions:
                raise DuplicateRow(f"balance_transactions {event.transaction_id}: created twice")
            if source.stream_id != stream_id:
                raise ValueError(f"one command wrote to two streams: {stream_id}, {source.stream_id}")
        result = project(
            self.states.get(stream_id, INITIAL_STATE),
            events,
            self.transactions,
            customer_position=self.positions.get(stream_id),
            transaction_positions=self.transaction_positions,
        )
        self.states[stream_id] = result.state
        if result.created and result.customer["position"] is not None:
            self.positions[stream_id] = result.customer["position"]
        self.dirty_customers[stream_id] = self.dirty_customers.get(stream_id, False) or result.created
        for tid, txn in result.transactions.items():
            self.transactions[tid] = txn
            position = result.transaction_rows[tid]["position"]
            if position is not None:
                self.transaction_positions[tid] = position
            self.dirty_transactions[tid] = self.dirty_transactions.get(tid, False) or tid in result.new_transactions
        self.feed.extend(result.feed)
        return result

    def customer_row(self, customer_id: str) -> dict[str, Any] | None:
        state = self.states.get(customer_id)
        return None if state is None else customers.row(state, self.positions.get(customer_id))

    def transaction_row(self, transaction_id: str) -> dict[str, Any]:
        return balance_transactions.row(
            self.transactions[transaction_id], self.transaction_positions.get(transaction_id)
        )

    def take_feed(self) -> list[tuple[Any, ...]]:
        """The feed rows produced since the last take, as COPY records."""
        feed, self.feed = self.feed, []
        return columns_of(feed, stripe_events.COLUMNS, stripe_events.JSONB_COLUMNS)

    def take_changes(self) -> Changes:
        """The rows changed since the last take (new ones apart), for an incremental replay."""
        changes = Changes(
            customers=[(self.customer_row(cid) or {}, new) for cid, new in self.dirty_customers.items()],
            transactions=[(self.transaction_row(tid), new) for tid, new in self.dirty_transactions.items()],
            feed=self.feed,
        )
        self.dirty_customers, self.dirty_transactions, self.feed = {}, {}, []
        return changes

    def tables(self) -> list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
        """(table, columns, records) of the folded customers and balance transactions, for COPY."""
        customer_rows = (customers.row(state, self.positions.get(cid)) for cid, state in self.states.items())
        transaction_rows = (self.transaction_row(tid) for tid in self.transactions)
        return [
            (customers.TABLE, customers.COLUMNS, columns_of(customer_rows, customers.COLUMNS, customers.JSONB_COLUMNS)),
            (
                balance_transactions.TABLE,
                balance_transactions.COLUMNS,
                columns_of(transaction_rows, balance_transactions.COLUMNS, balance_transactions.JSONB_COLUMNS),
            ),
        ]


@dataclass
class Changes:
    """Rows an incremental replay writes: (row, is_new) per customer and ledger entry, and feed rows."""

    customers: list[tuple[dict[str, Any], bool]]
    transactions: list[tuple[dict[str, Any], bool]]
    feed: list[dict[str, Any]]
