"""Rebuild the projections from the event log; the replay that `verify`'s drift check also runs.

`rebuild(pool)` (the `ledgerd rebuild` command):

1. Shadow tables. `ledger_rebuild.<table>` for every projection table: `LIKE <live> INCLUDING ALL
   EXCLUDING INDEXES`, then the live table's indexes and index-backed constraints recreated under their
   **original names** (names are per schema, so they do not clash), so that after the swap the schema is
   exactly what the migrations built.
2. Bulk replay, while writers keep appending (`bulk_replay`): the whole log below the horizon
   (`(tx_id, position)` below the oldest running transaction, as `read_all` does), read from the
   canonical bytes, folded in memory by `projections.Fold` (the same `project` the live path runs on
   each command, one command at a time: see `projections.command_of`), the event feed copied into the
   shadow tables as it is produced and the folded tables at the end (COPY); then the indexes are built.
   What was appended meanwhile is folded on top of the same Fold and the rows it changed are upserted
   (`replay_into`).
3. Swap, in ONE transaction: `LOCK TABLE streams IN SHARE MODE` (every append takes ROW EXCLUSIVE on
   `streams` as its first write, so from here no append is in flight and none can start), then ACCESS
   EXCLUSIVE on the live projection tables; catch up every event appended since the bulk phase (no
   horizon needed: nothing is in flight); copy owner, grants and triggers; drop the live tables and move
   the shadow tables in. Writers block for the duration of this transaction only, and lose nothing: an
   event is either replayed here or appended after the swap, into the new tables.

   The locks are taken with a short `lock_timeout` and the whole swap is retried: a long read of a
   projection table must not hold writers back behind the swap's SHARE lock on `streams`, so the swap
   backs off and lets it finish.

Comparing the live projections with a fresh replay (bulk, then the tail, into a private schema) is
service/audit/drift.py's `check_drift`.
"""

from __future__ import annotations

import asyncio
import gc
import random
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from ledgerd.domain.log import RecordedEvent, canonical_documents
from ledgerd.projections import (
    FEED_COLUMNS,
    FEED_TABLE,
    PROJECTION_TABLES,
    Changes,
    Fold,
    balance_transactions,
    command_of,
    customers,
    stripe_events,
)
from ledgerd.service.store.base import GlobalCursor
from ledgerd.service.store.postgres import EVENT_COLUMNS, row_to_event

REBUILD_SCHEMA = "ledger_rebuild"
REBUILD_LOCK_ID = 0x1ED6E6  # pg_advisory_lock key: one rebuild at a time
BATCH_SIZE = 2000
SWAP_LOCK_TIMEOUT = "250ms"  # well below the default deadlock_timeout (1 s)
SWAP_ATTEMPTS = 40

Progress = Callable[[int], None]

SQL_LIVE_SCHEMA = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass('events')
"""
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
SQL_INDEXES = """
SELECT i.indexrelid::regclass::text AS qualified, ic.relname AS name, pg_get_indexdef(i.indexrelid) AS def,
       con.conname AS constraint_name, pg_get_constraintdef(con.oid) AS constraint_def
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
    AND con.contype IN ('p', 'u', 'x')
WHERE i.indrelid = $1::regclass
ORDER BY ic.relname
"""
SQL_FOREIGN_KEYS = """
SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
WHERE conrelid = $1::regclass AND contype = 'f' ORDER BY conname
"""
SQL_TRIGGERS = """
SELECT t.tgname, pg_get_triggerdef(t.oid) AS def,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified_table
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.tgrelid = $1::regclass AND NOT t.tgisinternal ORDER BY t.tgname
"""
SQL_TABLE_ACL = """
SELECT pg_get_userbyid(c.relowner) AS owner,
       coalesce(nullif(a.grantee, 0)::regrole::text, 'PUBLIC') AS grantee,
       a.privilege_type, a.is_grantable
