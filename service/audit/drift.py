"""Drift: the whole log replayed from zero into private tables (service.rebuild's bulk replay: the
projections' row definitions folded in memory, the tail through the live path) and compared with the live
projections row by row and field by field, in one REPEATABLE READ snapshot that fixes both the live rows
and the tail of the log replayed last. The one comparison of projections with a replay: `verify` runs
it, and so do the tests that prove a replay reproduces the live tables (`check_drift(pool).problems ==
[]`).
"""

from __future__ import annotations

import secrets
import time

import asyncpg
import msgspec

from ledgerd.projections import PROJECTION_TABLES
from ledgerd.service.audit.report import DEFAULT_LIMIT, CheckResult, Problem, Progress
from ledgerd.service.rebuild import (
    add_shadow_indexes,
    bulk_replay,
    create_shadow_tables,
    live_schema,
    quote_ident,
    replay_tail,
)

_decode = msgspec.json.decode

SQL_PRIMARY_KEY = """
SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = $1::regclass AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)
"""

SQL_DRIFT = """
SELECT coalesce(l.k, r.k) AS key, l.j::text AS live, r.j::text AS replay
FROM (SELECT {key} AS k, to_jsonb(t) AS j FROM {live} t) l
FULL JOIN (SELECT {key} AS k, to_jsonb(t) AS j FROM {replayed} t) r ON l.k = r.k
WHERE l.j IS DISTINCT FROM r.j
ORDER BY 1 LIMIT $1
"""


async def check_drift(
    pool: asyncpg.Pool, *, limit: int = DEFAULT_LIMIT, progress: Progress | None = None
) -> CheckResult:
    """Replay the whole log with service.rebuild's bulk replay (into private tables) and compare every
    projection table with the live one, naming rows and fields."""
    started = time.monotonic()
    result = CheckResult("drift")
    schema = f"ledger_audit_{secrets.token_hex(4)}"
    total: int = await pool.fetchval("SELECT count(*) FROM events")

    def replay_progress(done: int) -> None:
        if progress is not None:
            progress("drift", done, total)

    async with pool.acquire() as conn:
        try:
            source = await live_schema(conn)
            await create_shadow_tables(conn, schema, source, indexes=False)
            rows: dict[str, int] = {}
            try:
                bulk = await bulk_replay(pool, conn, schema, progress=replay_progress)
                await add_shadow_indexes(conn, schema, source, pool=pool)
                async with conn.transaction(isolation="repeatable_read"):
                    tail = await replay_tail(conn, schema, source, bulk.fold, bulk.cursor)
                    for table in PROJECTION_TABLES:
                        rows[table] = await compare_table(conn, source, schema, table, result, limit)
            except REPLAY_ERRORS as error:
                # A tampered log may not even replay (e.g. an update of a transaction whose creation
                # was removed): that is a finding, not a crash; the chains check names the events.
                result.add(
                    Problem(
                        "drift",
                        "replay_failed",
                        f"the log cannot be replayed into the projections: {type(error).__name__}: {error}",
                    ),
                    limit,
                )
            else:
                result.stats = {"events": bulk.events + tail.events, "rows": rows}
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    result.seconds = time.monotonic() - started
    return result


# Failures of the projection code on a log it was never meant to see (not connection failures).
REPLAY_ERRORS = (asyncpg.PostgresError, LookupError, TypeError, ValueError, AttributeError)


async def compare_table(
    conn: asyncpg.Connection, source: str, schema: str, table: str, result: CheckResult, limit: int
) -> int:
    live = f"{quote_ident(source)}.{quote_ident(table)}"
    replayed = f"{quote_ident(schema)}.{quote_ident(table)}"
    columns = [row["attname"] for row in await conn.fetch(SQL_PRIMARY_KEY, live)]
    if not columns:
        raise RuntimeError(f"{table} has no primary key: cannot compare it row by row")
    key = (
        f"t.{quote_ident(columns[0])}::text"
        if len(columns) == 1
        else "row(" + ", ".join(f"t.{quote_ident(c)}" for c in columns) + ")::text"
    )
    for row in await conn.fetch(SQL_DRIFT.format(key=key, live=live, replayed=replayed), limit + 1):
        result.add(drift_problem(table, row["key"], row["live"], row["replay"]), limit)
    count: int = await conn.fetchval(f"SELECT count(*) FROM {live}")
    return count


def drift_problem(table: str, key: str, live_text: str | None, replay_text: str | None) -> Problem:
    if replay_text is None:
        return Problem(
            "drift",
            "row_not_in_log",
            f"{table} {key}: in the live table, but the log does not produce it",
            table=table,
            key=key,
            found=_decode(live_text) if live_text else None,
        )
    if live_text is None:
        return Problem(
            "drift",
            "row_missing",
            f"{table} {key}: the log produces it, the live table lacks it",
            table=table,
            key=key,
            expected=_decode(replay_text),
        )
    live, replay = _decode(live_text), _decode(replay_text)
    names = sorted(name for name in set(live) | set(replay) if live.get(name) != replay.get(name))
    shown = "; ".join(f"{name}: live {live.get(name)!r}, log {replay.get(name)!r}" for name in names)
    return Problem(
        "drift",
        "row_drift",
        f"{table} {key}: {shown}",
        table=table,
        key=key,
        fields=names,
        expected={name: replay.get(name) for name in names},
        found={name: live.get(name) for name in names},
    )

