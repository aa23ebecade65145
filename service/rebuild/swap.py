"""`rebuild(pool)`, the `ledgerd rebuild` command: shadow tables, bulk replay, catch-up, then the swap
in one transaction (the package doc, service/rebuild/__init__.py)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import asyncpg

from ledgerd.projections import PROJECTION_TABLES, Fold
from ledgerd.service.rebuild.bulk import BULK_BATCH, bulk_replay
from ledgerd.service.rebuild.replay import BATCH_SIZE, Progress, ReplayResult, replay_into, replay_tail
from ledgerd.service.rebuild.shadow import (
    RebuildError,
    add_shadow_indexes,
    create_shadow_tables,
    live_schema,
    quote_ident,
    retarget_trigger,
)
from ledgerd.service.store.base import GlobalCursor

REBUILD_SCHEMA = "ledger_rebuild"
REBUILD_LOCK_ID = 0x1ED6E6  # pg_advisory_lock key: one rebuild at a time
SWAP_LOCK_TIMEOUT = "250ms"  # well below the default deadlock_timeout (1 s)
SWAP_ATTEMPTS = 40

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
