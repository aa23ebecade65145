"""Point in time: a customer, its balance transactions and its balance as they were at an instant, folded
from its one stream (the projections' own `project` and the domain's `evolve`, through the upcasters),
never read from the projections. service/history.py holds the folding machinery (snapshots,
checkpoints, the fold thread) and the paged history; this module the reads built on it: `as_of` on the
customer and balance transaction endpoints, `customer_history`, and `balance_at` (`ledgerd balance-at`).

"As of T" means the longest prefix of the stream whose events were all recorded at or before T (events
are recorded in version order; a clock that stepped back never makes the fold skip an event). An
`as_of` in unix seconds covers that whole second (T.999999), matching the whole-second `created` fields.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ledgerd.domain.customer import INITIAL_STATE, CustomerState, ledgers
from ledgerd.domain.log import RecordedEvent
from ledgerd.projections import Fold, command_of
from ledgerd.projections import customers as customers_projection
from ledgerd.projections.objects import render_balance_transaction, render_customer, render_deleted_customer
from ledgerd.service import history
from ledgerd.service.history import Queryable
from ledgerd.service.store.postgres import (
    EVENT_COLUMNS,
    row_to_event,
    to_microseconds,
    to_timestamp,
    utc_text,
)

MAX_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z


SQL_STREAM = f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version"
SQL_STREAM_AS_OF = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE stream_id = $1 AND stream_version < coalesce(
    (SELECT min(stream_version) FROM events WHERE stream_id = $1 AND recorded_at > $2), 9223372036854775807)
ORDER BY stream_version
"""


def end_of_second(unix_seconds: int) -> int:
    """An `as_of` in unix seconds covers that whole second."""
    return unix_seconds * 1_000_000 + 999_999


def parse_instant(text: str) -> int:
    """ISO 8601 (a `Z` or an offset; a naive time is UTC) or unix seconds -> microseconds since epoch."""
    value = text.strip()
    if value.lstrip("-").isdigit():
        return int(value) * 1_000_000
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return to_microseconds(moment)


async def stream_prefix(conn: Queryable, customer_id: str, at_us: int | None = None) -> list[RecordedEvent]:
    """The stream, or its longest prefix recorded at or before `at_us`."""
    if at_us is None:
        rows = await conn.fetch(SQL_STREAM, customer_id)
    else:
        rows = await conn.fetch(SQL_STREAM_AS_OF, customer_id, to_timestamp(min(max(at_us, 0), MAX_US)))
    return [row_to_event(row) for row in rows]


@dataclass
class StreamFold:
    """A customer stream folded by the projections' own `project` (through the upcasters)."""

    fold: Fold
    customer_id: str | None
    last_recorded_us: int | None

    @property
    def state(self) -> CustomerState:
        return self.fold.states.get(self.customer_id or "", INITIAL_STATE)

    def transaction_rows(self) -> list[dict[str, Any]]:
        """The customer's ledger entries as rows, in ledger order."""
        return [self.fold.transaction_row(tid) for tid in self.fold.transactions]


def fold_stream(events: Sequence[RecordedEvent]) -> StreamFold:
    fold = Fold()
    fold.apply(events)
    return StreamFold(
        fold,
        events[0].stream_id if events else None,
        events[-1].recorded_at_us if events else None,
    )


def render_state(state: CustomerState) -> dict[str, Any]:
    if state.deleted:
        return render_deleted_customer(state.customer_id)
    return render_customer(customers_projection.row(state))


def owned(state: CustomerState, account: str, livemode: bool) -> bool:
    return state.exists and state.account == account and state.livemode == livemode


async def customer_as_of(
    conn: Queryable, account: str, livemode: bool, customer_id: str, as_of_unix_s: int
) -> dict[str, Any] | None:
    """The customer object (render_customer's shape) as it was at the end of second `as_of_unix_s`,
    folded from the log (from the head's snapshot or a checkpoint where possible, in a worker thread:
    service/history.py); the deleted stub if it had been deleted by then; None if it did not exist yet
    (or belongs to another account or mode)."""
    state = await customer_state_as_of(conn, account, livemode, customer_id, as_of_unix_s)
    return None if state is None else render_state(state)