FROM pg_class c LEFT JOIN LATERAL aclexplode(c.relacl) AS a ON true
WHERE c.oid = $1::regclass
"""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class ReplayResult:
    cursor: GlobalCursor
    events: int
    fold: Fold  # the log folded so far: a later replay continues from it


@dataclass
class RebuildReport:
    tables: tuple[str, ...]
    events: int = 0  # events replayed in total
    bulk_events: int = 0  # replayed while writers kept going
    swap_events: int = 0  # caught up inside the swap transaction, writers blocked
    swap_attempts: int = 0
    seconds: float = 0.0
    swap_seconds: float = 0.0
    load_seconds: float = 0.0  # bulk: read, fold, COPY
    index_seconds: float = 0.0  # bulk: index builds after the load

    def __str__(self) -> str:
        return (
            f"rebuilt {', '.join(self.tables)} from {self.events} events in {self.seconds:.2f} s "
            f"(load {self.load_seconds:.2f} s, indexes {self.index_seconds:.2f} s) "
            f"({self.bulk_events} in bulk, {self.swap_events} while swapping; writers blocked "
            f"{self.swap_seconds * 1000:.0f} ms; {self.swap_attempts} swap attempt(s))"
        )


class RebuildError(RuntimeError):
    pass


async def live_schema(conn: asyncpg.Connection) -> str:
    schema: str | None = await conn.fetchval(SQL_LIVE_SCHEMA)
    if schema is None:
        raise RebuildError("no events table on the search_path: run the migrations first")
    return schema


# --- shadow tables -------------------------------------------------------------------------------------


async def create_shadow_tables(
    conn: asyncpg.Connection, schema: str, source_schema: str, *, indexes: bool = True
) -> None:
    """Fresh, empty copies of the projection tables in `schema` (dropped first if it exists), with the
    live tables' columns, defaults and checks; with `indexes`, also their indexes and constraints under
    their original names (else add them with `add_shadow_indexes` after a bulk load)."""
    target = quote_ident(schema)
    async with conn.transaction():
        await conn.execute(f"DROP SCHEMA IF EXISTS {target} CASCADE")
        await conn.execute(f"CREATE SCHEMA {target}")
        for table in PROJECTION_TABLES:
            live = f"{quote_ident(source_schema)}.{quote_ident(table)}"
            shadow = f"{target}.{quote_ident(table)}"
            await conn.execute(f"CREATE TABLE {shadow} (LIKE {live} INCLUDING ALL EXCLUDING INDEXES)")
        if indexes:
            await add_shadow_indexes(conn, schema, source_schema)


async def add_shadow_indexes(
    conn: asyncpg.Connection, schema: str, source_schema: str, *, pool: asyncpg.Pool | None = None
) -> None:
    """The live tables' indexes, index-backed constraints and foreign keys on the shadow tables. With a
    `pool`, the index builds (the long part after a bulk load) run on two connections at once; the
    constraints then adopt their indexes (`ADD CONSTRAINT ... USING INDEX`, no second build)."""
    target = quote_ident(schema)
    builds: list[str] = []
    finish: list[str] = []
    for table in PROJECTION_TABLES:
        live = f"{quote_ident(source_schema)}.{quote_ident(table)}"
        shadow = f"{target}.{quote_ident(table)}"
        for index in await conn.fetch(SQL_INDEXES, live):
            constraint, definition = index["constraint_name"], index["constraint_def"]
            kind = next(
                (k for k in ("PRIMARY KEY", "UNIQUE") if (definition or "").startswith(k + " (")), None
            )
            if constraint is not None and (kind is None or "DEFERRABLE" in definition):
                finish.append(f"ALTER TABLE {shadow} ADD CONSTRAINT {quote_ident(constraint)} {definition}")
                if constraint != index["name"]:
                    finish.append(
                        f"ALTER INDEX {target}.{quote_ident(constraint)} RENAME TO {quote_ident(index['name'])}"
                    )
                continue
            builds.append(retarget_index(index["def"], live, shadow))
            if constraint is not None:
                finish.append(
                    f"ALTER TABLE {shadow} ADD CONSTRAINT {quote_ident(constraint)} {kind} "
                    f"USING INDEX {quote_ident(index['name'])}"
                )
                if constraint != index["name"]:  # USING INDEX renames the index after the constraint
                    finish.append(
                        f"ALTER INDEX {target}.{quote_ident(constraint)} RENAME TO {quote_ident(index['name'])}"
                    )
        for foreign_key in await conn.fetch(SQL_FOREIGN_KEYS, live):
            finish.append(
                f"ALTER TABLE {shadow} ADD CONSTRAINT {quote_ident(foreign_key['conname'])} {foreign_key['def']}"
            )
    queue = list(reversed(builds))

    async def build(connection: asyncpg.Connection) -> None:
        # in-memory sorts for the index builds of a bulk-loaded table (the default is 64 MB)
        await connection.execute("SET maintenance_work_mem = '256MB'")
        try:
            while queue:
                await connection.execute(queue.pop())
        finally:
            await connection.execute("RESET maintenance_work_mem")

    if pool is not None and pool.get_max_size() >= 2 and len(builds) > 1:
        async with pool.acquire() as other:
            await asyncio.gather(build(conn), build(other))
    else:
        await build(conn)
    async with conn.transaction():
        for statement in finish:
            await conn.execute(statement)


def retarget_index(definition: str, live: str, shadow: str) -> str:
    """`CREATE [UNIQUE] INDEX name ON [ONLY] live USING ...` -> the same index on the shadow table (an
    unqualified index name is created in its table's schema)."""
    pattern = re.compile(r"^(CREATE (?:UNIQUE )?INDEX \S+ ON (?:ONLY )?)(\S+)( .*)$", re.DOTALL)
    match = pattern.match(definition)
    if match is None:
        raise RebuildError(f"cannot recreate index: {definition}")
    return f"{match.group(1)}{shadow}{match.group(3)}"


def retarget_trigger(definition: str, qualified_table: str, shadow: str) -> str:
    marker = f" ON {qualified_table} "
    if marker not in definition:
        raise RebuildError(f"cannot recreate trigger: {definition}")
    return definition.replace(marker, f" ON {shadow} ", 1)


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
            schema, balance_transactions.TABLE, balance_transactions.COLUMNS, balance_transactions.MUTABLE_COLUMNS
        )
        await conn.execute(sql, encode([row for row, _ in changes.transactions]).decode())
    if changes.feed:
        await conn.execute(insert_sql(schema, stripe_events.TABLE, stripe_events.COLUMNS), encode(changes.feed).decode())


