"""Reading a customer stream's past without holding the event loop: `state_at` (the folded state
after a version, for `as_of`) and `history_page` (`GET /v1/customers/{id}/history`, paged).

A stream can hold tens of thousands of events. Folds start from the closest known state: the stream
head's snapshot when the version asked for is the head, else a checkpoint folded earlier (the log is
append-only, so the state after a version never changes); what is left is fetched in chunks and folded
in a worker thread, so no single step holds the loop for long. A page folds only its own events.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec
from msgspec import UNSET

from ledgerd.domain.customer import (
    INITIAL_STATE,
    AnyEvent,
    BalanceAdjusted,
    BalanceTransactionUpdated,
    CustomerCreated,
    CustomerDeleted,
    CustomerState,
    evolve,
)
from ledgerd.domain.errors import InvalidParameter
from ledgerd.domain.upcasting import REGISTRY, to_event
from ledgerd.projections import customers as customers_projection
from ledgerd.projections.objects import render_customer
from ledgerd.service.commands.snapshots import decode_snapshot
from ledgerd.service.store.postgres import EVENT_COLUMNS, row_to_event

T = TypeVar("T")
FOLD_CHUNK = 2_000  # events fetched (and folded in a thread) per step
CHECKPOINT_EVERY = 1_000  # versions between the checkpoints a long fold leaves
CHECKPOINT_STREAMS = 512  # streams whose checkpoints are kept (least recently used go first)
CHECKPOINTS_PER_STREAM = 64
CONSTANT_FIELDS = frozenset(
    {"id", "object", "customer_account", "default_source", "delinquent", "discount", "test_clock"}
)

SQL_HEAD = "SELECT account, livemode, version, snapshot::text AS snapshot, recorded_at FROM streams WHERE stream_id = $1"
SQL_FOLD_RANGE = """
SELECT stream_version, event_type, schema_version, data::text AS data, hash FROM events
WHERE stream_id = $1 AND stream_version > $2 AND stream_version <= $3 ORDER BY stream_version
"""
SQL_RANGE = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE stream_id = $1 AND stream_version > $2 AND stream_version <= $3 ORDER BY stream_version
"""
SQL_HASH_AT = "SELECT hash FROM events WHERE stream_id = $1 AND stream_version = $2"
SQL_CURSOR = "SELECT stream_version FROM events WHERE stream_id = $1 AND event_id = $2"
# The longest prefix recorded at or before $2 (recording times are monotonic per stream, see plan.py).
SQL_VERSION_AT = """
SELECT CASE WHEN s.recorded_at <= $2 THEN s.version
            ELSE coalesce((SELECT min(e.stream_version) FROM events e
                           WHERE e.stream_id = $1 AND e.recorded_at > $2) - 1, s.version) END
FROM streams s WHERE s.stream_id = $1
"""