async def customer_state_as_of(
    conn: Queryable, account: str, livemode: bool, customer_id: str, as_of_unix_s: int
) -> CustomerState | None:
    """The customer's folded state at the end of second `as_of_unix_s` (see customer_as_of)."""
    head = await history.stream_head(conn, customer_id, account, livemode)
    if head is None:
        return None
    at = to_timestamp(min(max(end_of_second(as_of_unix_s), 0), MAX_US))
    state = await history.state_at(conn, customer_id, await history.version_at(conn, customer_id, at), head)
    return state if owned(state, account, livemode) else None


def fold_chunk(fold: Fold, held: list[RecordedEvent], rows: Sequence[Any], last: bool) -> list[RecordedEvent]:
    """Apply a chunk of a stream (in a worker thread). Fold takes whole commands: the events of the
    chunk's last command are held back for the next chunk, unless this one is the last."""
    events = held + [row_to_event(row) for row in rows]
    keep = len(events)
    if not last:
        while keep > 0 and command_of(events[keep - 1]) == command_of(events[-1]):
            keep -= 1
    fold.apply(events[:keep])
    return events[keep:]


def transactions_then(fold: Fold, customer_id: str, account: str, livemode: bool) -> list[dict[str, Any]]:
    then = StreamFold(fold, customer_id, None)
    if not owned(then.state, account, livemode):
        return []
    return [render_balance_transaction(row) for row in reversed(then.transaction_rows())]


async def balance_transactions_as_of(
    conn: Queryable, account: str, livemode: bool, customer_id: str, as_of_unix_s: int
) -> list[dict[str, Any]]:
    """The customer's balance transactions as they were at the end of second `as_of_unix_s`, newest
    first (as the list endpoint orders them), with descriptions and metadata as of then. Empty when
    the customer did not exist yet; use customer_as_of to tell that apart from "no transactions".
    The log is read a chunk at a time and folded, then rendered, in a worker thread."""
    at = to_timestamp(min(max(end_of_second(as_of_unix_s), 0), MAX_US))
    version = await history.version_at(conn, customer_id, at)
    fold = Fold()
    held: list[RecordedEvent] = []
    start = 0
    while start < version:
        stop = min(version, start + history.FOLD_CHUNK)
        rows = await conn.fetch(history.SQL_RANGE, customer_id, start, stop)
        held = await history.in_fold_thread(fold_chunk, fold, held, rows, stop >= version)
        start = stop
    return await history.in_fold_thread(transactions_then, fold, customer_id, account, livemode)


async def customer_history(
    conn: Queryable, account: str, livemode: bool, customer_id: str
) -> list[dict[str, Any]]:
    """Every entry of the customer's history (service/history.py pages it for the API). Empty when no
    such customer exists for this account and mode."""
    page = await history.history_page(conn, account, livemode, customer_id, limit=2**62)
    return page.entries if page is not None else []


@dataclass
class BalanceAt:
    customer_id: str
    at_us: int
    exists: bool
    deleted: bool
    balance: int
    currency: str | None
    version: int
    entries: int
    account: str | None
    balances: dict[str, int]  # every currency's ledger

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": utc_text(self.at_us)}


async def balance_at(conn: Queryable, customer_id: str, at_us: int) -> BalanceAt:
    """The customer's balance at an instant (microseconds, inclusive), whatever its account: an
    operator's tool (`ledgerd balance-at`)."""
    state = fold_stream(await stream_prefix(conn, customer_id, at_us)).state
    return BalanceAt(
        customer_id=customer_id,
        at_us=at_us,
        exists=state.exists,
        deleted=state.deleted,
        balance=state.balance,
        currency=state.currency,
        version=state.version,
        entries=state.entries,
        account=state.account or None,
        balances=ledgers(state),
    )