async def apply_events(conn: asyncpg.Connection, schema: str, fold: Fold, events: list[RecordedEvent]) -> None:
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


# --- bulk replay ---------------------------------------------------------------------------------------

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
    fold.take_changes()  # everything so far was copied in whole; later replays write what changes
    return ReplayResult(cursor, total, fold)


# --- rebuild -------------------------------------------------------------------------------------------


async def rebuild(
    pool: asyncpg.Pool, *, progress: Progress | None = None, batch_size: int | None = None
) -> RebuildReport:
    """Replay the whole log into fresh projection tables and swap them in atomically (see module doc).
    `progress(events_done)` is called after every batch."""
    started = time.monotonic()
    report = RebuildReport(tables=PROJECTION_TABLES)
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK_ID):
            raise RebuildError("another rebuild is running")
        try:
            source = await live_schema(conn)
            await create_shadow_tables(conn, REBUILD_SCHEMA, source, indexes=False)
            phase = time.monotonic()
            bulk = await bulk_replay(
                pool, conn, REBUILD_SCHEMA, progress=progress, batch_size=batch_size or BULK_BATCH
            )
            report.load_seconds = time.monotonic() - phase
            phase = time.monotonic()
            await add_shadow_indexes(conn, REBUILD_SCHEMA, source, pool=pool)
            report.index_seconds = time.monotonic() - phase
            batch_size = batch_size or BATCH_SIZE
            # what was appended meanwhile, through the live path on the indexed tables, writers going on
            more = await replay_into(
                conn,
                REBUILD_SCHEMA,
                bulk.fold,
                after=bulk.cursor,
                batch_size=batch_size,
                progress=progress,
                done_before=bulk.events,
            )
            cursor, report.bulk_events = more.cursor, bulk.events + more.events
            for table in PROJECTION_TABLES:
                await conn.execute(f"ANALYZE {quote_ident(REBUILD_SCHEMA)}.{quote_ident(table)}")
            while True:
                report.swap_attempts += 1
                try:
                    swap_started = time.monotonic()
                    tail = await swap(conn, source, bulk.fold, cursor, batch_size)
                    report.swap_seconds = time.monotonic() - swap_started
                    report.swap_events = tail.events
                    break
                except asyncpg.LockNotAvailableError:
                    if report.swap_attempts >= SWAP_ATTEMPTS:
                        raise RebuildError(
                            f"could not lock the projection tables in {SWAP_ATTEMPTS} attempts"
                        ) from None
                # Catch up without locks, so that the next attempt has less to do, and back off.
                more = await replay_into(
                    conn,
                    REBUILD_SCHEMA,
                    bulk.fold,
                    after=cursor,
                    batch_size=batch_size,
                    progress=progress,
                    done_before=report.bulk_events,
                )
                cursor, report.bulk_events = more.cursor, report.bulk_events + more.events
                await asyncio.sleep(random.uniform(0.01, 0.05) * min(report.swap_attempts, 10))
            report.events = report.bulk_events + report.swap_events
            if progress is not None:
                progress(report.events)
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(REBUILD_SCHEMA)} CASCADE")
            await conn.execute("SELECT pg_advisory_unlock($1)", REBUILD_LOCK_ID)
    report.seconds = time.monotonic() - started
    return report