class Queryable(Protocol):
    """An asyncpg connection or pool."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class Checkpoint:
    hash: bytes  # of the event at its version: the prefix it was folded from (hash-chained)
    state: CustomerState


class Checkpoints:
    """Folded states by (stream, version), bounded; touched only from the event loop. A checkpoint is
    used only while the database holds the event hash it was folded up to (one process may see several
    databases: tests, an import)."""

    def __init__(self) -> None:
        self.streams: OrderedDict[str, dict[int, Checkpoint]] = OrderedDict()

    def nearest(self, stream_id: str, version: int) -> tuple[int, Checkpoint | None]:
        known = self.streams.get(stream_id)
        if not known:
            return 0, None
        self.streams.move_to_end(stream_id)
        best = max((v for v in known if v <= version), default=0)
        return (best, known[best]) if best else (0, None)

    def add(self, stream_id: str, version: int, checkpoint: Checkpoint) -> None:
        if version <= 0:
            return
        known = self.streams.setdefault(stream_id, {})
        self.streams.move_to_end(stream_id)
        known[version] = checkpoint
        if len(known) > CHECKPOINTS_PER_STREAM:
            del known[min(known)]  # the earliest: a fold from the start is the cheapest to redo
        while len(self.streams) > CHECKPOINT_STREAMS:
            self.streams.popitem(last=False)

    def forget(self, stream_id: str) -> None:
        self.streams.pop(stream_id, None)


CHECKPOINTS = Checkpoints()
FOLD_THREADS = 1  # folds share the GIL with the event loop: one at a time competes with it
_fold_executor: ThreadPoolExecutor | None = None


async def in_fold_thread(function: Callable[..., T], *args: Any) -> T:
    """Run a fold in one of the few fold threads (created on first use, never at import)."""
    global _fold_executor
    if _fold_executor is None:
        _fold_executor = ThreadPoolExecutor(FOLD_THREADS, thread_name_prefix="ledger-fold")
    return await asyncio.get_running_loop().run_in_executor(_fold_executor, function, *args)


EVENT_DECODER = msgspec.json.Decoder(AnyEvent)


def decode_event(event_type: str, schema_version: int, data: str) -> AnyEvent:
    """A stored document as its domain event: straight from the JSON when it is in the current shape (no
    intermediate dict), else through the upcasters."""
    if REGISTRY.is_current(event_type, schema_version):
        event: AnyEvent = EVENT_DECODER.decode(data)
        if event.__struct_config__.tag == event_type:
            return event
    return to_event(event_type, schema_version, msgspec.json.decode(data))


def fold_rows(
    state: CustomerState, rows: Sequence[Any]
) -> tuple[CustomerState, list[tuple[int, Checkpoint]]]:
    """Evolve `state` through the rows (in a worker thread); checkpoints on the way and at the end."""
    marks: list[tuple[int, Checkpoint]] = []
    for index, row in enumerate(rows):
        state = evolve(state, decode_event(row["event_type"], row["schema_version"], row["data"]))
        version = row["stream_version"]
        if version % CHECKPOINT_EVERY == 0 or index == len(rows) - 1:
            marks.append((version, Checkpoint(bytes(row["hash"]), state)))
    return state, marks


async def start_of_fold(conn: Queryable, stream_id: str, version: int) -> tuple[int, CustomerState]:
    start, checkpoint = CHECKPOINTS.nearest(stream_id, version)
    if checkpoint is None:
        return 0, INITIAL_STATE
    if await conn.fetchval(SQL_HASH_AT, stream_id, start) != checkpoint.hash:
        CHECKPOINTS.forget(stream_id)
        return 0, INITIAL_STATE
    return start, checkpoint.state


async def state_at(conn: Queryable, stream_id: str, version: int, head: Any | None = None) -> CustomerState:
    """The stream's folded state after `version` (INITIAL_STATE for 0); `head` is its SQL_HEAD row."""
    if version <= 0:
        return INITIAL_STATE
    if head is not None and head["version"] == version and head["snapshot"] is not None:
        snapshot = decode_snapshot(head["snapshot"].encode(), version)
        if snapshot is not None:
            return snapshot
    start, state = await start_of_fold(conn, stream_id, version)
    while start < version:
        stop = min(version, start + FOLD_CHUNK)
        rows = await conn.fetch(SQL_FOLD_RANGE, stream_id, start, stop)
        if not rows:
            break
        state, marks = await in_fold_thread(fold_rows, state, rows)
        for mark_version, mark in marks:
            CHECKPOINTS.add(stream_id, mark_version, mark)
        start = stop
    return state


async def stream_head(conn: Queryable, stream_id: str, account: str, livemode: bool) -> Any | None:
    """The stream's row if it is a customer of this account and mode."""
    head = await conn.fetchrow(SQL_HEAD, stream_id)
    if head is None or head["account"] != account or head["livemode"] != livemode:
        return None
    return head


async def version_at(conn: Queryable, stream_id: str, at: Any) -> int:
    return int(await conn.fetchval(SQL_VERSION_AT, stream_id, at) or 0)


# ---------------------------------------------------------------------------------------------------
# history
# ---------------------------------------------------------------------------------------------------


@dataclass
class HistoryPage:
    entries: list[dict[str, Any]]
    has_more: bool


