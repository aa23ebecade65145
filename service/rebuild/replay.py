"""Incremental replay through the live path's rows: batches of whole commands folded on top of a
`projections.Fold`, the rows they changed upserted into the projection tables of a schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import msgspec

from ledgerd.domain.log import RecordedEvent
from ledgerd.projections import Changes, Fold, balance_transactions, customers, stripe_events
from ledgerd.service.rebuild.shadow import live_schema, quote_ident
from ledgerd.service.store.base import GlobalCursor
from ledgerd.service.store.postgres import EVENT_COLUMNS, row_to_event

BATCH_SIZE = 2000

Progress = Callable[[int], None]

# Both statements run before the batch transaction writes anything, so it has no xid yet and the
# horizon is the oldest transaction running elsewhere (see service/store/postgres.py SQL_READ_ALL).
SQL_BULK_BATCH = """
SELECT {columns} FROM {schema}.events
WHERE (tx_id, position) > ($1, $2)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
ORDER BY tx_id, position
LIMIT $3
"""
# The rest of a (finished) writing transaction whose first events ended a batch.
SQL_REST_OF_TRANSACTION = """
SELECT {columns} FROM {schema}.events WHERE tx_id = $1 AND position > $2 ORDER BY position
"""
# Under the swap locks (or inside a snapshot that fixes the log): everything after the cursor.
SQL_TAIL_BATCH = """
SELECT {columns} FROM {schema}.events
WHERE (tx_id, position) > ($1, $2)
ORDER BY tx_id, position
LIMIT $3
"""


@dataclass
class ReplayResult:
    cursor: GlobalCursor
    events: int
    fold: Fold  # the log folded so far: a later replay continues from it


# --- replay --------------------------------------------------------------------------------------------


def upsert_sql(schema: str, table: str, columns: tuple[str, ...], mutable: tuple[str, ...]) -> str:
    target = f"{quote_ident(schema)}.{quote_ident(table)}"
    updates = ", ".join(f"{column} = excluded.{column}" for column in mutable)
    return (
        f"INSERT INTO {target} ({', '.join(columns)}) "
        f"SELECT {', '.join(columns)} FROM jsonb_populate_recordset(NULL::{target}, $1::jsonb) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


def insert_sql(schema: str, table: str, columns: tuple[str, ...]) -> str:
    target = f"{quote_ident(schema)}.{quote_ident(table)}"
    return (
        f"INSERT INTO {target} ({', '.join(columns)}) "
        f"SELECT {', '.join(columns)} FROM jsonb_populate_recordset(NULL::{target}, $1::jsonb)"
    )


async def write_changes(conn: asyncpg.Connection, schema: str, changes: Changes) -> None:
    """The rows a Fold changed since its last take, into the projection tables in `schema`: the rows the
    live path would have left (the same `project`), written by upserts."""
    encode = msgspec.json.encode
    if changes.customers:
        sql = upsert_sql(schema, customers.TABLE, customers.COLUMNS, customers.MUTABLE_COLUMNS)
        await conn.execute(sql, encode([row for row, _ in changes.customers]).decode())
    if changes.transactions:
        sql = upsert_sql(
            schema,
            balance_transactions.TABLE,
            balance_transactions.COLUMNS,
            balance_transactions.MUTABLE_COLUMNS,
        )
        await conn.execute(sql, encode([row for row, _ in changes.transactions]).decode())
    if changes.feed:
        await conn.execute(
            insert_sql(schema, stripe_events.TABLE, stripe_events.COLUMNS), encode(changes.feed).decode()
        )


async def apply_events(
    conn: asyncpg.Connection, schema: str, fold: Fold, events: list[RecordedEvent]
) -> None:
    """Fold whole commands' events on top of `fold` and write the rows they changed into `schema`."""
    fold.apply(events)
    await write_changes(conn, schema, fold.take_changes())


async def fetch_batch(
    conn: asyncpg.Connection, query: str, source: str, cursor: GlobalCursor, batch_size: int
) -> tuple[list[RecordedEvent], bool]:
    """The next batch after `cursor`, completed to a whole writing transaction: the projections render
    some rows from the state after the whole command, so a command's events are never split across
    batches. Returns (events, more_may_follow)."""
    rows = await conn.fetch(query, cursor.tx_id, cursor.position, batch_size)
    events = [row_to_event(row) for row in rows]
    full = len(events) == batch_size
    if full:
        last = events[-1]
        rest = await conn.fetch(
            SQL_REST_OF_TRANSACTION.format(columns=EVENT_COLUMNS, schema=quote_ident(source)),
            last.tx_id,
            last.position,
        )
        events += [row_to_event(row) for row in rest]
    return events, full


async def replay_into(
    conn: asyncpg.Connection,
    schema: str,
    fold: Fold,
    *,
    after: GlobalCursor = GlobalCursor(),
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    done_before: int = 0,
) -> ReplayResult:
    """Replay the committed log after `after`, in the gap-safe global order, into the projection tables
    in `schema` (see `create_shadow_tables`), one transaction per batch. Stops when it reaches the
    horizon (the oldest running transaction); returns the cursor to continue from.

    Call it outside a transaction: each batch must read the log before it writes (its own xid would
    otherwise hold the horizon back)."""
    source = await live_schema(conn)
    query = SQL_BULK_BATCH.format(columns=EVENT_COLUMNS, schema=quote_ident(source))
    cursor, total = after, 0
    while True:
        async with conn.transaction():
            events, more = await fetch_batch(conn, query, source, cursor, batch_size)
            if events:
                await apply_events(conn, schema, fold, events)
        if events:
            cursor = GlobalCursor(events[-1].tx_id, events[-1].position)
            total += len(events)
            if progress is not None:
                progress(done_before + total)
        if not more:
            return ReplayResult(cursor, total, fold)


async def replay_tail(
    conn: asyncpg.Connection,
    schema: str,
    source: str,
    fold: Fold,
    after: GlobalCursor,
    batch_size: int = BATCH_SIZE,
) -> ReplayResult:
    """Inside a transaction that fixes the log (swap locks, or a REPEATABLE READ snapshot): replay every
    visible event after `after`, no horizon."""
    query = SQL_TAIL_BATCH.format(columns=EVENT_COLUMNS, schema=quote_ident(source))
    cursor, total = after, 0
    while True:
        events, more = await fetch_batch(conn, query, source, cursor, batch_size)
        if events:
            await apply_events(conn, schema, fold, events)
            cursor = GlobalCursor(events[-1].tx_id, events[-1].position)
            total += len(events)
        if not more:
            return ReplayResult(cursor, total, fold)