async def swap(
    conn: asyncpg.Connection, source: str, fold: Fold, cursor: GlobalCursor, batch_size: int
) -> ReplayResult:
    target = quote_ident(REBUILD_SCHEMA)
    live_tables = ", ".join(f"{quote_ident(source)}.{quote_ident(table)}" for table in PROJECTION_TABLES)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
        await conn.execute(f"LOCK TABLE {quote_ident(source)}.streams IN SHARE MODE")
        await conn.execute(f"LOCK TABLE {live_tables} IN ACCESS EXCLUSIVE MODE")
        await conn.execute("SET LOCAL lock_timeout = 0")
        tail = await replay_tail(conn, REBUILD_SCHEMA, source, fold, cursor, batch_size)
        for table in PROJECTION_TABLES:
            live = f"{quote_ident(source)}.{quote_ident(table)}"
            shadow = f"{target}.{quote_ident(table)}"
            for trigger in await conn.fetch(SQL_TRIGGERS, live):
                await conn.execute(retarget_trigger(trigger["def"], trigger["qualified_table"], shadow))
            await copy_privileges(conn, live, shadow)
            await conn.execute(f"DROP TABLE {live}")
            await conn.execute(f"ALTER TABLE {shadow} SET SCHEMA {quote_ident(source)}")
    return tail


async def copy_privileges(conn: asyncpg.Connection, live: str, shadow: str) -> None:
    rows = await conn.fetch(SQL_TABLE_ACL, live)
    owner = rows[0]["owner"]
    if owner != await conn.fetchval("SELECT current_user"):
        await conn.execute(f"ALTER TABLE {shadow} OWNER TO {quote_ident(owner)}")
    for row in rows:
        if row["privilege_type"] is None or row["grantee"] == owner:
            continue
        grantee = "PUBLIC" if row["grantee"] == "PUBLIC" else row["grantee"]
        option = " WITH GRANT OPTION" if row["is_grantable"] else ""
        await conn.execute(f"GRANT {row['privilege_type']} ON {shadow} TO {grantee}{option}")
