"""Bulk replay: the whole log below the horizon, read from the canonical bytes, folded in memory, the
event feed copied in as it is produced and the folded tables at the end (COPY), into EMPTY tables."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any

import asyncpg
import msgspec

from ledgerd.domain.log import RecordedEvent, canonical_documents
from ledgerd.projections import FEED_COLUMNS, FEED_TABLE, Fold, command_of
from ledgerd.service.rebuild.replay import Progress, ReplayResult
from ledgerd.service.rebuild.shadow import live_schema, quote_ident
from ledgerd.service.store.base import GlobalCursor

BULK_BATCH = 20_000
# The documents come from the canonical bytes (what the hash chain covers; no jsonb -> text in the
# server), from the columns only for events appended before migration 0006.
SQL_BULK_EVENTS = """
SELECT position, tx_id, stream_id, stream_version, event_id, event_type, schema_version,
       (extract(epoch FROM recorded_at) * 1000000)::bigint,
       CASE WHEN canonical IS NULL THEN data::text END, CASE WHEN canonical IS NULL THEN metadata::text END,
       hash, canonical
FROM {schema}.events
WHERE (tx_id, position) > ($1, $2)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
ORDER BY tx_id, position
LIMIT $3
"""
_decode = msgspec.json.decode


def bulk_event(row: Any) -> RecordedEvent:
    (
        position,
        tx_id,
        stream_id,
        version,
        event_id,
        event_type,
        schema_version,
        us,
        data,
        metadata,
        stored,
        canonical,
    ) = row
    if canonical is not None:
        data, metadata = canonical_documents(canonical)
    else:
        data, metadata = _decode(data), _decode(metadata)
    return RecordedEvent(
        position=position,
        tx_id=tx_id,
        stream_id=stream_id,
        stream_version=version,
        event_id=event_id,
        event_type=event_type,
        schema_version=schema_version,
        data=data,
        metadata=metadata,
        recorded_at_us=us,
        hash=stored,
    )


async def bulk_replay(
    pool: asyncpg.Pool,
    conn: asyncpg.Connection,
    schema: str,
    *,
    progress: Progress | None = None,
    batch_size: int = BULK_BATCH,
) -> ReplayResult:
    """Replay the committed log, up to the horizon, into EMPTY projection tables in `schema` (created
    without indexes: add them afterwards), set-based: the projections' row logic folds the events in
    memory (`projections.Fold`), the event feed is copied in as it is produced (on a second connection
    from `pool`, overlapping the fold) and the folded tables at the end. Reads the log outside any
    transaction, batch by batch below the horizon, never splitting a command. Returns the cursor to
    continue from with `replay_into` / `replay_tail` (the live path, on the indexed tables)."""
    source = await live_schema(conn)
    query = SQL_BULK_EVENTS.format(schema=quote_ident(source))
    with gc_paused():
        return await _bulk_replay(pool, conn, schema, query, progress, batch_size)


@contextmanager
def gc_paused() -> Iterator[None]:
    """The fold keeps millions of small objects alive, none of them in reference cycles: Python's
    cyclic collector would rescan them all again and again (measured: a third of the replay's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _bulk_replay(
    pool: asyncpg.Pool,
    conn: asyncpg.Connection,
    schema: str,
    query: str,
    progress: Progress | None,
    batch_size: int,
) -> ReplayResult:
    """Three things overlap: the server reads the next batch, a thread decodes and folds this one, and
    the server parses the feed rows of the previous one (COPY on the second connection)."""
    fold = Fold()
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rebuild-fold")

    def fold_batch(
        rows: list[Any], carry: list[RecordedEvent], full: bool
    ) -> tuple[list[tuple[Any, ...]], list[RecordedEvent], int]:
        events = carry + [bulk_event(row) for row in rows]
        held: list[RecordedEvent] = []
        if full:  # the last command may go on in the next batch: hold it back
            last, cut = command_of(events[-1]), len(events)
            while cut > 0 and command_of(events[cut - 1]) == last:
                cut -= 1
            events, held = events[:cut], events[cut:]
        fold.apply(events)
        return fold.take_feed(), held, len(events)

    cursor, total = GlobalCursor(), 0
    carry: list[RecordedEvent] = []
    alone = pool.get_max_size() < 2  # one connection: no overlap between reading and copying
    async with nullcontext(conn) if alone else pool.acquire() as copier:
        copying: asyncio.Future[Any] | None = None
        fetching: asyncio.Future[Any] | None = None

        async def copy(table: str, columns: tuple[str, ...], records: list[tuple[Any, ...]]) -> None:
            await copier.copy_records_to_table(table, records=records, columns=columns, schema_name=schema)

        try:
            rows = await conn.fetch(query, cursor.tx_id, cursor.position, batch_size)
            while True:
                full = len(rows) == batch_size
                if rows:
                    cursor = GlobalCursor(rows[-1][1], rows[-1][0])
                if full and not alone:  # the server reads the next batch meanwhile
                    fetching = asyncio.ensure_future(
                        conn.fetch(query, cursor.tx_id, cursor.position, batch_size)
                    )
                feed, carry, count = await loop.run_in_executor(executor, fold_batch, rows, carry, full)
                total += count
                if feed:
                    if copying is not None:
                        await copying
                    copying = asyncio.ensure_future(copy(FEED_TABLE, FEED_COLUMNS, feed))
                    if alone:
                        await copying
                        copying = None
                if progress is not None:
                    progress(total)
                if not full:
                    break
                if fetching is None:
                    fetching = asyncio.ensure_future(
                        conn.fetch(query, cursor.tx_id, cursor.position, batch_size)
                    )
                rows, fetching = await fetching, None
            if copying is not None:
                await copying
                copying = None
            for table, columns, records in await loop.run_in_executor(executor, fold.tables):
                await copy(table, columns, records)
        finally:
            for future in (copying, fetching):
                if future is not None:
                    future.cancel()
            executor.shutdown(wait=True)
    # Everything so far was copied in whole; later replays write what changes from here. (Not
    # take_changes(): it would render every row once more, to throw them away.)
    fold.dirty_customers.clear()
    fold.dirty_transactions.clear()
    fold.feed.clear()
    return ReplayResult(cursor, total, fold)