def object_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    before = before or {}
    return {
        name: {"before": before.get(name), "after": after.get(name)}
        for name in after
        if name not in CONSTANT_FIELDS and before.get(name) != after.get(name)
    }


def rendered(state: CustomerState) -> dict[str, Any]:
    return render_customer(customers_projection.row(state))


def transaction_changes(event: BalanceTransactionUpdated) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in ("description", "metadata"):
        after = getattr(event.changes, name)
        if after is UNSET:
            continue
        before = getattr(event.previous, name)
        before = None if before is UNSET else before
        if name == "metadata":
            after, before = dict(after), (dict(before) if before is not None else {})
        if before != after:
            changes[name] = {"before": before, "after": after}
    return changes


def history_entries(state: CustomerState, rows: Sequence[Any]) -> tuple[list[dict[str, Any]], CustomerState]:
    """The entries of these events (in a worker thread), from the state before the first of them."""
    entries: list[dict[str, Any]] = []
    before = rendered(state) if state.exists else None
    for row in rows:
        recorded = row_to_event(row)
        event = recorded.event
        state = evolve(state, event)
        changes: dict[str, Any]
        transaction_id: str | None = None
        if isinstance(event, BalanceTransactionUpdated):
            transaction_id = event.transaction_id
            changes = transaction_changes(event)
            before = rendered(state)
        elif isinstance(event, CustomerDeleted):
            changes = {"deleted": {"before": False, "after": True}}
            before = rendered(state)
        else:
            after = rendered(state)
            changes = object_changes(None if isinstance(event, CustomerCreated) else before, after)
            before = after
            if isinstance(event, BalanceAdjusted):
                transaction_id = event.transaction_id
                changes["balance_transaction"] = {
                    "before": None,
                    "after": {
                        "id": event.transaction_id,
                        "type": event.type,
                        "amount": event.amount,
                        "currency": event.currency,
                        "ending_balance": event.ending_balance,
                    },
                }
        entries.append(
            {
                "id": recorded.event_id,
                "object": "customer_history_entry",
                "version": recorded.stream_version,
                "type": recorded.event_type,
                "event_id": recorded.event_id,
                "schema_version": recorded.schema_version,
                "recorded_at": recorded.recorded_at_us // 1_000_000,
                "recorded_at_us": recorded.recorded_at_us,
                "balance_transaction": transaction_id,
                "changes": changes,
                "request_id": recorded.metadata.get("request_id"),
                "idempotency_key": recorded.metadata.get("idempotency_key"),
                "hash": recorded.hash.hex(),
            }
        )
    return entries, state


async def cursor_version(conn: Queryable, stream_id: str, event_id: str, param: str) -> int:
    version = await conn.fetchval(SQL_CURSOR, stream_id, event_id)
    if version is None:
        raise InvalidParameter(f"No such history entry: '{event_id}'", param=param, code="resource_missing")
    return int(version)


async def history_page(
    conn: Queryable,
    account: str,
    livemode: bool,
    customer_id: str,
    *,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
) -> HistoryPage | None:
    """Up to `limit` entries in stream order (oldest first): the first ones, those after the
    `starting_after` entry, or those just before the `ending_before` one. None: no such customer for
    this account and mode."""
    head = await stream_head(conn, customer_id, account, livemode)
    if head is None:
        return None
    last = int(head["version"])
    if ending_before is not None:
        stop = await cursor_version(conn, customer_id, ending_before, "ending_before") - 1
        start = max(0, stop - limit)
        has_more = start > 0
    else:
        start = (
            0
            if starting_after is None
            else await cursor_version(conn, customer_id, starting_after, "starting_after")
        )
        stop = min(last, start + limit)
        has_more = stop < last
    if stop <= start:
        return HistoryPage([], has_more)
    state = await state_at(conn, customer_id, start, head)
    rows = await conn.fetch(SQL_RANGE, customer_id, start, stop)
    entries, state = await in_fold_thread(history_entries, state, rows)
    if rows:  # where the next page starts
        CHECKPOINTS.add(customer_id, rows[-1]["stream_version"], Checkpoint(bytes(rows[-1]["hash"]), state))
    return HistoryPage(entries, has_more)
